"""Engines and tokenizers shared by every ``ChatHogwild`` of a process, so constructing one stays cheap.

Engines come from the engine's own registry (``HogwildEngine.shared``: one per model, device, dtype and
cache size, also used by the LlamaIndex LLM and the server); a tokenizer alone (no weights) is loaded here
for token counting before any engine exists.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hogwild_agents import HogwildEngine

_TOKENIZERS: dict[str, Any] = {}
_LOCK = threading.Lock()


def model_label(model: str | None) -> str:
    """Resolve a ``model`` setting to a name: itself, else ``$HOGWILD_MODEL``, else the packaged default."""
    from hogwild_agents.engine.registry import model_label as label

    return label(model)


def loaded_engine(
    model: str | None, device: str | None, dtype: str | None, max_cache_tokens: int
) -> HogwildEngine | None:
    """Return the engine already loaded for these options, if any (never loads)."""
    from hogwild_agents.engine.registry import loaded_engine as loaded

    return loaded(model, device, dtype, max_cache_tokens=max_cache_tokens)


def shared_engine(
    model: str | None, device: str | None, dtype: str | None, max_cache_tokens: int
) -> HogwildEngine:
    """Return the process's engine for these options (``HogwildEngine.shared``), loading it once."""
    from hogwild_agents import HogwildEngine

    return HogwildEngine.shared(model, device=device, dtype=dtype, max_cache_tokens=max_cache_tokens)


def shared_tokenizer(model: str | None) -> Any:
    """Return the model's tokenizer, loaded alone (without weights) and cached; used for token counting."""
    label = model_label(model)
    tokenizer = _TOKENIZERS.get(label)
    if tokenizer is None:
        with _LOCK:
            tokenizer = _TOKENIZERS.get(label)
            if tokenizer is None:
                from transformers import AutoTokenizer

                from hogwild_agents.models.store import resolve_model_path

                tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(label))
                _TOKENIZERS[label] = tokenizer
    return tokenizer
