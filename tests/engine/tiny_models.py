"""Tiny random models of the supported families, built from configs (no weights needed), seeded."""

from __future__ import annotations

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from hogwild_agents.models.testing import TINY_SHAPE as _COMMON

FAMILIES = ("llama", "qwen2", "qwen3", "mistral")


def tiny_model(family: str, vocab_size: int = 512, seed: int = 0, **overrides: object) -> torch.nn.Module:
    """A seeded random fp32 model of ``family`` (GQA 4/2 heads, head_dim 16, 2 layers)."""
    torch.manual_seed(seed)
    kw = {**_COMMON, "vocab_size": vocab_size, **overrides}
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**kw))
    elif family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**kw))
    elif family == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=16, **kw))
    elif family == "mistral":
        model = MistralForCausalLM(MistralConfig(**{"sliding_window": None, **kw}))
    else:
        raise ValueError(family)
    # Random init puts most logits near zero; a larger scale makes greedy choices well separated.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return model.eval()


def twin_with_eager_attention(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy of ``model`` (own config object) running transformers' eager attention."""
    import copy

    twin = copy.deepcopy(model)
    twin.config = copy.deepcopy(model.config)
    for module in twin.modules():
        if hasattr(module, "config") and module is not twin:
            module.config = twin.config
    twin.set_attn_implementation("eager")
    return twin.eval()
