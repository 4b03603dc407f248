"""Plan one forward pass: slots to write, block-local positions, and the attention metadata.

Built once per forward on the host, moved to the device in one go, and reused by every layer
(the "plan once, run per layer" rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hogwild_kernels import ShiftedAttentionMetadata

from .cache import PagedKVStore

__all__ = ["ForwardPlan", "WriteGroup", "plan_forward"]


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


def plan_forward(store: PagedKVStore, groups: list[WriteGroup], device: torch.device) -> ForwardPlan:
    """Build the plan for ``groups`` whose tokens were already reserved in ``store`` (slots filled).

    Block lengths are taken *after* this forward's writes, so every writer sees every other writer's
    tokens of this very pass (instant visibility); inside its own block the causal rule applies.
    """
    page_size = store.page_size
    entry_index: dict[tuple[int, int], int] = {}  # (block id, occurrence in view) -> first entry
    page_ids: list[int] = []
    page_len: list[int] = []
    per_group: list[tuple[list[int], list[int], list[int]]] = []  # entries, positions, shifts
    query_pos: list[int] = []
    query_group: list[int] = []
    group_start = [0]
    tokens: list[int] = []
    positions: list[int] = []
    slots: list[int] = []

    for g, group in enumerate(groups):
        lengths = [store.blocks[b].length for b in group.view]
        own_offset = sum(lengths[:-1])
        entries: list[int] = []
        entry_pos: list[int] = []
        shifts: list[int] = []
        seen: dict[int, int] = {}
        offset = 0
        for block_id, length in zip(group.view, lengths, strict=True):
            occurrence = seen.get(block_id, 0)
            seen[block_id] = occurrence + 1
            n_pages = -(-length // page_size)
            key = (block_id, occurrence)
            if key not in entry_index:
                entry_index[key] = len(page_ids)
                pages = store.blocks[block_id].pages
                for p in range(n_pages):
                    page_ids.append(pages[p])
                    page_len.append(min(page_size, length - p * page_size))
            first = entry_index[key]
            for p in range(n_pages):
                entries.append(first + p)
                entry_pos.append(offset + p * page_size)
                shifts.append(own_offset - offset)
            offset += length
        per_group.append((entries, entry_pos, shifts))

        assert group.slots is not None, "reserve the group's tokens before planning"
        n = len(group.token_ids)
        local = list(range(group.first_position, group.first_position + n))
        tokens.extend(group.token_ids)
        positions.extend(local)
        slots.extend(group.slots)
        query_pos.extend(own_offset + j for j in local)
        query_group.extend([g] * n)
        group_start.append(group_start[-1] + n)

    num_entries = len(page_ids)
    entry_pos_t = torch.full((len(groups), num_entries), -1, dtype=torch.int32)
    entry_shift_t = torch.zeros((len(groups), num_entries), dtype=torch.int32)
    for g, (entries, entry_pos, shifts) in enumerate(per_group):
        index = torch.tensor(entries, dtype=torch.long)
        entry_pos_t[g, index] = torch.tensor(entry_pos, dtype=torch.int32)
        entry_shift_t[g, index] = torch.tensor(shifts, dtype=torch.int32)

    def i32(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int32)

    meta = ShiftedAttentionMetadata(
        page_ids=i32(page_ids),
        page_len=i32(page_len),
        entry_pos=entry_pos_t,
        entry_shift=entry_shift_t,
        query_group=i32(query_group),
        query_pos=i32(query_pos),
        group_query_start=i32(group_start),
        max_queries_per_group=max(len(g.token_ids) for g in groups),
    )
    return ForwardPlan(
        input_ids=torch.tensor([tokens], dtype=torch.long, device=device),
        position_ids=torch.tensor([positions], dtype=torch.long, device=device),
        slot_mapping=torch.tensor(slots, dtype=torch.long, device=device),
        meta=meta.to(device),
        last_token_index=torch.tensor(group_start[1:], dtype=torch.long, device=device) - 1,
    )
