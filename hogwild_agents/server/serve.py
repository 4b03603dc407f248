"""Run the app with uvicorn; build the engine the way ``hogwild run`` does (packaged, HF id, test hook)."""

from __future__ import annotations

import logging
from typing import Any

from ..api.config import HogwildConfig
from ..engine.engine import HogwildEngine

__all__ = ["load_engine", "model_label", "serve"]


def model_label(model: str | None) -> str:
    """The id the server reports for ``model`` (the default packaged model's name when ``None``)."""
    import os

    from ..models.store import DEFAULT_MODEL

    return model or os.environ.get("HOGWILD_MODEL") or DEFAULT_MODEL


def load_engine(
    model: str | None = None,
    workers: int = 2,
    *,
    dtype: str | None = None,
    device: str | None = None,
    **config: Any,
) -> HogwildEngine:
    """Load the engine for ``model`` (``hogwild-test:tiny-random-qwen2`` builds the tiny test model).

    ``dtype`` and ``device`` are as for :meth:`HogwildEngine.from_pretrained`; ``config`` holds
    :class:`HogwildConfig` fields.
    """
    from transformers.utils import logging as hf_logging

    from ..models.testing import TINY_TEST_MODEL, tiny_random_qwen2

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if model == TINY_TEST_MODEL:
        tiny, tokenizer = tiny_random_qwen2()
        return HogwildEngine(tiny, tokenizer, HogwildConfig(workers=workers, **config))
    return HogwildEngine.from_pretrained(model, workers=workers, dtype=dtype, device=device, **config)


def serve(
    model: str | None = None,
    *,
    workers: int = 2,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    **config: Any,
) -> None:
    """Serve ``model`` on ``host:port`` until interrupted (the model loads while ``/health`` says 503)."""
    import uvicorn

    from .app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(lambda: load_engine(model, workers, **config), model_name=model_label(model))
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
