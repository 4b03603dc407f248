"""Triton RoPE-shifted attention over a paged KV cache shared by several query groups.

One launch serves a whole forward pass. The query rows of *all* groups (query tokens × the GQA heads of
one KV head) are packed into the M dimension of ``tl.dot``, so every KV page tile is loaded once per step
for every group that sees it. Each row is rotated by its own shift ``δ = entry_shift[group(row), e]``
(rotate-half, partial rotary) in registers; the rotation is recomputed only when some row's shift changes
(at block boundaries), because δ is constant over the pages of one block. Tiles are powers of two of at
most 64 keys, decoupled from the page size: a page is one or several tiles and the slots past its size
are masked, so every page size works (sizes that are powers of two or multiples of 64 fill every tile).

Long caches are split across programs (split-K over the entry list) so that ~all SMs stream KV; each split
writes a partial ``(out, lse)`` and :func:`_merge_splits_kernel` combines them by log-sum-exp. Every
launch parameter depends on host ints only (tensor shapes, a split count derived from them and the SM
count), never on metadata values, so the call can be captured in a CUDA graph.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .launch import LaunchConfig, LaunchPlan, default_block_n, plan_launch
from .metadata import ShiftedAttentionMetadata, check_metadata

__all__ = [
    "AttentionWorkspace",
    "LaunchConfig",
    "LaunchPlan",
    "default_block_n",
    "plan_launch",
    "shifted_attention_triton",
]

_LOG2E = 1.4426950408889634
_INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _sincos(x):
    """``(sin x, cos x)`` of fp32 ``x`` (|x| up to ~1e5) to ~1e-7, with FMAs only.

    Cody-Waite reduction by π/2 in three FMA steps (π/2 = C1 + C2 + C3), then short Taylor polynomials on
    [-π/4, π/4] (truncation < 2e-9) and a quadrant swap. No libdevice call: its large-argument path keeps
    a local-memory array and spilled registers in the hot loop (measured: 255 regs, 164 spills).
    """
    k = tl.floor(x * 0.6366197723675814 + 0.5)
    r = tl.fma(-k, 1.5707963705062866, x)
    r = tl.fma(-k, -4.371139000186243e-08, r)
    r = tl.fma(-k, -1.7151245100059022e-15, r)
    r2 = r * r
    sin_r = r + r * r2 * (
        -0.16666666666666666
        + r2 * (0.008333333333333333 + r2 * (-1.984126984126984e-4 + r2 * 2.755731922398589e-6))
    )
    cos_r = 1.0 + r2 * (
        -0.5
        + r2
        * (
            0.041666666666666664
            + r2 * (-1.388888888888889e-3 + r2 * (2.48015873015873e-5 - r2 * 2.755731922398589e-7))
        )
    )
    quadrant = k.to(tl.int32) & 3
    sin = tl.where(
        quadrant == 0, sin_r, tl.where(quadrant == 1, cos_r, tl.where(quadrant == 2, -sin_r, -cos_r))
    )
    cos = tl.where(
        quadrant == 0, cos_r, tl.where(quadrant == 1, -sin_r, tl.where(quadrant == 2, -cos_r, sin_r))
    )
    return sin, cos


@triton.jit
def _rotate_halves(q1, q2, shift, freq, qk_scale, DTYPE: tl.constexpr):
    """Rotate-half RoPE of ``[BLOCK_M, HP]`` halves by one shift per row; scaled by ``qk_scale``, in DTYPE.

    The angle is computed in fp32 exactly as the reference does (``shift * inv_freq``).
    """
    sin, cos = _sincos(shift.to(tl.float32)[:, None] * freq[None, :])
    x1 = q1.to(tl.float32)
    x2 = q2.to(tl.float32)
    r1 = (x1 * cos - x2 * sin) * qk_scale
    r2 = (x2 * cos + x1 * sin) * qk_scale
    return r1.to(DTYPE), r2.to(DTYPE)


@triton.jit
def _rotate_from_table(
    q1, q2, CosSin, cs_row, row_sees, c_h, h_ok, qk_scale, DTYPE: tl.constexpr, ROT_HALF: tl.constexpr
):
    """Rotate-half RoPE with ``cos``/``sin`` read from the per-forward shift table (no sin/cos here).

    ``cs_row [M]`` is the table row (``group * E + entry``) of each query row; rows that do not see the
    tile read nothing and stay unrotated (their scores are masked).
    """
    base = CosSin + cs_row[:, None] * (2 * ROT_HALF) + c_h[None, :]
    mask = row_sees[:, None] & h_ok[None, :]
    cos = tl.load(base, mask=mask, other=1.0)
    sin = tl.load(base + ROT_HALF, mask=mask, other=0.0)
    x1 = q1.to(tl.float32)
    x2 = q2.to(tl.float32)
    r1 = (x1 * cos - x2 * sin) * qk_scale
    r2 = (x2 * cos + x1 * sin) * qk_scale
    return r1.to(DTYPE), r2.to(DTYPE)


@triton.jit
def _mma(a, b, acc, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """``acc + a @ b`` with fp32 accumulation (``UPCAST``: operands to fp32 first, exact; interpreter)."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc=acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc=acc, input_precision=PRECISION)


