"""Overlapping the host's work with the GPU: the next decode step is planned while the current one runs.

In the steady state of decoding, the next forward of a run follows from the current one without looking
at the sampled tokens' text: every writer feeds the token it just sampled into the same block, with the
same view, and samples again. So while the GPU runs step t, the scheduler builds step t+1 with
placeholder tokens (pages reserved, host plan written into the graph's pinned buffers). When t's ids
arrive, one cheap check decides whether that guess is exactly what the rules would plan:

- every sampled token is *quiet* (:attr:`~.resources.RunResources.quiet_tokens`: no newline, so no step
  can end; no character that may open a call or a fence; not end-of-sequence) and the writer's text has no
  character in waiting (an incomplete UTF-8 sequence);
- the run is generating (or its finisher is writing) without tools, grammars or stop strings, and no
  budget (forwards, tokens, the finisher's answer length, the context window, the pages) ends before t+1;
- no run joined, left or was cancelled.

If it holds, the tokens are written into the prepared step and it is launched at once; t's postprocess
(text, events, trace) then runs while the GPU computes t+1, and a check afterwards confirms that the rules
left every run in exactly the state the guess assumed. If it does not hold, the reservations are taken
back (pages return to the pool in order) and the step is planned the ordinary way. Either way each run
gets the very tokens, blocks and trace it would get without the overlap: the guess only decides *when*
the host does its work, never what the forward contains.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..api.results import ForwardRecord, GroupRecord
from ..cache.plan import WriteGroup
from ..runner.runner import ModelRunner, PendingForward, PreparedForward, SampledTokens
from ..runner.sampling import SampleRequest
from ..text.markup import MarkupGuard
from .budget import finisher_reserve
from .inject import INJECTED
from .probe import PROBE, probe_due
from .protocol import Phase, Plan
from .state import RunState

__all__ = ["Continuation"]

_PLACEHOLDER = 0  # a valid token id: the prepared step's buffers never hold an out-of-range id


@dataclass(slots=True)
class _RunGuess:
    """One run's guessed next plan: who writes, into which block, from which state."""

    run: RunState
    plan: Plan
    writers: list[str]  # per group: the writer (a worker name, or "finisher")
    guards: list[MarkupGuard | None]  # per group: the writer's markup guard (its bans were taken now)
    guard_states: list[int]


