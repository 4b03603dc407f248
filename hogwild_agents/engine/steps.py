"""The step rules: what happens to a worker's sampled token (text, tool calls, stops, step end, commit).

A step ends when a token holding a blank line closes a sentence outside any code or math fence
(:func:`~hogwild_agents.text.steps.ends_step`); committing it moves the worker's block id into the shared
history (no bytes move), and the token that ended it opens the next block, after the step's header.
The per-token work is constant: the step text is joined only when a token holds a blank line.
"""

from __future__ import annotations

from ..api.events import StepCommittedEvent, TokenEvent, ToolCallStartedEvent, WorkerStoppedEvent
from ..api.results import StopReason
from ..text.steps import contains_final_answer, ends_step
from ..text.untrusted import Spans
from ..tools import ToolCall
from .loopguard import is_repeat
from .selfcheck import step_opening
from .state import RunState, WorkerState

__all__ = ["accept_token", "commit", "feed_text", "new_block", "stop_worker", "take_token"]


def feed_text(
    run: RunState,
    worker: WorkerState,
    text: str,
    token_ids: list[int] | None = None,
    untrusted: Spans = (),
) -> None:
    """Queue engine-written ``text`` (a header, a tool result) for ``worker`` to feed next forward.

    ``untrusted`` spans of it (a tool result's content) are encoded as plain text, never as control tokens.
    """
    if token_ids is not None:
        ids = token_ids
    else:
        ids = run.res.encode_marked(text, untrusted) if untrusted else run.res.encode(text)
    worker.pending.extend(ids)
    delta = worker.text.add(ids)
    _append(worker, delta)
    run.usage.fed_tokens += len(ids)
    run.emit(TokenEvent(worker.name, delta, tuple(ids), run.forward_index, generated=False))


def _append(worker: WorkerState, delta: str) -> None:
    worker.parts.append(delta)
    if worker.stops is not None:
        worker.stops.feed(delta)
    if worker.guard is not None:
        worker.guard.feed(delta)


def take_token(run: RunState, worker: WorkerState, token: int) -> StopReason | None:
    """Apply one sampled token of ``worker``; return why generation must end now, if it must."""
    if token in run.res.eos_ids:
        stop_worker(run, worker, "eos")
        return None
    worker.generated += 1
    worker.since_check += 1
    run.usage.generated_tokens += 1
    delta = worker.text.add([token])
    _append(worker, delta)
    run.emit(TokenEvent(worker.name, delta, (token,), run.forward_index - 1))
    calls = run.tools.detect(worker.name, delta) if run.tools.enabled else []
    if calls:
        return "tool_calls" if start_calls(run, worker, token, calls) else None
    if worker.stops is not None and worker.stops.cut is not None:
        _cut_at_stop(worker)
        stop_worker(run, worker, "stop_string")
        return None
    if "\n\n" in delta and ends_step(worker.text.text, delta) and not run.tools.in_call(worker.name):
        final = commit(run, worker, token)
        if final and run.cfg.stop_on_final_answer and run.cfg.collaboration:
            return "final_answer"
        return None
    worker.pending = [token]
    return None


def accept_token(run: RunState, constraint: object | None, token: int) -> None:
    """Advance the writer's grammar past its sampled token (end-of-sequence tokens end it instead)."""
    if constraint is not None and token not in run.res.eos_ids:
        constraint.accept(token)  # type: ignore[attr-defined]


def _cut_at_stop(worker: WorkerState) -> None:
    """Keep the worker's text up to the stop string (plain generation ends there)."""
    assert worker.stops is not None and worker.stops.cut is not None
    worker.parts = ["".join(worker.parts)[: worker.stops.cut]]


def commit(run: RunState, worker: WorkerState, end_token: int) -> bool:
    r"""Finish ``worker``'s step; return whether the step holds a final answer (``\boxed{...}``).

    The token that ended the step has not been fed yet; it opens the next block (as in the paper), so
    the committed block's bytes are final and moving its id is the whole commit.
    """
    text = worker.text.text
    worker.steps.append(text)
    run.emit(StepCommittedEvent(worker.name, worker.step, text, run.forward_index - 1))
    if run.cfg.layout != "contiguous":
        assert run.layout is not None
        run.layout.history.append(worker.block)
        worker.block = new_block(run, worker.name, "step")
        run.layout.current[worker.index] = worker.block
    final = contains_final_answer(text)
    if run.cfg.collaboration and is_repeat(run, worker, text) and not final:
        if run.cfg.loop_guard == "stop" or worker.nudged:
            stop_worker(run, worker, "loop")
            return False
        worker.nudged = True
        nudge = run.cfg.loop_nudge
    else:
        nudge = ""
    worker.step += 1
    worker.text.reset()
    worker.pending = [end_token]
    worker.text.add([end_token])
    if run.cfg.collaboration:
        feed_text(run, worker, step_opening(run.cfg, worker) + nudge)
    return final


def stop_worker(run: RunState, worker: WorkerState, reason: str) -> None:
    """``worker`` writes no more (end of sequence, a stop string, the run's end)."""
    worker.stopped = reason
    worker.pending = []
    run.emit(WorkerStoppedEvent(worker.name, reason, run.forward_index - 1))


def new_block(run: RunState, author: str, kind: str) -> int:
    """A new empty block of this run in the shared store."""
    block = run.res.store.new_block(author, kind).id
    run.blocks.append(block)
    return block


def start_calls(run: RunState, worker: WorkerState, token: int, calls: list[ToolCall]) -> bool:
    """A worker closed tool call(s): hand them to the caller (return mode → True) or run them.

    In execute mode the closing token is written next forward (its sample dropped); then the worker
    waits for its results.
    """
    for call in calls:
        run.emit(ToolCallStartedEvent(worker.name, call.id, call.name, call.arguments, run.forward_index - 1))
    if run.cfg.tool_mode == "return":
        worker.call_token = [token]
        run.returned.extend((worker, call) for call in calls)
        return True
    for call in calls:
        run.tools.submit(worker.name, call)
    worker.pending = [token]
    worker.feed_only = True
    return False