@triton.jit
def _tile_view(
    tile,
    PageIds,
    PageLen,
    EntryPos,
    EntryShift,
    meta_row,
    row_ok,
    qpos,
    prev_sees,
    prev_shift,
    PAGE_SIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    TILES_PER_PAGE: tl.constexpr,
    ON_CHANGE: tl.constexpr,
):
    """One KV tile as the program's rows see it.

    Visibility (metadata.py): ``epos >= 0``, ``slot < page_len``, ``epos + slot <= qpos``, folded into one
    tile-local ``limit`` per row (the last key index the row sees, ``-1`` for none) so that the score mask
    is one compare per element. A tile no row sees gets ``key_end = 0``: its loads are predicated off, so
    pages nobody sees are never read (they may hold garbage, even NaN, that 0 * NaN in P @ V would leak).
    A tile may cover only part of a page: a page of ``PAGE_SIZE`` slots is ``TILES_PER_PAGE =
    cdiv(PAGE_SIZE, BLOCK_N)`` tiles, and slots at or past ``page_len`` (<= ``PAGE_SIZE``) are masked like
    unfilled ones, so any page size works.

    With ``ON_CHANGE``, ``rotate`` says whether some row that sees this tile either did not see the
    previous tile or had another shift there (``prev_sees``/``prev_shift``, carried from the previous
    iteration; "saw nothing" before a split's first tile). Rows that see a tile then hold its rotation,
    by induction over the tiles: a row that saw the previous tile holds that tile's shift, so only a
    change forces a new rotation. The flag comes from metadata loads alone, never from the rotation's
    loop-carried result, so the K/V loads stay software-pipelined (a flag compared against the rotation
    state itself made every load wait: compiled TTGIR, ``async_wait {num = 0}``). Every tile of the loop
    is processed (``live_mode`` 1), which the induction needs.

    Returns:
        ``(page, slot0, key_end, row_sees [M], limit [M], shift [M], live, rotate, entry)``.

    """
    entry = tile // TILES_PER_PAGE
    slot0 = (tile % TILES_PER_PAGE) * BLOCK_N
    page = tl.load(PageIds + entry).to(tl.int64)
    plen = tl.minimum(tl.load(PageLen + entry), PAGE_SIZE)
    epos = tl.load(EntryPos + meta_row + entry, mask=row_ok, other=-1)
    shift = tl.load(EntryShift + meta_row + entry, mask=row_ok, other=0)
    row_sees = epos >= 0
    limit = tl.where(row_sees, tl.minimum(qpos - epos, plen - 1) - slot0, -1)
    live = tl.max((limit >= 0).to(tl.int32), axis=0) > 0
    if ON_CHANGE:
        changed = row_sees & ((~prev_sees) | (prev_shift != shift))
        rotate = tl.max(changed.to(tl.int32), axis=0) > 0
    else:
        rotate = live
    key_end = tl.where(live, plen, 0)
    return page, slot0, key_end, row_sees, limit, shift, live, rotate, entry


