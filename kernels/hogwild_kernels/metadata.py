"""The per-forward attention metadata shared by every attention path.

A forward pass serves several *query groups* at once (one per worker writing this pass, plus the prompt
prefill or the finisher when they run). Each group attends to an ordered *view* of KV pages. The
metadata describes the union of all views as a list of *entries*: an entry is one occurrence of one
physical page. A page that several groups see is one entry with a position and a shift per group, which
is what lets a kernel load it once for all of them. A page that appears twice in one view (a shared
separator block, say) is two entries.

Visibility rule, the whole of the masking contract: key slot ``s`` of entry ``e`` is visible to query
``t`` of group ``g`` iff ``entry_pos[g, e] >= 0`` and ``s < page_len[e]`` and
``entry_pos[g, e] + s <= query_pos[t]``.

Position rule: keys are stored rotated to their block-local position, queries arrive rotated to their
own block-local position; attending to entry ``e`` the query is further rotated by
``entry_shift[g, e]`` (the offset of the query's own block minus the offset of the entry's block, both
in the group's view).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ShiftedAttentionMetadata", "check_metadata", "shift_table", "with_shift_table"]


@dataclass(slots=True)
class ShiftedAttentionMetadata:
    """Device-side description of one forward pass's attention, reused by every layer.

    Attributes:
        page_ids: ``[E] int32``, physical page index of each entry.
        page_len: ``[E] int32``, number of filled slots of each entry's page (1 … page_size).
        entry_pos: ``[G, E] int32``, view position of slot 0 of entry ``e`` in group ``g``'s view,
            or ``-1`` where the entry is not in that view.
        entry_shift: ``[G, E] int32``, query rotation (in positions) group ``g`` applies for entry ``e``.
        query_group: ``[T] int32``, group of each query token (non-decreasing).
        query_pos: ``[T] int32``, view position of each query token (for the causal rule).
        group_query_start: ``[G + 1] int32``, queries of group ``g`` are ``query_start[g]:query_start[g+1]``.
        max_queries_per_group: host-side upper bound of queries in one group (sizes kernel tiles).
        num_live_entries: optional ``[1] int32`` device count of real entries; entries at and after it are
            padding (they must have ``entry_pos = -1``). Lets a CUDA graph captured for a fixed entry
            capacity spread only the live entries over its splits.
        shift_cos_sin: optional ``[G, E, R] float32``, ``cos`` then ``sin`` of ``entry_shift[g, e] *
            inv_freq`` (``R = 2 * len(inv_freq)``), built once per forward by :func:`with_shift_table`;
            kernels that find it read the rotation instead of evaluating sin/cos per tile and query row.

    """

    page_ids: torch.Tensor
    page_len: torch.Tensor
    entry_pos: torch.Tensor
    entry_shift: torch.Tensor
    query_group: torch.Tensor
    query_pos: torch.Tensor
    group_query_start: torch.Tensor
    max_queries_per_group: int
    num_live_entries: torch.Tensor | None = None
    shift_cos_sin: torch.Tensor | None = None

    @property
    def num_entries(self) -> int:
        """Number of view entries ``E``."""
        return int(self.page_ids.shape[0])

    @property
    def num_groups(self) -> int:
        """Number of query groups ``G``."""
        return int(self.entry_pos.shape[0])

    def to(self, device: torch.device | str) -> ShiftedAttentionMetadata:
        """Return a copy with every tensor on ``device``."""
        return ShiftedAttentionMetadata(
            page_ids=self.page_ids.to(device),
            page_len=self.page_len.to(device),
            entry_pos=self.entry_pos.to(device),
            entry_shift=self.entry_shift.to(device),
            query_group=self.query_group.to(device),
            query_pos=self.query_pos.to(device),
            group_query_start=self.group_query_start.to(device),
            max_queries_per_group=self.max_queries_per_group,
            num_live_entries=None if self.num_live_entries is None else self.num_live_entries.to(device),
            shift_cos_sin=None if self.shift_cos_sin is None else self.shift_cos_sin.to(device),
        )


def shift_table(
    entry_shift: torch.Tensor, inv_freq: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``[G, E, R] float32``: cos then sin of ``entry_shift[g, e] * inv_freq`` (the angle the reference uses).

    Args:
        entry_shift: ``[G, E] int32`` shifts.
        inv_freq: ``[R/2] float32`` rotary inverse frequencies.
        out: optional preallocated result (written in place; keeps CUDA-graph addresses stable).

    """
    angle = entry_shift.to(torch.float32)[:, :, None] * inv_freq.to(torch.float32)[None, None, :]
    if out is None:
        return torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)
    half = inv_freq.shape[0]
    torch.cos(angle, out=out[..., :half])
    torch.sin(angle, out=out[..., half:])
    return out


