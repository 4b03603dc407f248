"""Process-wide registry of loaded engines and tokenizers, so ``ChatHogwild(...)`` itself stays cheap.

A model is loaded on first use, once per (model, device, dtype, cache size); every ``ChatHogwild`` with those
engine-level options shares that engine. Per-run options (workers, budgets, sampling) are passed with each
run, so they never split the cache. Engines serialise their runs, so sharing one is safe across threads.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hogwild_agents import HogwildEngine

_ENGINES: dict[tuple[str, str | None, str | None, int], HogwildEngine] = {}
_TOKENIZERS: dict[str, Any] = {}
_LOCK = threading.Lock()


def model_label(model: str | None) -> str:
    """Resolve a ``model`` setting to a name: itself, else ``$HOGWILD_MODEL``, else the packaged default."""
    if model:
        return model
    from hogwild_agents.models.store import DEFAULT_MODEL

    return os.environ.get("HOGWILD_MODEL") or DEFAULT_MODEL


def engine_key(
    model: str | None, device: str | None, dtype: str | None, max_cache_tokens: int
) -> tuple[str, str | None, str | None, int]:
    """Key of the shared engine for these engine-level options."""
    return (model_label(model), device, dtype, max_cache_tokens)


def loaded_engine(key: tuple[str, str | None, str | None, int]) -> HogwildEngine | None:
    """Return the engine already loaded for ``key``, if any (never loads)."""
    return _ENGINES.get(key)


def shared_engine(
    model: str | None, device: str | None, dtype: str | None, max_cache_tokens: int
) -> HogwildEngine:
    """Return the engine for these options, loading the model the first time (seconds to minutes)."""
    key = engine_key(model, device, dtype, max_cache_tokens)
    engine = _ENGINES.get(key)
    if engine is not None:
        return engine
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            from hogwild_agents import HogwildEngine

            engine = HogwildEngine.from_pretrained(
                key[0], device=device, dtype=dtype, max_cache_tokens=max_cache_tokens
            )
            _ENGINES[key] = engine
    return engine


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
