"""Plan one forward pass: slots to write, block-local positions, and the attention metadata.

Built once per forward on the host, moved to the device in one go, and reused by every layer
(the "plan once, run per layer" rule).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from hogwild_kernels import ShiftedAttentionMetadata

from .store import PagedKVStore

__all__ = [
    "ForwardPlan",
    "HostPlan",
    "WriteGroup",
    "build_host_plan",
    "build_host_plan_reference",
    "plan_forward",
]


@dataclass(slots=True)
class WriteGroup:
    """One writer's contribution to a forward: tokens appended to ``block``, attending to ``view``.

    ``view`` ends with ``block``. ``slots`` and ``first_position`` are filled in by the planner.
    """

    writer: str
    block: int
    token_ids: list[int]
    view: list[int]
    slots: list[int] | None = None
    first_position: int = 0


@dataclass(slots=True)
class ForwardPlan:
    """Everything the model call of one forward needs, on the model's device.

    Attributes:
        input_ids: ``[1, T]`` all groups' tokens, group after group.
        position_ids: ``[1, T]`` block-local positions (the model's own RoPE rotates q and k by these).
        slot_mapping: ``[T] int64`` flat page slot of each new token.
        meta: attention metadata shared by all layers, for the tokens outside the dense spans (``None``
            when there are none).
        last_token_index: ``[G] int64`` index in ``T`` of each group's last token (the one sampled from).
        dense_spans: ``(start, length)`` in ``T`` of each group that writes a fresh block attending only
            to itself (a prompt): plain causal attention over its own new keys, which the attention hook
            hands to SDPA's fused (FlashAttention-class) kernels.
        kernel_tokens: ``[T'] int64`` indices in ``T`` of the tokens the shifted-attention kernel serves
            when there are dense spans (``None``: every token).

    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    slot_mapping: torch.Tensor
    meta: ShiftedAttentionMetadata | None
    last_token_index: torch.Tensor
    dense_spans: tuple[tuple[int, int], ...] = ()
    kernel_tokens: torch.Tensor | None = None


@dataclass(slots=True)
class HostPlan:
    """The plan of one forward on the host (numpy), before padding or the move to the device.

    Attributes:
        tokens, positions, slots, query_pos: ``[T]`` per query token (group after group).
        group_start: ``[G + 1]`` first token of each group.
        page_ids, page_len: ``[E]`` per entry.
        entry_pos, entry_shift: ``[G, E]`` per group and entry (``entry_pos = -1``: not in the view).

    """

    tokens: np.ndarray
    positions: np.ndarray
    slots: np.ndarray
    query_pos: np.ndarray
    group_start: np.ndarray
    page_ids: np.ndarray
    page_len: np.ndarray
    entry_pos: np.ndarray
    entry_shift: np.ndarray

    @property
    def num_entries(self) -> int:
        """Number of view entries ``E``."""
        return int(self.page_ids.shape[0])


def build_host_plan(store: PagedKVStore, groups: list[WriteGroup]) -> HostPlan:
    """Entries, positions and shifts of ``groups`` (tokens already reserved), as whole-array operations.

    The same plan as :func:`build_host_plan_reference` (the readable specification; a test keeps them
    equal), computed over all groups' views at once: a dozen numpy calls per forward instead of Python
    loops over every (group, block) pair, which dominated the host's share of a decode step at W=8.
    """
    page_size = store.page_size
    num_groups = len(groups)
    sizes = np.fromiter((len(g.view) for g in groups), dtype=np.int64, count=num_groups)
    flat = np.fromiter(
        itertools.chain.from_iterable(g.view for g in groups), dtype=np.int64, count=int(sizes.sum())
    )
    group_of = np.repeat(np.arange(num_groups), sizes)
    # Occurrence of each view element's block within its own view (the separator repeats, for one).
    key = group_of * (int(flat.max(initial=0)) + 1) + flat
    order = np.argsort(key, kind="stable")
    index = np.arange(len(flat))
    run_start = np.ones(len(flat), dtype=bool)
    run_start[1:] = key[order][1:] != key[order][:-1]
    occurrence = np.empty_like(flat)
    occurrence[order] = index - np.maximum.accumulate(np.where(run_start, index, 0))
    # One run of entries per (block, occurrence), in order of first appearance over the groups.
    stride = int(occurrence.max(initial=0)) + 1
    unique, first_at, inverse = np.unique(flat * stride + occurrence, return_index=True, return_inverse=True)
    appearance = np.argsort(first_at, kind="stable")
    rank = np.empty_like(appearance)
    rank[appearance] = np.arange(len(appearance))
    element_run = rank[inverse.reshape(-1)]
    run_blocks = [store.blocks[int(b)] for b in unique[appearance] // stride]
    run_length = np.fromiter((b.length for b in run_blocks), dtype=np.int64, count=len(run_blocks))
    run_pages = -(-run_length // page_size)
    run_first = np.cumsum(run_pages) - run_pages
    num_entries = int(run_pages.sum())
    page_ids = np.fromiter(
        itertools.chain.from_iterable(
            b.pages[:n] for b, n in zip(run_blocks, run_pages.tolist(), strict=True)
        ),
        dtype=np.int32,
        count=num_entries,
    )
    page_len = np.full(num_entries, page_size, dtype=np.int32)
    has_pages = run_pages > 0
    page_len[(run_first + run_pages - 1)[has_pages]] = (run_length - (run_pages - 1) * page_size)[has_pages]
    # Offsets of each element in its group's view; the own block (last) gives the group's own offset.
    element_length = run_length[element_run]
    ends = np.cumsum(element_length)
    group_end = np.cumsum(sizes) - 1
    group_base = np.concatenate(([0], ends[group_end[:-1]]))
    offset = ends - element_length - group_base[group_of]
    own_offset = offset[group_end]
    shift = own_offset[group_of] - offset
    element_pages = run_pages[element_run]
    rows = np.repeat(group_of, element_pages)
    within = np.arange(int(element_pages.sum())) - np.repeat(
        np.cumsum(element_pages) - element_pages, element_pages
    )
    cols = np.repeat(run_first[element_run], element_pages) + within
    entry_pos = np.full((num_groups, num_entries), -1, dtype=np.int32)
    entry_shift = np.zeros((num_groups, num_entries), dtype=np.int32)
    entry_pos[rows, cols] = within * page_size + np.repeat(offset, element_pages)
    entry_shift[rows, cols] = np.repeat(shift, element_pages)
    # The queries: every group's fed tokens at block-local positions.
    counts = np.fromiter((len(g.token_ids) for g in groups), dtype=np.int64, count=num_groups)
    group_start = np.concatenate(([0], np.cumsum(counts)))
    total = int(group_start[-1])
    assert all(g.slots is not None for g in groups), "reserve the groups' tokens before planning"
    firsts = np.fromiter((g.first_position for g in groups), dtype=np.int64, count=num_groups)
    local = np.arange(total) - np.repeat(group_start[:-1], counts)
    positions = np.repeat(firsts, counts) + local
    return HostPlan(
        tokens=np.fromiter(
            itertools.chain.from_iterable(g.token_ids for g in groups), dtype=np.int32, count=total
        ),
        positions=positions.astype(np.int32),
        slots=np.fromiter(
            itertools.chain.from_iterable(g.slots for g in groups), dtype=np.int64, count=total
        ),  # type: ignore[arg-type]
        query_pos=(positions + np.repeat(own_offset, counts)).astype(np.int32),
        group_start=group_start.astype(np.int32),
        page_ids=page_ids,
        page_len=page_len,
        entry_pos=entry_pos,
        entry_shift=entry_shift,
    )


def build_host_plan_reference(store: PagedKVStore, groups: list[WriteGroup]) -> HostPlan:
    """Entries, positions and shifts of ``groups`` (tokens already reserved), built block by block.

    The specification of :func:`build_host_plan`. Block lengths are taken *after* this forward's writes,
    so every writer sees every other writer's tokens of this very pass (instant visibility); inside its
    own block the causal rule applies. A block that several groups see is one run of entries (loaded once
    for all); a block that appears twice in one view is two runs.
    """
    page_size = store.page_size
    entry_index: dict[tuple[int, int], int] = {}  # (block id, occurrence in view) -> first entry
    page_runs: list[list[int]] = []
    len_runs: list[np.ndarray] = []
    spans: list[list[tuple[int, int, int, int]]] = []  # per group: (first entry, pages, offset, shift)
    num_entries = 0
    tokens: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    query_pos: list[int] = []
    group_start = [0]

    for group in groups:
        lengths = [store.blocks[b].length for b in group.view]
        own_offset = sum(lengths[:-1])
        seen: dict[int, int] = {}
        offset = 0
        runs: list[tuple[int, int, int, int]] = []
        for block_id, length in zip(group.view, lengths, strict=True):
            occurrence = seen.get(block_id, 0)
            seen[block_id] = occurrence + 1
            n_pages = -(-length // page_size)
            key = (block_id, occurrence)
            if key not in entry_index:
                entry_index[key] = num_entries
                page_runs.append(store.blocks[block_id].pages[:n_pages])
                run_len = np.full(n_pages, page_size, dtype=np.int32)
                if n_pages:
                    run_len[-1] = length - (n_pages - 1) * page_size
                len_runs.append(run_len)
                num_entries += n_pages
            runs.append((entry_index[key], n_pages, offset, own_offset - offset))
            offset += length
        spans.append(runs)

        assert group.slots is not None, "reserve the group's tokens before planning"
        n = len(group.token_ids)
        first = group.first_position
        tokens.extend(group.token_ids)
        positions.extend(range(first, first + n))
        slots.extend(group.slots)
        query_pos.extend(range(own_offset + first, own_offset + first + n))
        group_start.append(group_start[-1] + n)

    entry_pos = np.full((len(groups), num_entries), -1, dtype=np.int32)
    entry_shift = np.zeros((len(groups), num_entries), dtype=np.int32)
    longest = max((n for runs in spans for _, n, _, _ in runs), default=0)
    page_offsets = np.arange(longest, dtype=np.int32) * page_size
    for g, runs in enumerate(spans):
        for first, n, offset, shift in runs:
            entry_pos[g, first : first + n] = page_offsets[:n] + offset
            entry_shift[g, first : first + n] = shift

    def i32(values: list[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int32)

    return HostPlan(
        tokens=i32(tokens),
        positions=i32(positions),
        slots=np.asarray(slots, dtype=np.int64),
        query_pos=i32(query_pos),
        group_start=i32(group_start),
        page_ids=i32([p for run in page_runs for p in run]),
        page_len=np.concatenate(len_runs) if len_runs else np.zeros(0, dtype=np.int32),
        entry_pos=entry_pos,
        entry_shift=entry_shift,
    )


DENSE_MIN_TOKENS = 16  # shorter fresh blocks gain nothing from a separate dense attention call


def is_dense_prefix(group: WriteGroup) -> bool:
    """Whether ``group`` writes a fresh block that sees only itself: ordinary causal attention."""
    return (
        group.view == [group.block] and group.first_position == 0 and len(group.token_ids) >= DENSE_MIN_TOKENS
    )


def plan_forward(store: PagedKVStore, groups: list[WriteGroup], device: torch.device) -> ForwardPlan:
    """Build the device plan for ``groups`` whose tokens were already reserved in ``store`` (slots filled).

    Groups that write a fresh self-attending block (prompts, one per run that is starting) become dense
    spans (:attr:`ForwardPlan.dense_spans`); the shifted-attention metadata then covers the other groups,
    whose tokens are listed in :attr:`ForwardPlan.kernel_tokens`.
    """
    dense = [is_dense_prefix(g) for g in groups]
    if not any(dense):
        return _shifted_plan(store, groups, device)
    counts = [len(g.token_ids) for g in groups]
    starts = np.concatenate(([0], np.cumsum(counts)))
    rest = [g for g, d in zip(groups, dense, strict=True) if not d]
    spans = tuple((int(starts[i]), counts[i]) for i, d in enumerate(dense) if d)
    ids = np.fromiter(
        itertools.chain.from_iterable(g.token_ids for g in groups), dtype=np.int64, count=int(starts[-1])
    )
    positions = np.concatenate(
        [np.arange(g.first_position, g.first_position + n) for g, n in zip(groups, counts, strict=True)]
    )
    slots = np.fromiter(
        itertools.chain.from_iterable(g.slots for g in groups), dtype=np.int64, count=int(starts[-1])
    )  # type: ignore[arg-type]
    kernel = None
    meta = None
    if rest:
        meta = _shifted_plan(store, rest, device).meta
        kernel_idx = np.concatenate(
            [np.arange(starts[i], starts[i + 1]) for i, d in enumerate(dense) if not d]
        )
        kernel = torch.from_numpy(kernel_idx).to(device)
    return ForwardPlan(
        input_ids=torch.from_numpy(ids)[None].to(device),
        position_ids=torch.from_numpy(positions.astype(np.int64))[None].to(device),
        slot_mapping=torch.from_numpy(slots).to(device),
        meta=meta,
        last_token_index=torch.from_numpy(starts[1:] - 1).to(device),
        dense_spans=spans,
        kernel_tokens=kernel,
    )


def _shifted_plan(store: PagedKVStore, groups: list[WriteGroup], device: torch.device) -> ForwardPlan:
    host = build_host_plan(store, groups)
    num_groups = len(groups)
    counts = np.diff(host.group_start)
    meta = ShiftedAttentionMetadata(
        page_ids=torch.from_numpy(host.page_ids),
        page_len=torch.from_numpy(host.page_len),
        entry_pos=torch.from_numpy(host.entry_pos),
        entry_shift=torch.from_numpy(host.entry_shift),
        query_group=torch.from_numpy(np.repeat(np.arange(num_groups, dtype=np.int32), counts)),
        query_pos=torch.from_numpy(host.query_pos),
        group_query_start=torch.from_numpy(host.group_start),
        max_queries_per_group=int(counts.max()),
    )
    return ForwardPlan(
        input_ids=torch.from_numpy(host.tokens.astype(np.int64))[None].to(device),
        position_ids=torch.from_numpy(host.positions.astype(np.int64))[None].to(device),
        slot_mapping=torch.from_numpy(host.slots).to(device),
        meta=meta.to(device),
        last_token_index=torch.from_numpy(host.group_start[1:].astype(np.int64) - 1).to(device),
    )