def with_shift_table(meta: ShiftedAttentionMetadata, inv_freq: torch.Tensor) -> ShiftedAttentionMetadata:
    """Return ``meta`` with :attr:`~ShiftedAttentionMetadata.shift_cos_sin` filled (once per forward)."""
    return ShiftedAttentionMetadata(
        page_ids=meta.page_ids,
        page_len=meta.page_len,
        entry_pos=meta.entry_pos,
        entry_shift=meta.entry_shift,
        query_group=meta.query_group,
        query_pos=meta.query_pos,
        group_query_start=meta.group_query_start,
        max_queries_per_group=meta.max_queries_per_group,
        num_live_entries=meta.num_live_entries,
        shift_cos_sin=shift_table(meta.entry_shift, inv_freq.to(meta.entry_shift.device)),
    )


def check_metadata(
    query: torch.Tensor,
    key_pages: torch.Tensor,
    value_pages: torch.Tensor,
    meta: ShiftedAttentionMetadata,
    inv_freq: torch.Tensor,
) -> None:
    """Validate shapes and dtypes shared by every attention path; raise ``ValueError`` naming the problem.

    Cheap (no device synchronisation): it inspects shapes and dtypes only.
    """
    if query.dim() != 3:
        raise ValueError(f"query must be [T, Hq, D], got shape {tuple(query.shape)}")
    if key_pages.dim() != 4 or key_pages.shape != value_pages.shape:
        raise ValueError(
            "key_pages and value_pages must both be [P, page_size, Hkv, D]; got "
            f"{tuple(key_pages.shape)} and {tuple(value_pages.shape)}"
        )
    t, hq, d = query.shape
    hkv = key_pages.shape[2]
    if key_pages.shape[3] != d:
        raise ValueError(f"head_dim mismatch: query has {d}, pages have {key_pages.shape[3]}")
    if hq % hkv != 0:
        raise ValueError(f"query heads ({hq}) must be a multiple of KV heads ({hkv}) for GQA")
    if inv_freq.dim() != 1 or 2 * inv_freq.shape[0] > d:
        raise ValueError(
            f"inv_freq must be 1-D with at most head_dim/2={d // 2} entries, got {tuple(inv_freq.shape)}"
        )
    e = meta.page_ids.shape[0]
    g = meta.entry_pos.shape[0]
    if meta.page_len.shape != (e,) or meta.entry_pos.shape != (g, e) or meta.entry_shift.shape != (g, e):
        raise ValueError(
            "metadata shapes disagree: page_ids [E], page_len [E], entry_pos/entry_shift [G, E] "
            "expected; got "
            f"{tuple(meta.page_ids.shape)}, {tuple(meta.page_len.shape)}, "
            f"{tuple(meta.entry_pos.shape)}, {tuple(meta.entry_shift.shape)}"
        )
    if meta.query_group.shape != (t,) or meta.query_pos.shape != (t,):
        raise ValueError(f"query_group and query_pos must be [T]=[{t}]")
    if meta.group_query_start.shape != (g + 1,):
        raise ValueError(f"group_query_start must be [G + 1]=[{g + 1}]")
    if meta.shift_cos_sin is not None and meta.shift_cos_sin.shape != (g, e, 2 * inv_freq.shape[0]):
        raise ValueError(
            f"shift_cos_sin must be [G, E, R]=[{g}, {e}, {2 * inv_freq.shape[0]}], "
            f"got {tuple(meta.shift_cos_sin.shape)}"
        )
    if meta.num_live_entries is not None and meta.num_live_entries.shape != (1,):
        raise ValueError(f"num_live_entries must be [1], got {tuple(meta.num_live_entries.shape)}")
