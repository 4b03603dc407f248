"""Plain PyTorch twin of the RoPE-shifted paged attention: the specification, the CPU path, the test oracle.

Written to be read, not to be fast. Every fast path in this package is tested against
:func:`shifted_attention_reference`.
"""

from __future__ import annotations

import torch

from .metadata import ShiftedAttentionMetadata, check_metadata

__all__ = ["rotate_by_positions", "shifted_attention_reference"]


def rotate_by_positions(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` by ``positions`` with the rotate-half RoPE convention used by Hugging Face models.

    Only the first ``2 * len(inv_freq)`` features are rotated (partial rotary); the rest pass through.

    Args:
        x: ``[..., D]`` any float dtype; computed in float32 and returned in float32.
        positions: integer or float tensor broadcastable to ``x.shape[:-1]``: the rotation in positions.
        inv_freq: ``[R/2] float32``, the model's (possibly scaled) inverse frequencies.

    Returns:
        ``[..., D] float32``: ``x`` rotated by ``positions``.
    """
    half = inv_freq.shape[0]
    x = x.float()
    angle = positions.to(torch.float32).unsqueeze(-1) * inv_freq.to(device=x.device, dtype=torch.float32)
    cos, sin = angle.cos(), angle.sin()
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest), dim=-1)


def shifted_attention_reference(
    query: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor,
    meta: ShiftedAttentionMetadata,
    inv_freq: torch.Tensor,
    scale: float,
    query_chunk: int = 512,
) -> torch.Tensor:
    """RoPE-shifted attention of all query groups over paged K/V, in plain PyTorch with fp32 math.

    For each group the visible entries' keys are rotated by ``-entry_shift`` (equivalent to rotating the
    query by ``+entry_shift``) and ordinary masked softmax attention is taken.

    Args:
        query: ``[T, Hq, D]`` queries rotated to their block-local positions.
        key_pages: ``[P, page_size, Hkv, D]`` keys stored rotated to block-local positions.
        value_pages: ``[P, page_size, Hkv, D]``.
        meta: the forward's :class:`ShiftedAttentionMetadata`.
        inv_freq: ``[R/2] float32`` inverse frequencies of the model's rotary embedding.
        scale: softmax scale (usually ``D ** -0.5``).
        query_chunk: queries processed at once per group, bounding memory for long prefills.

    Returns:
        ``[T, Hq, D]`` attention output in ``query.dtype``. A query that sees no key gets zeros.

    Example:
        >>> import torch
        >>> from hogwild_kernels import ShiftedAttentionMetadata, shifted_attention_reference
        >>> q = torch.randn(1, 2, 8); k = torch.randn(1, 4, 1, 8); v = torch.randn(1, 4, 1, 8)
        >>> i32 = lambda *xs: torch.tensor(xs, dtype=torch.int32)
        >>> meta = ShiftedAttentionMetadata(i32(0), i32(4), i32(0).view(1, 1), i32(0).view(1, 1),
        ...                                 i32(0), i32(3), i32(0, 1), 1)
        >>> shifted_attention_reference(q, k, v, meta, torch.ones(4), 8 ** -0.5).shape
        torch.Size([1, 2, 8])
    """
    check_metadata(query, key_pages, value_pages, meta, inv_freq)
    t_total, hq, d = query.shape
    page_size, hkv = key_pages.shape[1], key_pages.shape[2]
    group_size = hq // hkv
    out = torch.zeros(t_total, hq, d, dtype=torch.float32, device=query.device)
    starts = meta.group_query_start.tolist()
    slots = torch.arange(page_size, device=query.device)
    for g in range(meta.num_groups):
        visible = (meta.entry_pos[g] >= 0).nonzero().flatten()
        q0, q1 = starts[g], starts[g + 1]
        if q1 == q0 or visible.numel() == 0:
            continue
        pages = meta.page_ids[visible].long()
        # [n, page_size, Hkv, D] -> keys rotated back by the shift, flattened to [n * page_size, Hkv, D]
        shift = meta.entry_shift[g, visible].view(-1, 1, 1).expand(-1, page_size, hkv)
        keys = rotate_by_positions(key_pages[pages], -shift, inv_freq).flatten(0, 1)
        values = value_pages[pages].float().flatten(0, 1)
        key_pos = (meta.entry_pos[g, visible].view(-1, 1) + slots).flatten()
        filled = (slots < meta.page_len[visible].view(-1, 1)).flatten()
        # unfilled slots hold whatever the pool held (maybe NaN): 0 * NaN would poison the output
        values = values.masked_fill(~filled.view(-1, 1, 1), 0.0)
        # GQA without copying K/V per query head: query head h reads KV head h // group_size.
        for c0 in range(q0, q1, query_chunk):
            c1 = min(q1, c0 + query_chunk)
            q = query[c0:c1].float().view(c1 - c0, hkv, group_size, -1)  # [t, Hkv, G, D]
            scores = torch.einsum("tkgd,nkd->kgtn", q, keys) * scale  # [Hkv, G, t, K]
            allowed = filled & (key_pos.view(1, -1) <= meta.query_pos[c0:c1].view(-1, 1))  # [t, K]
            scores = scores.masked_fill(~allowed, float("-inf"))
            probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # rows with no visible key -> zeros
            out[c0:c1] = torch.einsum("kgtn,nkd->tkgd", probs, values).reshape(c1 - c0, hq, -1)
    return out.to(query.dtype)
