"""Recording a run into its :class:`~hogwild_agents.api.results.Trace`.

Per forward: every group (writer, block, fed tokens, view) and every sample (writer, group, token, whether
it was the argmax, the ban set and the grammar mask that applied). Per block: author, tokens and the
forward each token was written in. With the run's sampling settings and ban sets this is enough for an
independent implementation to recompute every writer's logits and re-derive each greedy choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..api.results import BlockRecord, ForwardRecord, GroupRecord, SampleRecord, TokenMask
from ..runner.sampling import SampleRequest
from .protocol import Plan
from .state import RunState

__all__ = ["grammar_mask", "record_blocks", "record_forward", "record_samples"]


def record_forward(run: RunState, plan: Plan) -> ForwardRecord:
    """Append the record of ``plan``'s forward (its groups) to the run's trace."""
    record = ForwardRecord(index=run.forward_index)
    record.groups = [GroupRecord(g.writer, g.block, list(g.token_ids), list(g.view)) for g in plan.groups]
    run.trace.forwards.append(record)
    return record


def record_samples(
    run: RunState,
    samples: Sequence[SampleRequest],
    ids: Sequence[int],
    masks: Mapping[int, np.ndarray],
    vocab_size: int,
) -> None:
    """Add the samples of the last forward; the group's ``sampled`` is its own writer's token."""
    record = run.trace.forwards[-1]
    for row, (request, token) in enumerate(zip(samples, ids, strict=True)):
        ban = request.ban.name if request.ban is not None and request.ban.ids else None
        if ban is not None and ban not in run.trace.bans:
            run.trace.bans[ban] = list(request.ban.ids)  # type: ignore[union-attr]
        grammar = grammar_mask(masks[row], vocab_size) if row in masks else None
        record.samples.append(
            SampleRecord(request.writer, request.group, token, request.takes_argmax, ban, grammar)
        )
        group = record.groups[request.group]
        if group.sampled is None and group.writer in (request.writer, "prompt"):
            group.sampled = token


def grammar_mask(words: np.ndarray, vocab_size: int) -> TokenMask:
    """A packed allowed-bits row as the shorter of its allowed or refused token ids."""
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab_size].astype(bool)
    allowed = np.flatnonzero(bits)
    if len(allowed) <= vocab_size // 2:
        return TokenMask(allow=True, ids=allowed.tolist())
    return TokenMask(allow=False, ids=np.flatnonzero(~bits).tolist())


def record_blocks(run: RunState) -> None:
    """Snapshot every block of the run (authors, tokens, write times) into the trace."""
    store = run.res.store
    for block in (store.blocks[b] for b in run.blocks if b in store.blocks):
        run.trace.blocks[block.id] = BlockRecord(
            block.id, block.author, block.kind, list(block.token_ids), list(block.written_at)
        )
