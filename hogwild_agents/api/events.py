"""Typed events streamed by :meth:`HogwildEngine.stream` while a run is in progress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import RunResult

__all__ = [
    "AnswerEvent",
    "RunStartedEvent",
    "Event",
    "FinishedEvent",
    "MessageInjectedEvent",
    "StepCommittedEvent",
    "TokenEvent",
    "ToolCallFinishedEvent",
    "ToolCallStartedEvent",
    "WorkerStoppedEvent",
]


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A worker wrote text: a sampled token, or text the engine fed for it (header, tool result)."""

    worker: str
    text: str
    token_ids: tuple[int, ...]
    forward: int
    generated: bool = True


@dataclass(frozen=True, slots=True)
class StepCommittedEvent:
    """A worker finished a step; it moved to the shared history (as page references, not copies)."""

    worker: str
    step: int
    text: str
    forward: int


@dataclass(frozen=True, slots=True)
class WorkerStoppedEvent:
    """A worker stopped generating (end of sequence, a stop string, or the run ending)."""

    worker: str
    reason: str
    forward: int


@dataclass(frozen=True, slots=True)
class ToolCallStartedEvent:
    """A worker completed a tool call; it pauses while the tool runs and the others go on."""

    worker: str
    call_id: str
    name: str
    arguments: dict[str, Any]
    forward: int


@dataclass(frozen=True, slots=True)
class ToolCallFinishedEvent:
    """A tool call returned (or failed); its result text is now in the shared cache."""

    worker: str
    call_id: str
    name: str
    content: str
    is_error: bool
    duration_s: float
    forward: int


@dataclass(frozen=True, slots=True)
class RunStartedEvent:
    r"""The run was accepted (always the first event): who works on it and whose text is the answer.

    ``collaboration`` is decided here when the request asked for ``"auto"``. ``answer_worker`` names the
    worker whose own text is the answer (plain generation, no finisher); ``None`` when a finisher writes
    it, as :class:`AnswerEvent`\ s. ``call_openers``: in plain generation whose tool calls are returned
    to the caller, the texts that open a call in the answer worker's tokens; a front end streaming that
    text as the answer shows it only up to the first of them (``hogwild_agents.text.stops.text_before``),
    since the call comes back as a call. (A finisher's :class:`AnswerEvent`\ s never hold call markup.)
    """

    workers: tuple[str, ...]
    collaboration: bool
    answer_worker: str | None
    call_openers: tuple[str, ...] = ()
    worker: str = "engine"


@dataclass(frozen=True, slots=True)
class AnswerEvent:
    """The finisher (or the single worker, without collaboration) produced answer text."""

    text: str
    forward: int
    worker: str = "finisher"


@dataclass(frozen=True, slots=True)
class MessageInjectedEvent:
    """A message was added to the shared workspace mid-run (``RunStream.inject``); all see it from now."""

    text: str
    role: str
    forward: int
    worker: str = "injected"


@dataclass(frozen=True, slots=True)
class FinishedEvent:
    """The run is over; ``result`` holds everything."""

    result: RunResult
    worker: str = "engine"


Event = (
    RunStartedEvent
    | TokenEvent
    | StepCommittedEvent
    | WorkerStoppedEvent
    | ToolCallStartedEvent
    | ToolCallFinishedEvent
    | AnswerEvent
    | MessageInjectedEvent
    | FinishedEvent
)
