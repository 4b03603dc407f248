"""The worker loop of a run: each step, every active worker feeds its pending tokens and most sample one.

Plan: write finished tool results into their callers' steps; every worker with pending tokens feeds them
(a worker that just closed a call feeds only its closing token, and its sample is dropped); stop when a
budget is spent. Apply: take each sampled token (see :mod:`.steps`); a final answer, returned tool calls,
or every worker stopping ends generation. Calls still in flight then are waited for and written in one
last forward (:func:`plan_drain`), so a started call is never lost.
"""

from __future__ import annotations

from ..api.events import ToolCallFinishedEvent
from ..api.results import StopReason
from ..cache.layouts import build_view
from ..cache.plan import WriteGroup
from .budget import budget_reason, room_reason
from .inject import INJECTED, write_injections
from .kept import suspend
from .probe import PROBE, add_probe, drop_probe, probe_due, take_probe
from .protocol import Phase, Plan, Wait
from .sampling import worker_sample
from .state import RunState, WorkerState
from .steps import accept_token, feed_text, stop_worker, take_token

__all__ = ["apply_generate", "collect_results", "end_generation", "plan_drain", "plan_generate", "view_of"]


def view_of(run: RunState, worker: WorkerState) -> list[int]:
    """``worker``'s view now: its layout's ordering of the shared blocks, its own block last."""
    assert run.layout is not None
    return build_view(run.cfg.layout, run.layout, worker.index, worker.block)


def collect_results(run: RunState) -> None:
    """Write finished tool results into their callers' steps (the callers resume from them)."""
    tools = run.tools
    for worker in run.active():
        if not tools.calling(worker.name):
            continue
        outcomes = tools.ready(worker.name)
        if outcomes is None:
            continue
        for o in outcomes:
            run.emit(
                ToolCallFinishedEvent(
                    worker.name,
                    o.call.id,
                    o.call.name,
                    o.content,
                    o.is_error,
                    o.duration_s,
                    run.forward_index,
                )
            )
        worker.feed_only = False
        text, untrusted = tools.result_text(outcomes)
        feed_text(run, worker, text, untrusted=untrusted)


def plan_generate(run: RunState) -> Plan | Wait | None:
    """The workers' next forward; a :class:`Wait` while all of them wait for tools; ``None`` if it ended.

    With ``tool_landing="next_forward"`` the run waits for every call in flight, so results always land at
    the forward after their call closed, whatever the tools' timing.
    """
    if run.cfg.tool_landing == "next_forward" and not run.tools.all_finished():
        return Wait(every=True)
    collect_results(run)
    # A worker that closed a call writes its closing token together with the call's results, never
    # before them: whether a tool is fast or slow then never changes how many forwards a run takes
    # (with a separate closing forward, the same request would get one token more or less under
    # max_forwards depending on the tool's timing).
    writers = [w for w in run.active() if w.pending and not (w.feed_only and run.tools.calling(w.name))]
    injected: list[WriteGroup] = []
    if run.injections and writers:
        write_injections(run, injected)  # before the views: every writer sees the message this forward
    if not writers:
        if run.tools.outstanding():
            return Wait()
        end_generation(run, "all_stopped")
        return None
    groups = [*injected, *(WriteGroup(w.name, w.block, w.pending, view_of(run, w)) for w in writers)]
    reason = budget_reason(run, groups)
    if reason is not None:
        end_generation(run, reason)
        return None
    plan = Plan(groups)
    for i, worker in enumerate(writers, start=len(injected)):
        if not worker.feed_only:
            plan.samples.append(worker_sample(run, worker, i, run.tools.constraint(worker.name)))
    if probe_due(run):
        add_probe(run, plan)
        if room_reason(run, plan.groups) is not None:
            drop_probe(run, plan)
    return plan


def apply_generate(run: RunState, ids: list[int]) -> None:
    """Take the workers' sampled tokens; end generation if one of them says so."""
    plan = run.inflight
    assert plan is not None
    run.usage.worker_forwards += 1
    by_name = {w.name: w for w in run.workers}
    for group in plan.groups:
        if group.writer in (PROBE, INJECTED):
            continue
        worker = by_name[group.writer]
        worker.pending = []
        worker.feed_only = False  # a closing token was written: the worker now waits for its results
    ended: StopReason | None = None
    for request, token in zip(plan.samples, ids, strict=True):
        if request.writer == PROBE:
            if take_probe(run, token):
                ended = ended or "answer_ready"
            continue
        worker = by_name[request.writer]
        accept_token(run, request.constraint, token)
        ended = take_token(run, worker, token) or ended
    if ended:
        end_generation(run, ended)


def end_generation(run: RunState, reason: StopReason) -> None:
    """Generation is over (or paused for the caller's tool results): move the run to its next phase."""
    if reason == "tool_calls":
        suspend(run, resume_phase=Phase.GENERATE)
        return
    run.stop_reason = reason
    run.phase = Phase.DRAIN if any(run.tools.calling(w.name) for w in run.active()) else Phase.FINISH


def plan_drain(run: RunState) -> Plan | Wait | None:
    """Generation ended with calls in flight: once all are done, write every result in one forward.

    The forward belongs to the finisher's share of the run (it does not count against ``max_forwards``)
    and is skipped when the results no longer fit the context or the page pool (they stay in
    ``tool_events``).
    """
    tools = run.tools
    # Rank 0's futures decide (tools run there); under tensor parallelism every rank plans in lockstep.
    if tools.parallel.broadcast_object(not all(f.done() for f in tools.outstanding())):
        return Wait(every=True)
    for worker in run.active():
        worker.pending = []  # sampled-but-unwritten tokens of other workers go with the ended run
    collect_results(run)
    run.phase = Phase.FINISH
    groups = [WriteGroup(w.name, w.block, w.pending, view_of(run, w)) for w in run.active() if w.pending]
    if groups and room_reason(run, groups) is None:
        return Plan(groups)
    return None


def stop_all(run: RunState) -> None:
    """The run's generation is over: every worker still writing stops."""
    for worker in run.active():
        stop_worker(run, worker, "run_ended")
