"""One engine per (model, device, dtype, engine options) in a process, loaded on first use.

Front ends (``ChatHogwild``, the LlamaIndex ``Hogwild``, the server) are cheap to construct and many of
them may name the same model: they share its engine, whose scheduler batches their runs. Per-run options
(workers, budgets, sampling) travel with each run and never split the cache, so only the options that
shape the engine itself are part of the key.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

HogwildEngine = Any  # the engine class imports this module (HogwildEngine.shared), not the other way round

__all__ = ["loaded_engine", "model_label", "shared_engine"]

_ENGINES: dict[tuple[Any, ...], HogwildEngine] = {}
_LOCK = threading.Lock()


def model_label(model: str | None) -> str:
    """A ``model`` setting as a name: itself, else ``$HOGWILD_MODEL``, else the packaged default."""
    if model:
        return model
    from ..models.store import DEFAULT_MODEL

    return os.environ.get("HOGWILD_MODEL") or DEFAULT_MODEL


def _key(
    model: str | None, device: str | None, dtype: str | None, options: dict[str, Any]
) -> tuple[Any, ...]:
    return (model_label(model), device, dtype, tuple(sorted(options.items())))


def loaded_engine(
    model: str | None, device: str | None = None, dtype: str | None = None, **engine_options: Any
) -> HogwildEngine | None:
    """The engine already loaded for these settings, if any (never loads)."""
    return _ENGINES.get(_key(model, device, dtype, engine_options))


def shared_engine(
    load: Callable[..., HogwildEngine],
    model: str | None,
    device: str | None = None,
    dtype: str | None = None,
    **engine_options: Any,
) -> HogwildEngine:
    """The process's engine for these settings, loading the model the first time (seconds to minutes).

    Args:
        load: what loads an engine (``HogwildEngine.from_pretrained``).
        model: Hugging Face id, local path or packaged name; ``None``: ``$HOGWILD_MODEL`` or the default.
        device: ``"cuda"``, ``"cpu"``, ...; ``None`` prefers CUDA.
        dtype: weights dtype name; ``None`` means bfloat16.
        **engine_options: engine-level :class:`~hogwild_agents.HogwildConfig` fields (``page_size``,
            ``max_cache_tokens``, ...); they are part of the key.
    """
    key = _key(model, device, dtype, engine_options)
    engine = _ENGINES.get(key)
    if engine is not None:
        return engine
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = load(key[0], device=device, dtype=dtype, **engine_options)
            _ENGINES[key] = engine
    return engine
