"""Which models the engine can serve exactly, and the RoPE facts it needs from them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..api.errors import UnsupportedModelError

__all__ = ["ModelGeometry", "inspect_model"]

# Families whose attention is plain softmax over rotate-half RoPE with the standard attention interface.
SUPPORTED_FAMILIES = frozenset(
    {"llama", "qwen2", "qwen3", "mistral", "qwen2_moe", "qwen3_moe", "mixtral", "granite", "olmo2", "phi3"}
)
SUPPORTED_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})


@dataclass(frozen=True, slots=True)
class ModelGeometry:
    """Shapes and RoPE parameters of a supported model."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    context_window: int
    inv_freq: torch.Tensor  # [rotary_dim / 2] float32, on the model's device


def _rope_type(config: object) -> str:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if isinstance(params, dict) and "rope_type" not in params and params:
        # Per-layer-type mappings ({"full_attention": {...}}): all entries must agree.
        kinds = {p.get("rope_type", "default") for p in params.values() if isinstance(p, dict)}
        return kinds.pop() if len(kinds) == 1 else "mixed"
    return (
        str(params.get("rope_type", params.get("type", "default"))) if isinstance(params, dict) else "default"
    )


def _check_sliding_window(config: object, family: str, context_limit: int | None) -> None:
    """Refuse a sliding window that a view of this engine could outgrow (then attention would differ).

    Any family counts (``sliding_window``, ``use_sliding_window``, per-layer ``layer_types``): a window
    is enabled when a layer type is sliding, or a ``sliding_window`` is set and ``use_sliding_window`` is
    not False. A window at least as long as the longest view the engine can hold (the model's context
    and the cache's capacity, ``context_limit``) never slides, so full attention is exact there.
    """
    layer_types = list(getattr(config, "layer_types", None) or [])
    window = getattr(config, "sliding_window", None)
    uses_window = getattr(config, "use_sliding_window", True) is not False
    enabled = any("sliding" in str(t) for t in layer_types) or (window is not None and uses_window)
    if not enabled:
        return
    longest = int(getattr(config, "max_position_embeddings", 0) or 0) or None
    if context_limit is not None:
        longest = min(longest or context_limit, context_limit)
    if window is not None and longest is not None and int(window) >= longest:
        return
    raise UnsupportedModelError(
        f"{family} uses sliding-window attention (window {window}) and this engine's views can reach "
        f"{longest} tokens; the shared cache serves full attention only. Lower max_cache_tokens to the "
        "window or less, or load a config without the window (sliding_window=None) if contexts stay under it"
    )


def inspect_model(
    model: torch.nn.Module, trust_model_support: bool = False, context_limit: int | None = None
) -> ModelGeometry:
    """Check that ``model`` can be served exactly and return its geometry.

    ``context_limit`` is the longest view the engine can hold (its cache capacity), for the sliding-window
    check.

    Raises:
        UnsupportedModelError: naming the reason (sliding-window layers, ALiBi / no RoPE, dynamic NTK or
            other position-dependent RoPE, attention logit soft-capping, an unlisted family).
    """
    config = model.config
    family = getattr(config, "model_type", "?")
    if not trust_model_support and family not in SUPPORTED_FAMILIES:
        raise UnsupportedModelError(
            f"model family {family!r} is not on the list the engine is verified for "
            f"({', '.join(sorted(SUPPORTED_FAMILIES))}); pass trust_model_support=True to try it anyway"
        )
    _check_sliding_window(config, family, context_limit)
    if getattr(config, "alibi", False) or getattr(config, "position_embedding_type", "rope") == "alibi":
        raise UnsupportedModelError(f"{family} uses ALiBi position biases; the engine needs RoPE")
    if getattr(config, "attn_logit_softcapping", None):
        raise UnsupportedModelError(f"{family} soft-caps attention logits; the engine's attention does not")
    rope_type = _rope_type(config)
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedModelError(
            f"RoPE type {rope_type!r} depends on the sequence length (dynamic NTK / longrope) and cannot be "
            f"shifted exactly; supported: {', '.join(sorted(SUPPORTED_ROPE_TYPES))}"
        )
    rotary = [m for m in model.modules() if "Rotary" in type(m).__name__ and hasattr(m, "inv_freq")]
    if not rotary:
        raise UnsupportedModelError(
            f"{family} has no rotary embedding module (no RoPE); cannot shift positions"
        )
    inv_freq = rotary[0].inv_freq.detach().float()
    num_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // num_heads
    return ModelGeometry(
        num_layers=config.num_hidden_layers,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or num_heads,
        head_dim=head_dim,
        context_window=int(getattr(config, "max_position_embeddings", 0) or 32768),
        inv_freq=inv_freq,
    )