@triton.jit
def _load_kv(
    K,
    V,
    page,
    slot0,
    key_end,
    kv_head,
    stride_kp,
    stride_ks,
    stride_kh,
    stride_vp,
    stride_vs,
    stride_vh,
    c_h,
    h_ok,
    c_r,
    r_ok,
    cols,
    col_ok,
    n_off,
    ROT_HALF: tl.constexpr,
    REST_PAD: tl.constexpr,
):
    """Load one tile: keys as rotary halves ``[BLOCK_N, HP]`` (+ rest), values ``[BLOCK_N, D_PAD]``."""
    keys_ok = (slot0 + n_off) < key_end
    slots = (slot0 + n_off).to(tl.int64)
    k_row = K + page * stride_kp + kv_head * stride_kh + slots * stride_ks
    k_mask = keys_ok[:, None] & h_ok[None, :]
    k1 = tl.load(k_row[:, None] + c_h[None, :], mask=k_mask, other=0.0)
    k2 = tl.load(k_row[:, None] + ROT_HALF + c_h[None, :], mask=k_mask, other=0.0)
    if REST_PAD > 0:
        k_rest = tl.load(
            k_row[:, None] + 2 * ROT_HALF + c_r[None, :], mask=keys_ok[:, None] & r_ok[None, :], other=0.0
        )
    else:
        k_rest = k1  # unused
    v = tl.load(
        V + page * stride_vp + kv_head * stride_vh + slots[:, None] * stride_vs + cols[None, :],
        mask=keys_ok[:, None] & col_ok[None, :],
        other=0.0,
    )
    return k1, k2, k_rest, v


@triton.jit
def _query_for_tile(
    q1,
    q2,
    q1r,
    q2r,
    rotate,
    row_sees,
    shift,
    freq,
    CosSin,
    cs_row,
    c_h,
    h_ok,
    qk_scale,
    DTYPE: tl.constexpr,
    ROT_HALF: tl.constexpr,
    ROPE_TABLE: tl.constexpr,
    ON_CHANGE: tl.constexpr,
):
    """The rotated query halves for a tile: recomputed every tile, or (``ON_CHANGE``) only when ``rotate``.

    ``ON_CHANGE`` keeps the rotation in registers and recomputes it only when a row's shift changes, i.e.
    at block boundaries: δ is constant over a block's pages, so over the long history block no row
    rotates and no cos/sin is read. Rows that do not see the tile get the unrotated query; that is
    harmless, as only rows that see a tile must hold its shift (see :func:`_tile_view`), and keeps the
    old rotation out of the loop-carried state (no per-row select, fewer live registers).
    """
    if (not ON_CHANGE) or rotate:  # with ON_CHANGE: a block boundary (rare), a uniform branch
        if ROPE_TABLE:
            q1r, q2r = _rotate_from_table(
                q1, q2, CosSin, cs_row, row_sees, c_h, h_ok, qk_scale, DTYPE, ROT_HALF
            )
        else:
            q1r, q2r = _rotate_halves(q1, q2, tl.where(row_sees, shift, 0), freq, qk_scale, DTYPE)
    return q1r, q2r


