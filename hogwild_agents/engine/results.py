"""The :class:`~hogwild_agents.api.results.RunResult` of a run, built from its state."""

from __future__ import annotations

from ..api.results import RunResult, StopReason, ToolCallRecord, WorkerResult
from ..tools import ToolCall
from .state import RunState

__all__ = ["build_result"]


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
    return RunResult(
        answer=answer,
        workers=workers,
        stop_reason=reason,
        answer_truncated=run.answer_truncated,
        collaboration=bool(run.cfg.collaboration),
        answer_worker=None if run.cfg.use_finisher else run.cfg.names[0],
        usage=run.usage.model_copy(),
        tool_calls=[ToolCallRecord(id=c.id, name=c.name, arguments=c.arguments) for c in calls or []],
        tool_events=list(run.tools.log),
        trace=run.trace,
    )
