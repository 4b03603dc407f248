"""Triton RoPE-shifted attention over a paged KV cache shared by several query groups.

One launch serves a whole forward pass. The query rows of *all* groups (query tokens × the GQA heads of
one KV head) are packed into the M dimension of ``tl.dot``, so every KV page tile is loaded once per step
for every group that sees it. Each row is rotated by its own shift ``δ = entry_shift[group(row), e]``
(rotate-half, partial rotary) in registers; the rotation is recomputed only when some row's shift changes
(at block boundaries), because δ is constant over the pages of one block.

Long caches are split across programs (split-K over the entry list) so that ~all SMs stream KV; each split
writes a partial ``(out, lse)`` and :func:`_merge_splits_kernel` combines them by log-sum-exp. Every
launch parameter depends on host ints only (tensor shapes, a split count derived from them and the SM
count), never on metadata values, so the call can be captured in a CUDA graph.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .metadata import ShiftedAttentionMetadata, check_metadata

__all__ = ["AttentionWorkspace", "LaunchConfig", "shifted_attention_triton"]

_LOG2E = 1.4426950408889634
_INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
_DECODE_LIVE_MODE = 1
_NO_SHIFT = tl.constexpr(-(2**31) + 1)  # sentinel "no rotation computed yet" (never a real shift)


@dataclass(frozen=True, slots=True)
class LaunchConfig:
    """Tile sizes and split policy of the split kernel (defaults chosen by measurement on H100, see below).

    Attributes:
        block_n: keys per tile; ``None`` means ``min(page_size, 64)`` (at least 16). Must divide the
            page size when smaller than it.
        num_warps: warps per program of the split kernel.
        num_stages: software-pipelining depth of the K/V loads.
        waves: target number of programs per SM when choosing the split count.
        min_tiles_per_split: fewest KV tiles a split gets (bounds partial-result traffic).
        num_splits: force a split count (tests); ``None`` chooses from the SM count.
        live_mode: tiles no row of the program sees: 0 loads them anyway (masked in softmax), 1 predicates
            their loads off, 2 branches around them. ``None``: 2 when a group has several queries (chunks,
            prefill: skips causally masked tiles), else the decode default.
        rotate_every_tile: recompute the query rotation for every tile instead of only when a row's shift
            changes (saves a cross-warp reduction per tile, costs M x D sin/cos per tile).

    """

    block_n: int | None = None
    num_warps: int = 4
    num_stages: int = 3
    waves: float = 2.0
    min_tiles_per_split: int = 2
    num_splits: int | None = None
    live_mode: int | None = None
    rotate_every_tile: bool = False


@triton.jit
def _rotated_query(
    Q,
    q_row_off,
    row_ok,
    cols,
    partner,
    rot_sign,
    freq,
    shift,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    DTYPE: tl.constexpr,
):
    """Return ``[BLOCK_M, D_PAD]`` queries rotated by ``shift`` (one per row) times ``qk_scale``, in DTYPE."""
    col_ok = cols < HEAD_DIM
    q = tl.load(Q + q_row_off[:, None] + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
    q_partner = tl.load(
        Q + q_row_off[:, None] + partner[None, :],
        mask=row_ok[:, None] & (rot_sign != 0)[None, :],
        other=0.0,
    )
    # The angle in fp32 exactly as the reference computes it (shift * inv_freq), then reduced to [-π, π]
    # (Cody-Waite, 2π = 6.28125 + 0.00193...: k * 6.28125 is exact for |k| < 2**16), so the result is
    # accurate to ~1e-7 rad whether tl.cos/tl.sin lower to libdevice or to the .approx instructions.
    angle = shift.to(tl.float32)[:, None] * freq[None, :]
    k = tl.floor(angle * 0.15915494309189535 + 0.5)  # round(angle / 2π)
    reduced = tl.fma(-k, 6.28125, angle)
    reduced = tl.fma(-k, 0.0019353071795864769, reduced)
    cos = tl.cos(reduced)
    sin = tl.sin(reduced) * rot_sign[None, :]
    rotated = q.to(tl.float32) * cos + q_partner.to(tl.float32) * sin
    return (rotated * qk_scale).to(DTYPE)


@triton.jit
def _shifted_attention_split_kernel(
    Q,  # [T, Hq, D]
    K,  # [P, page_size, Hkv, D]
    V,  # [P, page_size, Hkv, D]
    PageIds,  # [E] int32
    PageLen,  # [E] int32
    EntryPos,  # [G, E] int32
    EntryShift,  # [G, E] int32
    QueryGroup,  # [T] int32
    QueryPos,  # [T] int32
    InvFreq,  # [R/2] fp32
    PartOut,  # [S, Hkv, T * GQA, D] fp32, or Out [T, Hq, D] when WRITE_FINAL
    PartLse,  # [S, Hkv, T * GQA] fp32 (log2 units)
    num_rows,  # T * GQA
    num_entries,  # E
    num_tiles,  # E * TILES_PER_PAGE
    tiles_per_split,
    half_rot,  # R / 2
    stride_qt,
    stride_qh,
    stride_kp,
    stride_ks,
    stride_kh,
    stride_vp,
    stride_vs,
    stride_vh,
    stride_ot,
    stride_oh,
    qk_scale,  # softmax scale * log2(e)
    GQA: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    D_PAD: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    TILES_PER_PAGE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    LIVE_MODE: tl.constexpr,
    ROTATE_EVERY_TILE: tl.constexpr,
    WRITE_FINAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
):
    kv_head = tl.program_id(0)
    m_tile = tl.program_id(1)
    split = tl.program_id(2)
    num_kv_heads = tl.num_programs(0)
    dtype = Q.dtype.element_ty

    rows = m_tile * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < num_rows
    tok = rows // GQA
    q_head = kv_head * GQA + rows % GQA
    group = tl.load(QueryGroup + tok, mask=row_ok, other=0)
    qpos = tl.load(QueryPos + tok, mask=row_ok, other=0)
    meta_row = group.to(tl.int64) * num_entries
    q_row_off = tok.to(tl.int64) * stride_qt + q_head * stride_qh

    # rotate-half bookkeeping per column: x1 = cols [0, R/2) pairs with x2 = cols [R/2, R); the rest passes.
    cols = tl.arange(0, D_PAD)
    is_x1 = cols < half_rot
    is_x2 = (cols >= half_rot) & (cols < 2 * half_rot)
    partner = tl.where(is_x1, cols + half_rot, cols - half_rot)
    rot_sign = tl.where(is_x1, -1.0, tl.where(is_x2, 1.0, 0.0))
    freq = tl.load(InvFreq + tl.where(is_x1, cols, cols - half_rot), mask=is_x1 | is_x2, other=0.0)
    col_ok = cols < HEAD_DIM
    n_off = tl.arange(0, BLOCK_N)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    cur_shift = tl.full([BLOCK_M], _NO_SHIFT, tl.int32)
    q_rot = tl.zeros([BLOCK_M, D_PAD], dtype)

    tile_lo = split * tiles_per_split
    tile_hi = tl.minimum(tile_lo + tiles_per_split, num_tiles)
    for tile in range(tile_lo, tile_hi):
        entry = tile // TILES_PER_PAGE
        slot0 = (tile % TILES_PER_PAGE) * BLOCK_N
        epos = tl.load(EntryPos + meta_row + entry, mask=row_ok, other=-1)
        eshift = tl.load(EntryShift + meta_row + entry, mask=row_ok, other=0)
        page = tl.load(PageIds + entry).to(tl.int64)
        plen = tl.load(PageLen + entry)
        # Visibility (metadata.py): epos >= 0, slot < page_len, epos + slot <= qpos.
        row_sees = (epos >= 0) & row_ok
        limit = qpos - epos - slot0  # last visible tile-local key index of the row
        key_end = tl.minimum(plen, PAGE_SIZE)
        if LIVE_MODE == 0:
            run = True  # loads depend on scalar metadata only (easiest to pipeline)
        else:
            row_live = row_sees & (limit >= 0)
            tile_live = tl.max(row_live.to(tl.int32), axis=0) > 0
            if LIVE_MODE == 1:
                run = True
                key_end = tl.where(tile_live, key_end, 0)  # predicated off: no traffic for unseen tiles
            else:
                run = tile_live  # branch around the whole tile (causal chunks, prefill)
        keys_ok = (slot0 + n_off) < key_end
        if run:
            if ROTATE_EVERY_TILE:
                q_rot = _rotated_query(
                    Q, q_row_off, row_ok, cols, partner, rot_sign, freq, eshift, qk_scale, HEAD_DIM, dtype
                )
            else:
                # Re-rotate only when a row that sees this entry needs another shift (block boundaries).
                want = tl.where(row_sees, eshift, cur_shift)
                if tl.max((want != cur_shift).to(tl.int32), axis=0) > 0:
                    cur_shift = want
                    q_rot = _rotated_query(
                        Q, q_row_off, row_ok, cols, partner, rot_sign, freq, want, qk_scale, HEAD_DIM, dtype
                    )
            kv_mask = keys_ok[:, None] & col_ok[None, :]
            slots = (slot0 + n_off).to(tl.int64)
            k = tl.load(
                K + page * stride_kp + slots[:, None] * stride_ks + kv_head * stride_kh + cols[None, :],
                mask=kv_mask,
                other=0.0,
            )
            v = tl.load(
                V + page * stride_vp + slots[:, None] * stride_vs + kv_head * stride_vh + cols[None, :],
                mask=kv_mask,
                other=0.0,
            )
            if DOT_UPCAST:  # exact: bf16 -> fp32, fp32 accumulation either way
                s = tl.dot(q_rot.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision="ieee")
            else:
                s = tl.dot(q_rot, tl.trans(k), input_precision=DOT_PRECISION)  # [BLOCK_M, BLOCK_N], log2
            visible = row_sees[:, None] & keys_ok[None, :] & (n_off[None, :] <= limit[:, None])
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # fully masked so far: avoid -inf - -inf
            p = tl.exp2(s - m_safe[:, None])
            alpha = tl.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, axis=1)
            if DOT_UPCAST:
                pv = tl.dot(p.to(dtype).to(tl.float32), v.to(tl.float32), input_precision="ieee")
            else:
                pv = tl.dot(p.to(dtype), v, input_precision=DOT_PRECISION)
            acc = acc * alpha[:, None] + pv
            m_i = m_new

    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]  # a row that saw nothing stays 0 with lse = -inf
    if WRITE_FINAL:
        o_ptr = PartOut + tok.to(tl.int64)[:, None] * stride_ot + q_head[:, None] * stride_oh + cols[None, :]
        tl.store(o_ptr, out.to(PartOut.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])
    else:
        part_row = (split * num_kv_heads + kv_head).to(tl.int64) * num_rows + rows
        o_ptr = PartOut + part_row[:, None] * HEAD_DIM + cols[None, :]
        tl.store(o_ptr, out, mask=row_ok[:, None] & col_ok[None, :])
        lse = tl.where(seen, m_i + tl.log2(tl.where(seen, l_i, 1.0)), float("-inf"))
        tl.store(PartLse + part_row, lse, mask=row_ok)


@triton.jit
def _merge_splits_kernel(
    PartOut,  # [S, Hkv, T * GQA, D] fp32
    PartLse,  # [S, Hkv, T * GQA] fp32
    Out,  # [T, Hq, D]
    num_rows,  # T * GQA
    num_splits,
    stride_ot,
    stride_oh,
    gqa,
    HEAD_DIM: tl.constexpr,
    D_PAD: tl.constexpr,
    SPLITS_PAD: tl.constexpr,
):
    tok = tl.program_id(0)
    q_head = tl.program_id(1)
    num_kv_heads = tl.num_programs(1) // gqa
    kv_head = q_head // gqa
    row = tok * gqa + q_head % gqa
    splits = tl.arange(0, SPLITS_PAD)
    split_ok = splits < num_splits
    part_row = (splits * num_kv_heads + kv_head).to(tl.int64) * num_rows + row
    lse = tl.load(PartLse + part_row, mask=split_ok, other=float("-inf"))
    m = tl.max(lse, axis=0)
    m_safe = tl.where(m == float("-inf"), 0.0, m)  # every split empty: weights 0, output 0
    w = tl.exp2(lse - m_safe)
    denom = tl.sum(w, axis=0)
    cols = tl.arange(0, D_PAD)
    col_ok = cols < HEAD_DIM
    parts = tl.load(
        PartOut + part_row[:, None] * HEAD_DIM + cols[None, :],
        mask=split_ok[:, None] & col_ok[None, :],
        other=0.0,
    )
    out = tl.sum(parts * w[:, None], axis=0) / tl.where(denom > 0.0, denom, 1.0)
    tl.store(Out + tok * stride_ot + q_head * stride_oh + cols, out.to(Out.dtype.element_ty), mask=col_ok)


class AttentionWorkspace:
    """Reusable split-K scratch buffers, keyed by shape (allocate once, reuse every layer and step).

    Not safe to share between calls running concurrently on different streams.

    Example:
        >>> ws = AttentionWorkspace()  # then: shifted_attention_triton(..., workspace=ws)

    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, splits: int, kv_heads: int, rows: int, head_dim: int, device: torch.device):
        """Return ``(part_out [S, Hkv, rows, D] fp32, part_lse [S, Hkv, rows] fp32)`` for this shape."""
        key = (splits, kv_heads, rows, head_dim, device)
        if key not in self._buffers:
            self._buffers[key] = _new_partials(splits, kv_heads, rows, head_dim, device)
        return self._buffers[key]


