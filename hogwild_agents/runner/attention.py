"""Hook the shared-cache attention into transformers through its public extension points.

No model surgery: we register an attention function under the name ``"hogwild"``, pass a cache object
as the model's cache argument, and feed block-local ``position_ids`` so the model's own rotary embedding
rotates q and k. The per-forward plan travels in a context variable, set by the runner around the call.
Each layer's attention function writes the layer's new K/V into the shared pages, then attends; under
``torch.compile`` both happen inside one opaque op (:func:`paged_attention`), so the compiler never traces
the plan.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from hogwild_kernels import shifted_attention_with_paged_kv
from transformers import AttentionInterface

from ..cache.plan import ForwardPlan
from ..cache.store import PagedKVStore

__all__ = [
    "ATTENTION_NAME",
    "CACHE_ADAPTER",
    "ForwardContext",
    "HogwildCacheAdapter",
    "forward_context",
    "paged_attention",
]

ATTENTION_NAME = "hogwild"
_SDPA_ENABLE_GQA = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)


@dataclass(slots=True)
class ForwardContext:
    """What every layer of the current forward needs: the store, the plan and the RoPE frequencies."""

    store: PagedKVStore
    plan: ForwardPlan
    inv_freq: torch.Tensor
    backend: str


_CURRENT: ContextVar[ForwardContext | None] = ContextVar("hogwild_forward", default=None)


@contextlib.contextmanager
def forward_context(ctx: ForwardContext) -> Iterator[None]:
    """Make ``ctx`` the plan of every attention call made inside the ``with`` block (this thread only)."""
    token = _CURRENT.set(ctx)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _current() -> ForwardContext:
    ctx = _CURRENT.get()
    if ctx is None:
        raise RuntimeError(
            "the 'hogwild' attention was called outside a HogwildEngine forward; models prepared by the "
            "engine can only run through the engine"
        )
    return ctx


def _write_kv(ctx: ForwardContext, layer: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
    """Copy ``[1, Hkv, T, D]`` keys/values into the store's slots of this forward (``plan.slot_mapping``)."""
    store, slots = ctx.store, ctx.plan.slot_mapping
    flat_k = store.key_pages[layer].view(-1, *store.key_pages.shape[-2:])
    flat_v = store.value_pages[layer].view(-1, *store.value_pages.shape[-2:])
    flat_k.index_copy_(0, slots, key_states[0].transpose(0, 1).to(flat_k.dtype))
    flat_v.index_copy_(0, slots, value_states[0].transpose(0, 1).to(flat_v.dtype))


class HogwildCacheAdapter:
    """The object passed to the model as its KV cache; ``update`` hands the new K/V to the attention as is.

    The attention function, called right after ``update`` with what it returns, writes them into the
    shared pages (one write path, compiled or not). It deliberately does not subclass
    ``transformers.Cache``: the model only calls ``update`` (we always pass ``position_ids``), and mask
    creation is skipped for our attention implementation.
    """

    is_compileable = False

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the layer's new ``[1, Hkv, T, D]`` keys/values unchanged (the attention stores them)."""
        return key_states, value_states

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Unused by the engine (positions are always passed); present for API completeness."""
        return 0


CACHE_ADAPTER = HogwildCacheAdapter()
"""The one adapter every runner passes: it holds no state (the plan is in the forward context), and a
compiled model's guards on it then hold for every runner of that model."""


def _shifted(q: torch.Tensor, ctx: ForwardContext, layer: int, scale: float, meta: object) -> torch.Tensor:
    return shifted_attention_with_paged_kv(
        q,
        ctx.store.key_pages[layer],
        ctx.store.value_pages[layer],
        meta,  # type: ignore[arg-type]
        ctx.inv_freq,
        scale,
        backend=ctx.backend,  # type: ignore[arg-type]
    )


def _attend(
    ctx: ForwardContext, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
) -> torch.Tensor:
    """Attention of ``query [1, Hq, T, D]`` under the forward's plan (K/V stored): ``[1, T, Hq, D]``."""
    q = query[0].transpose(0, 1)  # [T, Hq, D]
    plan = ctx.plan
    if not plan.dense_spans:
        assert plan.meta is not None
        return _shifted(q, ctx, layer, scale, plan.meta).unsqueeze(0)
    out = torch.empty_like(q)
    group = query.shape[1] // key.shape[1]
    for start, n in plan.dense_spans:
        # A fresh self-attending block (a prompt): ordinary causal attention over its own new keys,
        # which sit at block-local positions 0..n-1 exactly as stored, so SDPA's fused kernels serve it.
        # GQA through SDPA's own enable_gqa (H200, 7B shape: 0.65x / 0.79x the time of repeating the K/V
        # heads at 1k / 4k tokens); torch before 2.5 lacks it, and the heads are repeated.
        keys, values = key[:, :, start : start + n], value[:, :, start : start + n]
        gqa = {}
        if group > 1 and _SDPA_ENABLE_GQA:
            gqa = {"enable_gqa": True}
        elif group > 1:
            keys, values = keys.repeat_interleave(group, dim=1), values.repeat_interleave(group, dim=1)
        dense = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start : start + n], keys, values, is_causal=True, scale=scale, **gqa
        )  # [1, Hq, n, D]
        out[start : start + n] = dense[0].transpose(0, 1)
    if plan.meta is not None:
        assert plan.kernel_tokens is not None
        out[plan.kernel_tokens] = _shifted(q[plan.kernel_tokens], ctx, layer, scale, plan.meta)
    return out.unsqueeze(0)


@torch.library.custom_op("hogwild::paged_attention", mutates_args=())
def paged_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layer: int, scale: float
) -> torch.Tensor:
    """The write of this layer's new K/V and its attention, as one op ``torch.compile`` does not trace.

    The plan (slots, pages, shifts) lives in a context variable, not in the op's arguments, so a compiled
    model stays valid for every step of its shape; the op's only side effect, the K/V write, is read by
    this layer's attention alone (inside the op), so no ordering outside it depends on it.
    """
    ctx = _current()
    _write_kv(ctx, layer, key, value)
    return _attend(ctx, layer, query, key, value, scale)


@paged_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layer: int, scale: float) -> torch.Tensor:
    return query.new_empty(1, query.shape[2], query.shape[1], query.shape[3])


def _hogwild_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Transformers attention function: ``query [1, Hq, T, D]`` → output ``[1, T, Hq, D]``."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if torch.compiler.is_compiling():
        return paged_attention(query, key, value, module.layer_idx, float(scale)), None
    ctx = _current()
    _write_kv(ctx, module.layer_idx, key, value)
    return _attend(ctx, module.layer_idx, query, key, value, scale), None


AttentionInterface.register(ATTENTION_NAME, _hogwild_attention)
