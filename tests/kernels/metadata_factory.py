"""Build consistent random attention metadata the way an engine would, plus a float64 brute-force oracle.

A *case* is a set of blocks (each a run of tokens stored in its own pages, keys rotated to block-local
positions), one view per query group (an ordered list of block ids, own block last, a block may repeat),
and the queries of each group: the last ``n_g`` tokens of its own block. :func:`build_metadata` turns the
views into :class:`ShiftedAttentionMetadata`; :func:`random_case` also draws the tensors;
:func:`brute_force_attention` recomputes the output by literally rotating raw keys and queries to their
view positions, in float64, independently of the reference's code path.

Engine tests reuse this module (``import metadata_factory``; tests/conftest.py puts this folder on the path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from hogwild_kernels import ShiftedAttentionMetadata

__all__ = [
    "AttentionCase",
    "brute_force_attention",
    "build_metadata",
    "combined_layout_views",
    "default_inv_freq",
    "random_case",
    "rope_float64",
]


@dataclass
class AttentionCase:
    """Everything a kernel call needs plus the raw (unrotated) tensors the brute force uses."""

    query: torch.Tensor  # [T, Hq, D] rotated to block-local positions
    key_pages: torch.Tensor  # [P, page_size, Hkv, D]
    value_pages: torch.Tensor  # [P, page_size, Hkv, D]
    meta: ShiftedAttentionMetadata
    inv_freq: torch.Tensor  # [R/2] fp32
    scale: float
    block_lengths: list[int]
    views: list[list[int]]
    queries_per_group: list[int]
    raw_keys: list[torch.Tensor] = field(repr=False)  # per block [len, Hkv, D] float64, unrotated
    raw_values: list[torch.Tensor] = field(repr=False)  # per block [len, Hkv, D] float64
    raw_query: torch.Tensor = field(repr=False)  # [T, Hq, D] float64, unrotated

    def args(self) -> tuple:
        """Positional arguments of ``shifted_attention_*``."""
        return self.query, self.key_pages, self.value_pages, self.meta, self.inv_freq, self.scale


def default_inv_freq(rotary_dim: int, base: float = 10000.0) -> torch.Tensor:
    """``[rotary_dim/2] float32`` standard RoPE inverse frequencies."""
    return 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)).float()


def rope_float64(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE in float64; ``x [..., n, H, D]`` rotated by ``positions [n]``; partial rotary."""
    half = inv_freq.shape[0]
    angle = positions.double().view(-1, 1, 1) * inv_freq.double().to(x.device)  # [n, 1, half]
    x = x.double()
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    c, s = angle.cos(), angle.sin()
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s, rest), dim=-1)


def combined_layout_views(workers: int, *, history_blocks: int = 1) -> tuple[list[int], list[list[int]]]:
    """Block ids and views of the ``combined`` layout: history, header, others' steps, own header, own step.

    Returns ``(kinds, views)`` where ``kinds[b]`` is ``"history" | "header" | "step" | "own_header"``.
    Blocks: ``history_blocks`` history blocks, one shared header, then per worker a current step, then
    per worker an own-header (visible to that worker only).
    """
    kinds = ["history"] * history_blocks + ["header"]
    step0 = len(kinds)
    kinds += ["step"] * workers
    own0 = len(kinds)
    kinds += ["own_header"] * workers
    views = []
    for w in range(workers):
        others = [step0 + o for o in range(workers) if o != w]
        views.append(list(range(history_blocks)) + [history_blocks] + others + [own0 + w, step0 + w])
    return kinds, views


