"""The finisher: after the workers, one greedy turn reads the whole shared state and writes the answer.

Its view is every block of the run (the others' unfinished steps among them) followed by the finisher
turn rendered from the chat template; nothing is re-encoded. The answer streams as it is written, minus a
tail that may begin a stop string. A grammar constrains it when the caller asked for JSON or for tool
calls (return mode), and then it gets room to close its output. Tool calls it writes are handed to the
caller; when their results come back the same turn goes on from them.
"""

from __future__ import annotations

import time

from ..api.events import AnswerEvent, FinishedEvent
from ..cache.layouts import build_view
from ..cache.plan import WriteGroup
from ..runner.sampling import writer_stream
from ..text.detokenize import TextStream
from ..text.markup import MarkupGuard
from ..text.stops import StopMatcher, text_before
from .generate import stop_all
from .inject import write_injections
from .kept import suspend
from .protocol import Phase, Plan
from .results import build_result
from .sampling import finisher_sample
from .state import FinisherState, RunState
from .steps import new_block
from .trace import record_blocks

__all__ = ["apply_finish", "finish_run", "plan_finish"]

_CONSTRAINED_ROOM = 256  # a forced call or JSON answer cut short is worthless: give it room to close


def _start(run: RunState) -> FinisherState:
    """Stop the workers and open the finisher's block (first time the run reaches its finisher)."""
    stop_all(run)
    finisher = FinisherState(
        block=new_block(run, "finisher", "finisher"),
        constraint=run.tools.finisher_constraint(),
        answer=TextStream(run.res.tokenizer),
        stops=StopMatcher(run.cfg.stop),
        pending=list(run.finisher_ids),
        forwards_left=-1,
        stream=writer_stream(run.sampling.seed, "finisher"),
        guard=MarkupGuard(run.finisher_markup, run.res.token_texts) if run.finisher_markup else None,
        call_openers=run.tools.call_openers(),
    )
    run.finisher = finisher
    return finisher


def _begin_turn(run: RunState, finisher: FinisherState) -> None:
    """A turn of the finisher starts: count what it feeds first, reset its grammar and its answer."""
    run.usage.fed_tokens += len(finisher.pending)
    if finisher.constraint is not None and finisher.constraint.is_completed:
        finisher.constraint.reset()  # a resumed turn writes a fresh answer (or call)
    finisher.answer.reset()
    finisher.stops = StopMatcher(run.cfg.stop)
    if finisher.guard is not None:
        finisher.guard.state = 0
    finisher.streamed = 0
    limit = run.cfg.max_answer_tokens
    finisher.forwards_left = limit if finisher.constraint is None else max(limit, _CONSTRAINED_ROOM)


def plan_finish(run: RunState) -> Plan | None:
    """The finisher's next forward, or ``None`` when the run just ended."""
    if not run.cfg.use_finisher:
        stop_all(run)
        run.answer_truncated = run.tools.cut_short(run.workers[0].name)
        finish_run(run, "".join(run.workers[0].parts))  # plain generation: the first worker's text
        return None
    finisher = run.finisher or _start(run)
    if finisher.forwards_left < 0:
        _begin_turn(run, finisher)
    if finisher.forwards_left == 0:
        end_turn(run)
        return None
    assert run.layout is not None
    injected: list[WriteGroup] = []
    if run.injections:
        write_injections(run, injected)  # the finisher sees a late message in its very next token
    view = build_view("combined", run.layout, None, finisher.block, with_own_header=False)
    plan = Plan([*injected, WriteGroup("finisher", finisher.block, finisher.pending, view)])
    plan.samples.append(finisher_sample(run, finisher, len(injected)))
    return plan


def apply_finish(run: RunState, ids: list[int]) -> None:
    """Take the finisher's token: stream the answer; end the turn at EOS, a stop string or its limit."""
    finisher = run.finisher
    assert finisher is not None
    (token,) = ids
    finisher.forwards_left -= 1
    if token in run.res.eos_ids:  # the turn's end is rendered by the template if the run resumes
        finisher.pending = []
        end_turn(run)
        return
    finisher.pending = [token]
    if finisher.constraint is not None:
        finisher.constraint.accept(token)
    run.usage.answer_tokens += 1
    delta = finisher.answer.add([token])
    finisher.stops.feed(delta)
    if finisher.guard is not None:
        finisher.guard.feed(delta)
    _stream(run, finisher, final=False)
    done = finisher.stops.cut is not None or (
        finisher.constraint is not None and finisher.constraint.is_terminated
    )
    if done or finisher.forwards_left == 0:
        end_turn(run)


def _visible(finisher: FinisherState, final: bool) -> str:
    """The answer text that is safe to show now.

    Never text from a stop string on, nor (until the turn is over) a tail that may begin one; and when the
    finisher may answer with tool calls, never text from a call's opening on (or a tail that may begin
    one): the caller gets the call as a call, not as markup in the answer stream.
    """
    text = finisher.answer.text
    cut = finisher.stops.cut
    if cut is not None:
        text = text[:cut]
    elif not final:
        text = text[: len(text) - finisher.stops.held]
    if final or not finisher.call_openers:
        return text
    return text_before(text, finisher.call_openers)


def _stream(run: RunState, finisher: FinisherState, final: bool) -> str:
    """Send the answer text that is now safe to show (see :func:`_visible`); return what is visible."""
    visible = _visible(finisher, final)
    if len(visible) > finisher.streamed:
        run.emit(AnswerEvent(visible[finisher.streamed :], run.forward_index - 1))
        finisher.streamed = len(visible)
    return visible


def end_turn(run: RunState) -> None:
    """The finisher's turn is over: hand its tool calls to the caller, or finish the run."""
    finisher = run.finisher
    assert finisher is not None
    answer = _visible(finisher, final=True).strip()
    calls = run.tools.calls_in_answer(answer)
    if calls:  # the text before the call was streamed; the call itself goes to the caller as a call
        run.returned = [(None, call) for call in calls]
        finisher.forwards_left = -1
        suspend(run, resume_phase=Phase.FINISH)
        return
    # A grammar left mid-way (the token budget ran out in a JSON answer or a call) is never a silent
    # answer: the result says so (RunResult.answer_truncated), for front ends to raise a parser error.
    run.answer_truncated = finisher.constraint is not None and not finisher.constraint.is_completed
    _stream(run, finisher, final=True)
    finish_run(run, answer)


def finish_run(run: RunState, answer: str) -> None:
    """Record the run's blocks, release its pages and deliver its result."""
    record_blocks(run)
    store = run.res.store
    for block in run.blocks:
        if block in store.blocks:
            store.release(block)
    run.answer = answer
    run.usage.wall_time_s = time.perf_counter() - run.started
    assert run.stop_reason is not None
    run.result = build_result(run, answer, run.stop_reason)
    run.phase = Phase.DONE
    run.emit(FinishedEvent(run.result))
