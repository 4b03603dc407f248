"""The :class:`~hogwild_agents.api.results.RunResult` of a run, built from its state."""

from __future__ import annotations

from ..api.results import FinishReason, RunResult, StopReason, ToolCallRecord, WorkerResult
from ..tools import ToolCall
from .state import RunState

__all__ = ["build_result", "finish_reason"]

WORKER_ANSWER_CUT = frozenset({"max_answer_tokens", "max_forwards", "max_new_tokens"})
"""Stop reasons that cut an answer a worker writes itself (no finisher) by a token budget."""


def finish_reason(run: RunState, reason: StopReason, calls: list[ToolCall] | None) -> FinishReason:
    """``tool_calls`` when calls are handed back, ``length`` when a budget cut the answer, else ``stop``.

    The finisher's answer is cut when it used its whole ``max_answer_tokens``; a worker's own answer (plain
    generation, or a team without a finisher) when a token budget ended the run.
    """
    if calls:
        return "tool_calls"
    if run.cfg.use_finisher:
        return "length" if run.usage.answer_tokens >= run.cfg.max_answer_tokens else "stop"
    return "length" if reason in WORKER_ANSWER_CUT else "stop"


def build_result(
    run: RunState, answer: str, reason: StopReason, calls: list[ToolCall] | None = None
) -> RunResult:
    """The run's result now: the answer, each worker's text, usage, tool calls and events, the trace."""
    workers = [
        WorkerResult(
            name=w.name,
            text="".join(w.parts),
            steps=list(w.steps),
            generated_tokens=w.generated,
            stop_reason=w.stopped,
        )
        for w in run.workers
    ]
    # Without a finisher the first worker's own text is the answer: its tokens are not reasoning.
    answer_worker = None if run.cfg.use_finisher else run.cfg.names[0]
    reasoning = sum(w.generated_tokens for w in workers if w.name != answer_worker)
    return RunResult(
        answer=answer,
        workers=workers,
        stop_reason=reason,
        finish_reason=finish_reason(run, reason, calls),
        answer_truncated=run.answer_truncated,
        collaboration=bool(run.cfg.collaboration),
        answer_worker=answer_worker,
        usage=run.usage.model_copy(update={"reasoning_tokens": reasoning}),
        tool_calls=[ToolCallRecord(id=c.id, name=c.name, arguments=c.arguments) for c in calls or []],
        tool_events=list(run.tools.log),
        trace=run.trace,
    )