def _new_partials(splits: int, kv_heads: int, rows: int, head_dim: int, device: torch.device):
    part_out = torch.empty(splits, kv_heads, rows, head_dim, dtype=torch.float32, device=device)
    part_lse = torch.empty(splits, kv_heads, rows, dtype=torch.float32, device=device)
    return part_out, part_lse


_SM_COUNT: dict[torch.device, int] = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4  # CPU interpreter: a few programs, enough to exercise the split/merge path
    if device not in _SM_COUNT:
        _SM_COUNT[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return _SM_COUNT[device]


def _int32(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.to(device=device, dtype=torch.int32).contiguous()


def shifted_attention_triton(
    query: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor,
    meta: ShiftedAttentionMetadata,
    inv_freq: torch.Tensor,
    scale: float,
    *,
    workspace: AttentionWorkspace | None = None,
    config: LaunchConfig | None = None,
) -> torch.Tensor:
    """RoPE-shifted attention of all query groups over paged K/V in one Triton pass (+ one LSE merge).

    Same contract as :func:`~hogwild_kernels.reference.shifted_attention_reference`; no host sync, so it
    can be captured in a CUDA graph (the launch depends only on shapes and ``config``).

    Args:
        query: ``[T, Hq, D]`` bf16/fp16/fp32 queries rotated to their block-local positions.
        key_pages: ``[P, page_size, Hkv, D]`` keys stored rotated to block-local positions (same dtype).
        value_pages: ``[P, page_size, Hkv, D]``.
        meta: the forward's :class:`ShiftedAttentionMetadata` (int32 tensors on the query's device).
        inv_freq: ``[R/2] float32`` rotary inverse frequencies; only the first ``R`` features rotate.
        scale: softmax scale.
        workspace: optional :class:`AttentionWorkspace` reusing split-K buffers across calls.
        config: optional :class:`LaunchConfig` (tile sizes, split policy); defaults are tuned for H100.

    Returns:
        ``[T, Hq, D]`` in ``query.dtype``; a query that sees no key gets zeros.

    """
    check_metadata(query, key_pages, value_pages, meta, inv_freq)
    if query.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise ValueError(f"query dtype must be bfloat16, float16 or float32, got {query.dtype}")
    if key_pages.dtype != query.dtype or value_pages.dtype != query.dtype:
        raise ValueError(
            f"query, key_pages and value_pages must share a dtype; got {query.dtype}, "
            f"{key_pages.dtype}, {value_pages.dtype}"
        )
    cfg = config or LaunchConfig()
    device = query.device
    t_total, hq, head_dim = query.shape
    _, page_size, hkv, _ = key_pages.shape
    gqa = hq // hkv
    num_entries = meta.num_entries
    out = torch.empty_like(query)
    if t_total == 0:
        return out
    if num_entries == 0:
        return out.zero_()

    query = query if query.stride(-1) == 1 else query.contiguous()
    key_pages = key_pages if key_pages.stride(-1) == 1 else key_pages.contiguous()
    value_pages = value_pages if value_pages.stride(-1) == 1 else value_pages.contiguous()

    block_n = cfg.block_n or min(page_size, 64)
    block_n = max(16, block_n)
    if block_n < page_size and page_size % block_n:
        raise ValueError(f"block_n={block_n} must divide page_size={page_size}")
    tiles_per_page = max(1, page_size // block_n)
    num_tiles = num_entries * tiles_per_page

    rows = t_total * gqa
    block_m = 64 if rows >= 64 else max(16, triton.next_power_of_2(rows))
    m_tiles = triton.cdiv(rows, block_m)
    programs = hkv * m_tiles
    if cfg.num_splits is not None:
        splits = max(1, min(cfg.num_splits, num_tiles))
    else:
        want = max(1, math.ceil(cfg.waves * _sm_count(device) / programs))
        splits = max(1, min(want, num_tiles // max(1, cfg.min_tiles_per_split)))
    tiles_per_split = triton.cdiv(num_tiles, splits)
    splits = triton.cdiv(num_tiles, tiles_per_split)  # no empty trailing splits
    if cfg.live_mode is not None:
        live_mode = cfg.live_mode
    else:
        live_mode = 2 if meta.max_queries_per_group > 1 else _DECODE_LIVE_MODE
    write_final = splits == 1

    if write_final:
        part_out, part_lse = out, out  # part_lse unused
    elif workspace is not None:
        part_out, part_lse = workspace.get(splits, hkv, rows, head_dim, device)
    else:
        part_out, part_lse = _new_partials(splits, hkv, rows, head_dim, device)

    d_pad = triton.next_power_of_2(max(head_dim, 16))
    _shifted_attention_split_kernel[(hkv, m_tiles, splits)](
        query,
        key_pages,
        value_pages,
        _int32(meta.page_ids, device),
        _int32(meta.page_len, device),
        _int32(meta.entry_pos, device),
        _int32(meta.entry_shift, device),
        _int32(meta.query_group, device),
        _int32(meta.query_pos, device),
        inv_freq.to(device=device, dtype=torch.float32).contiguous(),
        part_out,
        part_lse,
        rows,
        num_entries,
        num_tiles,
        tiles_per_split,
        inv_freq.shape[0],
        query.stride(0),
        query.stride(1),
        key_pages.stride(0),
        key_pages.stride(1),
        key_pages.stride(2),
        value_pages.stride(0),
        value_pages.stride(1),
        value_pages.stride(2),
        out.stride(0),
        out.stride(1),
        scale * _LOG2E,
        GQA=gqa,
        HEAD_DIM=head_dim,
        D_PAD=d_pad,
        PAGE_SIZE=page_size,
        BLOCK_N=block_n,
        TILES_PER_PAGE=tiles_per_page,
        BLOCK_M=block_m,
        LIVE_MODE=live_mode,
        ROTATE_EVERY_TILE=cfg.rotate_every_tile,
        WRITE_FINAL=write_final,
        DOT_PRECISION="ieee" if query.dtype == torch.float32 else "tf32",
        # The Triton 3.9 CPU interpreter returns garbage from tl.dot on bf16 operands (seen here, not on
        # fp16/fp32): there, operands are upcast to fp32, which is exact and keeps fp32 accumulation.
        DOT_UPCAST=_INTERPRETING and query.dtype == torch.bfloat16,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    if not write_final:
        _merge_splits_kernel[(t_total, hq)](
            part_out,
            part_lse,
            out,
            rows,
            splits,
            out.stride(0),
            out.stride(1),
            gqa,
            HEAD_DIM=head_dim,
            D_PAD=d_pad,
            SPLITS_PAD=triton.next_power_of_2(splits),
            num_warps=4,
        )
    return out