@triton.jit
def _attend_tile(
    q1r,
    q2r,
    q_rest,
    k1,
    k2,
    k_rest,
    v,
    limit,
    n_off,
    m_i,
    l_i,
    acc,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    REST_PAD: tl.constexpr,
    DTYPE: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Online-softmax update of ``(m_i, l_i, acc)`` with one tile (scores in log2 units, fp32)."""
    s = _mma(q1r, tl.trans(k1), tl.zeros([BLOCK_M, BLOCK_N], tl.float32), DOT_UPCAST, DOT_PRECISION)
    s = _mma(q2r, tl.trans(k2), s, DOT_UPCAST, DOT_PRECISION)
    if REST_PAD > 0:
        s = _mma(q_rest, tl.trans(k_rest), s, DOT_UPCAST, DOT_PRECISION)
    s = tl.where(n_off[None, :] <= limit[:, None], s, float("-inf"))  # limit folds every visibility rule
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # fully masked so far: avoid -inf - -inf
    p = tl.exp2(s - m_safe[:, None])
    alpha = tl.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = _mma(p.to(DTYPE), v, acc * alpha[:, None], DOT_UPCAST, DOT_PRECISION)
    return m_new, l_i, acc


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
    CosSin,  # [G, E, R] fp32 shift table (ROPE_TABLE), else unused
    NumLive,  # [1] int32 live entries (DYN_TILES), else unused
    PartOut,  # [S, Hkv, T * GQA, D] fp32, or Out [T, Hq, D] when WRITE_FINAL
    PartLse,  # [S, Hkv, T * GQA] fp32 (log2 units)
    num_rows,  # T * GQA
    num_entries,  # E
    num_tiles,  # E * TILES_PER_PAGE
    tiles_per_split,
    stride_qt,
    stride_qh,
    # page-pool strides are constexpr: the loads' addresses become immediates (sm_90 SASS, Triton 3.9:
    # 7% fewer loop instructions at 16 rows, spills 96 -> 24 bytes at 32 rows); one compile per pool shape
    stride_kp: tl.constexpr,
    stride_ks: tl.constexpr,
    stride_kh: tl.constexpr,
    stride_vp: tl.constexpr,
    stride_vs: tl.constexpr,
    stride_vh: tl.constexpr,
    stride_ot,
    stride_oh,
    qk_scale,  # softmax scale * log2(e)
    GQA: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    D_PAD: tl.constexpr,
    ROT_HALF: tl.constexpr,  # R / 2: columns [0, R/2) pair with [R/2, R); the rest pass through
    HP: tl.constexpr,  # ROT_HALF padded to a power of two >= 16
    REST_PAD: tl.constexpr,  # HEAD_DIM - R padded (0: full rotary)
    PAGE_SIZE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    TILES_PER_PAGE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    LIVE_MODE: tl.constexpr,
    ROTATE_ON_CHANGE: tl.constexpr,
    WRITE_FINAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
    ROPE_TABLE: tl.constexpr,
    DYN_TILES: tl.constexpr,
):
    kv_head = tl.program_id(0)
    m_tile = tl.program_id(1)
    split = tl.program_id(2)
    num_kv_heads = tl.num_programs(0)
    dtype = Q.dtype.element_ty

    # rows = (query token, head of this KV head's GQA group), all groups' queries packed together
    rows = m_tile * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < num_rows
    tok = rows // GQA
    q_head = kv_head * GQA + rows % GQA
    group = tl.load(QueryGroup + tok, mask=row_ok, other=0)
    qpos = tl.load(QueryPos + tok, mask=row_ok, other=0)
    meta_row = group.to(tl.int64) * num_entries
    q_row = Q + tok.to(tl.int64) * stride_qt + q_head * stride_qh

    # the query stays in registers as its two rotary halves (+ the unrotated rest), in the input dtype
    c_h = tl.arange(0, HP)
    h_ok = c_h < ROT_HALF
    freq = tl.load(InvFreq + c_h, mask=h_ok, other=0.0)
    q_mask = row_ok[:, None] & h_ok[None, :]
    q1 = tl.load(q_row[:, None] + c_h[None, :], mask=q_mask, other=0.0)
    q2 = tl.load(q_row[:, None] + ROT_HALF + c_h[None, :], mask=q_mask, other=0.0)
    q1r = tl.zeros([BLOCK_M, HP], dtype)
    q2r = tl.zeros([BLOCK_M, HP], dtype)
    if REST_PAD > 0:
        c_r = tl.arange(0, REST_PAD)
        r_ok = c_r < HEAD_DIM - 2 * ROT_HALF
        q_rest = tl.load(
            q_row[:, None] + 2 * ROT_HALF + c_r[None, :], mask=row_ok[:, None] & r_ok[None, :], other=0.0
        )
        q_rest = (q_rest.to(tl.float32) * qk_scale).to(dtype)
    else:  # placeholders, unused
        c_r = c_h
        r_ok = h_ok
        q_rest = q1
    cols = tl.arange(0, D_PAD)
    col_ok = cols < HEAD_DIM
    n_off = tl.arange(0, BLOCK_N)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)

    if DYN_TILES:  # a graph captured for an entry capacity: spread only the live entries over the splits
        live_tiles = tl.load(NumLive) * TILES_PER_PAGE
        per_split = tl.cdiv(live_tiles, tl.num_programs(2))
        tile_lo = split * per_split
        tile_hi = tl.minimum(tile_lo + per_split, live_tiles)
    else:
        tile_lo = split * tiles_per_split
        tile_hi = tl.minimum(tile_lo + tiles_per_split, num_tiles)
    prev_sees = tl.zeros([BLOCK_M], tl.int1)  # the previous tile's visibility and shifts (on-change)
    prev_shift = tl.zeros([BLOCK_M], tl.int32)
    for tile in range(tile_lo, tile_hi):
        page, slot0, key_end, sees, limit, shift, live, rotate, entry = _tile_view(
            tile, PageIds, PageLen, EntryPos, EntryShift, meta_row, row_ok, qpos, prev_sees, prev_shift,
            PAGE_SIZE, BLOCK_N, TILES_PER_PAGE, ROTATE_ON_CHANGE,
        )  # fmt: skip
        prev_sees = sees
        prev_shift = shift
        if LIVE_MODE == 2:
            run = live  # branch around unseen tiles (causal chunks, prefill)
        else:
            run = True  # unseen tiles are predicated off (key_end = 0): no branch in the pipelined loop
        if run:
            k1, k2, k_rest, v = _load_kv(
                K, V, page, slot0, key_end, kv_head, stride_kp, stride_ks, stride_kh, stride_vp, stride_vs,
                stride_vh, c_h, h_ok, c_r, r_ok, cols, col_ok, n_off, ROT_HALF, REST_PAD,
            )  # fmt: skip
            q1r, q2r = _query_for_tile(
                q1, q2, q1r, q2r, rotate, sees, shift, freq, CosSin, meta_row + entry, c_h, h_ok,
                qk_scale, dtype, ROT_HALF, ROPE_TABLE, ROTATE_ON_CHANGE,
            )  # fmt: skip
            m_i, l_i, acc = _attend_tile(
                q1r, q2r, q_rest, k1, k2, k_rest, v, limit, n_off, m_i, l_i, acc, BLOCK_M, BLOCK_N, REST_PAD,
                dtype, DOT_UPCAST, DOT_PRECISION,
            )  # fmt: skip

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

    plan = plan_launch(page_size, num_entries, t_total * gqa, hkv, _sm_count(device), cfg)
    block_n, tiles_per_page, block_m = plan.block_n, plan.tiles_per_page, plan.block_m
    rows, num_tiles, splits, tiles_per_split = plan.rows, plan.num_tiles, plan.splits, plan.tiles_per_split
    if cfg.live_mode is not None:
        live_mode = cfg.live_mode
    else:
        live_mode = 2 if meta.max_queries_per_group > 1 else 1
    write_final = splits == 1

    if write_final:
        part_out, part_lse = out, out  # part_lse unused
    elif workspace is not None:
        part_out, part_lse = workspace.get(splits, hkv, rows, head_dim, device)
    else:
        part_out, part_lse = _new_partials(splits, hkv, rows, head_dim, device)

    d_pad = triton.next_power_of_2(max(head_dim, 16))
    rot_half = inv_freq.shape[0]
    rest = head_dim - 2 * rot_half
    rope_table = meta.shift_cos_sin is not None
    dyn_tiles = meta.num_live_entries is not None
    _shifted_attention_split_kernel[(hkv, plan.m_tiles, splits)](
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
        meta.shift_cos_sin if rope_table else inv_freq,
        meta.num_live_entries if dyn_tiles else meta.page_len,
        part_out,
        part_lse,
        rows,
        num_entries,
        num_tiles,
        tiles_per_split,
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
        ROT_HALF=rot_half,
        HP=max(16, triton.next_power_of_2(rot_half)),
        REST_PAD=max(16, triton.next_power_of_2(rest)) if rest > 0 else 0,
        PAGE_SIZE=page_size,
        BLOCK_N=block_n,
        TILES_PER_PAGE=tiles_per_page,
        BLOCK_M=block_m,
        LIVE_MODE=live_mode,
        # a skipped tile (live_mode 2) does not rotate, which the on-change induction needs
        ROTATE_ON_CHANGE=cfg.rotate_on_change and live_mode == 1,
        WRITE_FINAL=write_final,
        DOT_PRECISION="ieee" if query.dtype == torch.float32 else "tf32",
        # The Triton 3.9 CPU interpreter returns garbage from tl.dot on bf16 operands (seen here, not on
        # fp16/fp32): there, operands are upcast to fp32, which is exact and keeps fp32 accumulation.
        DOT_UPCAST=_INTERPRETING and query.dtype == torch.bfloat16,
        ROPE_TABLE=rope_table,
        DYN_TILES=dyn_tiles,
        num_warps=plan.num_warps,
        num_stages=plan.num_stages,
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
