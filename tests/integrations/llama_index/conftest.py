"""Fixtures of the LlamaIndex tests: the real Qwen2.5-Coder-0.5B-Instruct engine (``real_model`` tests)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def real_engine() -> Any:
    """The packaged Qwen2.5-Coder-0.5B-Instruct on CPU in float32 (bf16 matmuls are slow without AVX-512).

    Skips with the reason when the packaged model is not installed or converted.
    """
    from hogwild_agents import HogwildEngine
    from hogwild_agents.models.store import ModelNotAvailableError

    try:
        return HogwildEngine.from_pretrained(None, device="cpu", dtype="float32", max_cache_tokens=8192)
    except ModelNotAvailableError as e:
        pytest.skip(f"the real model is not available ({e}); install hogwild-agents[model]")
