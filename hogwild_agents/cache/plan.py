"""Plan one forward pass: slots to write, block-local positions, and the attention metadata.

Built once per forward on the host, moved to the device in one go, and reused by every layer
(the "plan once, run per layer" rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from hogwild_kernels import ShiftedAttentionMetadata

from .store import PagedKVStore

__all__ = ["ForwardPlan", "HostPlan", "WriteGroup", "build_host_plan", "plan_forward"]


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
        meta: attention metadata shared by all layers.
        last_token_index: ``[G] int64`` index in ``T`` of each group's last token (the one sampled from).

    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    slot_mapping: torch.Tensor
    meta: ShiftedAttentionMetadata
    last_token_index: torch.Tensor


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
    """Entries, positions and shifts of ``groups`` (tokens already reserved), built block by block.

    Block lengths are taken *after* this forward's writes, so every writer sees every other writer's
    tokens of this very pass (instant visibility); inside its own block the causal rule applies. A block
    that several groups see is one run of entries (loaded once for all); a block that appears twice in
    one view is two runs. Work is per block (numpy slices), not per page: this runs on every decode step.
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


def plan_forward(store: PagedKVStore, groups: list[WriteGroup], device: torch.device) -> ForwardPlan:
    """Build the device plan for ``groups`` whose tokens were already reserved in ``store`` (slots filled)."""
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