def build_metadata(
    block_lengths: list[int],
    views: list[list[int]],
    queries_per_group: list[int],
    page_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle_entries: bool = True,
    spare_pages: int = 3,
    invisible_entries: int = 0,
) -> tuple[ShiftedAttentionMetadata, list[list[int]], int]:
    """Metadata of ``views`` over blocks stored in randomly placed pages.

    Args:
        block_lengths: tokens of each block.
        views: per group, block ids in view order; the last is the group's own block.
        queries_per_group: ``n_g`` queries of group g = the last ``n_g`` tokens of its own block.
        page_size: slots per page.
        generator: randomness for page placement, entry order and junk shifts.
        shuffle_entries: shuffle the entry list (kernels must not rely on its order).
        spare_pages: unused physical pages mixed in (a kernel must not read them).
        invisible_entries: extra entries no group sees (``entry_pos = -1`` everywhere), e.g. padding.

    Returns:
        ``(meta, block_pages, num_pages)``: CPU metadata, each block's physical page ids, pool size.
    """
    g_count = len(views)
    pages_per_block = [math.ceil(n / page_size) for n in block_lengths]
    num_pages = sum(pages_per_block) + spare_pages
    perm = torch.randperm(num_pages, generator=generator).tolist()
    block_pages, cursor = [], 0
    for n in pages_per_block:
        block_pages.append(perm[cursor : cursor + n])
        cursor += n

    # offsets of every occurrence (block, k) in every view
    offsets: list[dict[tuple[int, int], int]] = []
    for view in views:
        occ: dict[tuple[int, int], int] = {}
        seen: dict[int, int] = {}
        off = 0
        for b in view:
            k = seen.get(b, 0)
            seen[b] = k + 1
            occ[(b, k)] = off
            off += block_lengths[b]
        offsets.append(occ)
    keys = sorted({(b, k, j) for occ in offsets for (b, k) in occ for j in range(pages_per_block[b])})
    keys += [(-1, 0, 0)] * invisible_entries
    if shuffle_entries:
        order = torch.randperm(len(keys), generator=generator).tolist()
        keys = [keys[i] for i in order]
    e_count = len(keys)

    page_ids = torch.zeros(e_count, dtype=torch.int32)
    page_len = torch.zeros(e_count, dtype=torch.int32)
    entry_pos = torch.full((g_count, e_count), -1, dtype=torch.int32)
    # junk shifts where an entry is invisible: kernels must ignore them
    entry_shift = torch.randint(-50, 50, (g_count, e_count), generator=generator, dtype=torch.int32)
    for e, (b, k, j) in enumerate(keys):
        if b < 0:
            page_ids[e] = perm[-1]
            page_len[e] = page_size
            continue
        page_ids[e] = block_pages[b][j]
        page_len[e] = min(page_size, block_lengths[b] - j * page_size)
        for g, occ in enumerate(offsets):
            if (b, k) in occ:
                own_off = offsets[g][(views[g][-1], _last_occurrence(views[g]))]
                entry_pos[g, e] = occ[(b, k)] + j * page_size
                entry_shift[g, e] = own_off - occ[(b, k)]

    query_group, query_pos, starts = [], [], [0]
    for g, n in enumerate(queries_per_group):
        own = views[g][-1]
        own_off = offsets[g][(own, _last_occurrence(views[g]))]
        length = block_lengths[own]
        if n > length:
            raise ValueError(f"group {g} has {n} queries but its own block holds {length} tokens")
        query_group += [g] * n
        query_pos += [own_off + j for j in range(length - n, length)]
        starts.append(starts[-1] + n)
    meta = ShiftedAttentionMetadata(
        page_ids=page_ids,
        page_len=page_len,
        entry_pos=entry_pos,
        entry_shift=entry_shift,
        query_group=torch.tensor(query_group, dtype=torch.int32),
        query_pos=torch.tensor(query_pos, dtype=torch.int32),
        group_query_start=torch.tensor(starts, dtype=torch.int32),
        max_queries_per_group=max(queries_per_group, default=0),
    )
    return meta, block_pages, num_pages


def _last_occurrence(view: list[int]) -> int:
    return view.count(view[-1]) - 1


