"""Ending when the work is done: a one-token yes/no probe of the finisher over the shared state.

At its first worker forward and then every ``probe_every`` worker forwards, a run whose ``early_exit`` is
on adds one more group to its forward: the probe, a throw-away block holding the finisher's turn with the
question "is the work above already enough to write the final answer?", attending to everything the
finisher would see.
Its one sampled token may only be "yes" or "no" (every other token is banned). The workers never see the
probe's block, so it changes none of their tokens; its pages are freed as soon as its token is read. A
"yes" ends generation with ``stop_reason="answer_ready"`` and the finisher writes the answer.

Cost per probe: the question's tokens (about 40 with Qwen's template) in a forward that runs anyway,
i.e. one more short chunk in that step (a CUDA-graph chunk bucket on the GPU).
"""

from __future__ import annotations

import functools

from ..api.results import BlockRecord
from ..cache.layouts import build_view
from ..cache.plan import WriteGroup
from ..runner.sampling import BanSet, SampleRequest
from .protocol import Phase, Plan
from .state import RunState

__all__ = ["PROBE", "add_probe", "drop_probe", "probe_due", "take_probe"]

PROBE = "probe"
_ANSWERS = ("yes", "Yes", "no", "No", " yes", " Yes", " no", " No")


def probe_due(run: RunState, forwards: int | None = None) -> bool:
    """Whether the run's forward number ``forwards`` (default: its next one) carries a probe."""
    cfg = run.cfg
    if not (cfg.early_exit and cfg.collaboration and cfg.use_finisher and run.texts.probe):
        return False
    n = run.usage.worker_forwards if forwards is None else forwards
    if run.phase is not Phase.GENERATE or n % cfg.probe_every:
        return False
    return all(len(w.steps) >= cfg.probe_min_steps for w in run.workers if not w.stopped)


def _answer_ids(run: RunState) -> tuple[set[int], set[int]]:
    yes, no = set(), set()
    for word in _ANSWERS:
        ids = run.res.encode(word)
        if len(ids) == 1:
            (yes if word.strip().lower() == "yes" else no).add(ids[0])
    return yes, no


def _only_answers(run: RunState) -> BanSet:
    yes, no = _answer_ids(run)
    return _ban_all_but(run.res.vocab_size, tuple(sorted(yes | no)))


@functools.lru_cache(maxsize=8)
def _ban_all_but(vocab_size: int, allowed: tuple[int, ...]) -> BanSet:
    keep = set(allowed)
    return BanSet("probe-only-yes-no", [i for i in range(vocab_size) if i not in keep], vocab_size)


def drop_probe(run: RunState, plan: Plan) -> None:
    """Take the probe back out of ``plan`` (it does not fit the context or the pages this time)."""
    plan.groups.pop()
    plan.samples.pop()
    block_id = run.probe_block
    assert block_id is not None
    run.res.store.release(block_id)
    run.blocks.remove(block_id)
    run.probe_block = None
    run.usage.fed_tokens -= len(run.res.encode(run.texts.probe))


def add_probe(run: RunState, plan: Plan) -> None:
    """Add the probe's group (a fresh block, the finisher's view) and its sample to ``plan``."""
    assert run.layout is not None
    block = run.res.store.new_block(PROBE, "probe").id
    run.blocks.append(block)
    run.probe_block = block
    ids = run.res.encode(run.texts.probe)
    view = build_view("combined", run.layout, None, block, with_own_header=False)
    plan.groups.append(WriteGroup(PROBE, block, ids, view))
    plan.samples.append(
        SampleRequest(
            len(plan.groups) - 1, PROBE, run.sampling, 0, run.usage.probes, _only_answers(run), greedy=True
        )
    )
    run.usage.fed_tokens += len(ids)


def take_probe(run: RunState, token: int) -> bool:
    """Read the probe's answer, free its block (recorded in the trace first); True for "yes"."""
    block_id = run.probe_block
    assert block_id is not None
    store = run.res.store
    block = store.blocks[block_id]
    run.trace.blocks[block_id] = BlockRecord(
        block_id, block.author, block.kind, list(block.token_ids), list(block.written_at)
    )
    store.release(block_id)
    run.blocks.remove(block_id)
    run.written -= block.length
    run.probe_block = None
    run.usage.probes += 1
    return token in _answer_ids(run)[0]
