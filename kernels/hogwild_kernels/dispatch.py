"""Choose the attention path for a forward pass: the Triton kernel on CUDA, the reference elsewhere."""

from __future__ import annotations

from typing import Literal

import torch

from .metadata import ShiftedAttentionMetadata
from .reference import shifted_attention_reference

Backend = Literal["auto", "triton", "reference"]

__all__ = ["Backend", "resolve_backend", "shifted_attention_with_paged_kv"]


def resolve_backend(backend: Backend, device: torch.device) -> Literal["triton", "reference"]:
    """Turn ``"auto"`` into a concrete backend for ``device``; reject impossible requests clearly."""
    if backend == "auto":
        return "triton" if device.type == "cuda" else "reference"
    if backend == "triton" and device.type != "cuda":
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                "attention backend 'triton' needs a CUDA device (or TRITON_INTERPRET=1 for the slow CPU "
                "interpreter); use backend='reference' or 'auto' on CPU"
            )
    if backend not in ("triton", "reference"):
        raise ValueError(f"unknown attention backend {backend!r}; expected 'auto', 'triton' or 'reference'")
    return backend


def shifted_attention_with_paged_kv(
    query: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor,
    meta: ShiftedAttentionMetadata,
    inv_freq: torch.Tensor,
    scale: float,
    backend: Backend = "auto",
) -> torch.Tensor:
    """RoPE-shifted attention of every query group of one forward pass over one layer's paged K/V.

    Args:
        query: ``[T, Hq, D]`` (bf16, fp16 or fp32) queries rotated to their block-local positions.
        key_pages: ``[P, page_size, Hkv, D]`` keys stored rotated to block-local positions.
        value_pages: ``[P, page_size, Hkv, D]``.
        meta: the forward's :class:`ShiftedAttentionMetadata` (see its module for the contract).
        inv_freq: ``[R/2] float32`` rotary inverse frequencies (already scaled: linear, llama3, yarn).
        scale: softmax scale.
        backend: ``"auto"`` (Triton on CUDA, reference otherwise), ``"triton"`` or ``"reference"``.

    Returns:
        ``[T, Hq, D]`` in ``query.dtype``.
    """
    chosen = resolve_backend(backend, query.device)
    if chosen == "reference":
        return shifted_attention_reference(query, key_pages, value_pages, meta, inv_freq, scale)
    from .triton_attention import shifted_attention_triton

    return shifted_attention_triton(query, key_pages, value_pages, meta, inv_freq, scale)