@dataclass(slots=True)
class Continuation:
    """The guessed next step of a whole batch, reserved and prepared while the current step runs."""

    guesses: list[_RunGuess]
    prepared: PreparedForward
    groups: list[WriteGroup]
    samples: list[SampleRequest]
    reserved: list[tuple[int, int]] = field(default_factory=list)  # (block id, tokens) taken back on undo

    @classmethod
    def guess(cls, runs: list[RunState], runner: ModelRunner) -> Continuation | None:
        """The continuation of the plans now in flight for ``runs``, or ``None`` if one cannot be guessed."""
        guesses = [g for run in runs if (g := _guess_run(run)) is not None]
        if len(guesses) != len(runs):
            return None
        groups: list[WriteGroup] = []
        samples: list[SampleRequest] = []
        store = runner.store
        reserved: list[tuple[int, int]] = []
        for g in guesses:
            need = sum(store.pages_needed(store.blocks[w.block], 1) for w in g.plan.groups)
            finisher_pages = -(-finisher_reserve(g.run) // store.page_size) + 1
            if need + finisher_pages > store.free_pages:  # the rules would end with cache_full
                _undo(store, reserved)
                return None
            offset = len(groups)
            for group in g.plan.groups:
                block = store.blocks[group.block]
                group.first_position = block.length
                group.slots = store.reserve(block, group.token_ids, g.run.forward_index + 1)
                reserved.append((group.block, 1))
            groups.extend(g.plan.groups)
            samples.extend(s if not offset else replace(s, group=s.group + offset) for s in g.plan.samples)
        return cls(guesses, runner.prepare(groups, samples), groups, samples, reserved)

    def holds(self, sampled: list[SampledTokens]) -> bool:
        """Whether the tokens just sampled are all quiet: then the rules plan the guess, whatever they say."""
        for g, tokens in zip(self.guesses, sampled, strict=True):
            quiet = g.run.res.quiet_tokens
            if not all(quiet[t] for t in tokens.ids):
                return False
            texts = g.run.finisher.answer if g.writers == ["finisher"] else None
            if texts is not None and texts.holding:
                return False
            if texts is None and any(w.text.holding for w in g.run.workers if not w.stopped):
                return False
            token_texts = g.run.res.token_texts.texts
            for guard, state, token in zip(g.guards, g.guard_states, tokens.ids, strict=True):
                if guard is not None and guard.peek(token_texts[token]) != state:
                    return False  # the writer's bans change with this token
        return True

    def launch(self, sampled: list[SampledTokens]) -> PendingForward:
        """Write the sampled tokens (each writer feeds its own) and start the guessed forward."""
        tokens = [t for part in sampled for t in part.ids]
        store = self.prepared.runner.store
        for group, token in zip(self.groups, tokens, strict=True):
            store.blocks[group.block].token_ids[-1] = token
        return self.prepared.launch(tokens)

    def matches(self, sampled: list[SampledTokens]) -> bool:
        """After the runs applied their tokens: whether the rules left each run where the guess assumed.

        That is: still generating (or finishing), every guessed writer active in the same block with
        exactly its sampled token pending (no commit, no header, no call, no stop), nothing else to write.
        Then the rules would plan precisely the guessed step (:func:`_guess_run` checked the budgets).
        """
        for g, tokens in zip(self.guesses, sampled, strict=True):
            run = g.run
            if run.phase not in (Phase.GENERATE, Phase.FINISH) or run.inflight is not None:
                return False
            by_name = {w.name: w for w in run.workers}
            for group, token in zip(g.plan.groups, tokens.ids, strict=True):
                if group.writer == "finisher":
                    finisher = run.finisher
                    if finisher is None or finisher.pending != [token] or finisher.forwards_left <= 0:
                        return False
                    continue
                worker = by_name[group.writer]
                if (
                    worker.pending != [token]
                    or worker.block != group.block
                    or worker.stopped
                    or worker.feed_only
                ):
                    return False
            if any(
                guard is not None and guard.state != state for guard, state in zip(g.guards, g.guard_states)
            ):
                return False  # the guessed samples carry the bans of the writers' former markup state
        return True

    def adopt(self) -> None:
        """Make the guessed plans the runs' own (after :meth:`matches`): counters, records, the plan."""
        for g in self.guesses:
            run = g.run
            by_name = {w.name: w for w in run.workers}
            for group in g.plan.groups:
                writer = run.finisher if group.writer == "finisher" else by_name[group.writer]
                assert writer is not None
                writer.samples += 1
            run.written += len(g.plan.groups)
            run.inflight = g.plan
            record = ForwardRecord(index=run.forward_index)
            record.groups = [
                GroupRecord(w.writer, w.block, list(w.token_ids), list(w.view)) for w in g.plan.groups
            ]
            run.trace.forwards.append(record)

    def undo(self) -> None:
        """The guess was wrong: take back every reservation it made (pages return to the pool in order)."""
        _undo(self.prepared.runner.store, self.reserved)
        self.reserved = []


def _undo(store, reserved: list[tuple[int, int]]) -> None:
    for block_id, n in reversed(reserved):
        store.unreserve(store.blocks[block_id], n)


def _guess_run(run: RunState) -> _RunGuess | None:
    """The run's next plan if its current step is a plain decode step that may simply continue."""
    plan = run.inflight
    cfg = run.cfg
    if plan is None or run.tools.enabled or cfg.stop or run.tools.outstanding() or run.injections:
        return None
    if not plan.samples or len(plan.samples) != len(plan.groups):
        return None
    if any(
        len(g.token_ids) != 1 or s.group != i or s.writer != g.writer
        for i, (g, s) in enumerate(zip(plan.groups, plan.samples, strict=True))
    ):
        return None
    if any(s.constraint is not None for s in plan.samples):
        return None
    if any(g.writer in (PROBE, INJECTED) for g in plan.groups):
        return None
    if run.phase is Phase.GENERATE:
        if probe_due(run, run.usage.worker_forwards + 1):
            return None  # the next forward carries an early-exit probe: the rules plan it
        # After this step is applied the rules check the budgets before planning the next one.
        usage = run.usage
        if usage.worker_forwards + 1 >= cfg.max_forwards:
            return None
        if cfg.max_new_tokens is not None and usage.generated_tokens + len(plan.groups) >= cfg.max_new_tokens:
            return None
        if not cfg.use_finisher and run.workers[0].generated + 1 >= cfg.max_answer_tokens:
            return None  # plain generation: the answer's budget may end the run after this step
        writing = {g.writer for g in plan.groups}
        if any(not w.stopped and w.name not in writing for w in run.workers):
            return None  # a worker that is not in this step waits for something: the rules decide
    elif run.phase is Phase.FINISH:
        finisher = run.finisher
        if finisher is None or finisher.forwards_left < 2 or finisher.constraint is not None:
            return None
    else:
        return None
    total = run.written + len(plan.groups)
    if total + finisher_reserve(run) > run.context_window:
        return None
    by_name = {w.name: w for w in run.workers}
    groups, samples = [], []
    for i, (group, sample) in enumerate(zip(plan.groups, plan.samples, strict=True)):
        groups.append(WriteGroup(group.writer, group.block, [_PLACEHOLDER], group.view))
        writer = run.finisher if group.writer == "finisher" else by_name[group.writer]
        assert writer is not None
        samples.append(replace(sample, counter=writer.samples, group=i))
    guards = [(run.finisher if g.writer == "finisher" else by_name[g.writer]).guard for g in plan.groups]  # type: ignore[union-attr]
    states = [guard.state if guard is not None else 0 for guard in guards]
    return _RunGuess(run, Plan(groups, samples), [g.writer for g in plan.groups], guards, states)