def random_case(
    block_lengths: list[int],
    views: list[list[int]],
    queries_per_group: list[int],
    *,
    page_size: int = 8,
    kv_heads: int = 2,
    gqa: int = 2,
    head_dim: int = 32,
    rotary_dim: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    invisible_entries: int = 0,
    inv_freq: torch.Tensor | None = None,
    shuffle_entries: bool = True,
) -> AttentionCase:
    """Draw a consistent random case (see module docstring); tensors on ``device`` in ``dtype``."""
    gen = torch.Generator().manual_seed(seed)
    meta, block_pages, num_pages = build_metadata(
        block_lengths,
        views,
        queries_per_group,
        page_size,
        generator=gen,
        invisible_entries=invisible_entries,
        shuffle_entries=shuffle_entries,
    )
    if inv_freq is None:
        inv_freq = default_inv_freq(rotary_dim or head_dim)
    hq = kv_heads * gqa
    # poison every slot (unused pages and unfilled slots must never be read)
    key_pages = torch.full((num_pages, page_size, kv_heads, head_dim), float("nan"), dtype=torch.float64)
    value_pages = key_pages.clone()
    raw_keys, raw_values = [], []
    for b, n in enumerate(block_lengths):
        # stored keys are drawn in the storage dtype; the raw (unrotated) keys are defined by rotating them
        # back in float64, so the brute force sees exactly the kernels' inputs (no storage rounding gap)
        stored = torch.randn(n, kv_heads, head_dim, generator=gen, dtype=torch.float64).to(dtype).double()
        v = torch.randn(n, kv_heads, head_dim, generator=gen, dtype=torch.float64).to(dtype).double()
        raw_keys.append(rope_float64(stored, -torch.arange(n), inv_freq))
        raw_values.append(v)
        for j, page in enumerate(block_pages[b]):
            lo, hi = j * page_size, min(n, (j + 1) * page_size)
            key_pages[page, : hi - lo] = stored[lo:hi]
            value_pages[page, : hi - lo] = v[lo:hi]
    t_total = int(meta.query_group.shape[0])
    query = torch.randn(t_total, hq, head_dim, generator=gen, dtype=torch.float64).to(dtype).double()
    local = torch.cat(
        [
            torch.arange(block_lengths[views[g][-1]] - n, block_lengths[views[g][-1]])
            for g, n in enumerate(queries_per_group)
        ]
        or [torch.zeros(0, dtype=torch.long)]
    )
    raw_query = rope_float64(query, -local, inv_freq)
    return AttentionCase(
        query=query.to(dtype).to(device),
        key_pages=key_pages.to(dtype).to(device),
        value_pages=value_pages.to(dtype).to(device),
        meta=meta.to(device),
        inv_freq=inv_freq.to(device),
        scale=head_dim**-0.5,
        block_lengths=list(block_lengths),
        views=[list(v) for v in views],
        queries_per_group=list(queries_per_group),
        raw_keys=[k.to(device) for k in raw_keys],
        raw_values=[v.to(device) for v in raw_values],
        raw_query=raw_query.to(device),
    )


def brute_force_attention(case: AttentionCase) -> torch.Tensor:
    """``[T, Hq, D] float64`` attention computed by rotating raw keys and queries to view positions.

    For each group: concatenate its view's raw keys rotated to their *view* positions, rotate each raw
    query to its view position, mask keys at later view positions (causal inside the own block), softmax.
    """
    hq = case.raw_query.shape[1]
    out = torch.zeros_like(case.raw_query)
    start = 0
    for g, view in enumerate(case.views):
        n = case.queries_per_group[g]
        if n == 0:
            continue
        keys, values, pos, off = [], [], [], 0
        for b in view:
            length = case.block_lengths[b]
            p = torch.arange(off, off + length, device=case.raw_query.device)
            keys.append(rope_float64(case.raw_keys[b], p, case.inv_freq))
            values.append(case.raw_values[b])
            pos.append(p)
            off += length
        own_len = case.block_lengths[view[-1]]
        q_pos = torch.arange(off - n, off, device=case.raw_query.device)
        assert own_len >= n
        k = torch.cat(keys)  # [K, Hkv, D]
        v = torch.cat(values)
        kpos = torch.cat(pos)
        group_size = hq // k.shape[1]
        k = k.repeat_interleave(group_size, dim=1)
        v = v.repeat_interleave(group_size, dim=1)
        q = rope_float64(case.raw_query[start : start + n], q_pos, case.inv_freq)  # [n, Hq, D]
        scores = torch.einsum("thd,khd->htk", q, k) * case.scale
        scores = scores.masked_fill((kpos.view(1, -1) > q_pos.view(-1, 1)).unsqueeze(0), float("-inf"))
        out[start : start + n] = torch.einsum("htk,khd->thd", scores.softmax(-1), v)
        start += n
    return out
