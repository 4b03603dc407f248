"""The state of one run as plain data: the run, its workers and its finisher.

No behaviour lives here: the rules (prefill, generate, steps, self-check, tools, finisher, suspend and
resume, trace) are functions of this state, each in its own module, so each can be tested without a model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..api.config import HogwildConfig
from ..api.events import Event
from ..api.results import RunResult, StopReason, Trace, Usage
from ..cache.layouts import SharedLayoutState
from ..runner.sampling import BanSet, SamplingParams
from ..text.detokenize import TextStream
from ..text.markup import MarkupGuard
from ..text.prompts import PromptTexts
from ..text.stops import StopMatcher
from ..tools import ToolCall
from .protocol import Phase, Plan
from .resources import RunResources

if TYPE_CHECKING:
    from .tools import ToolSession

__all__ = ["FinisherState", "RunState", "WorkerState"]


@dataclass(slots=True)
class WorkerState:
    """One worker during a run.

    Attributes:
        index: position among the run's workers.
        name: the worker's name.
        block: its current block.
        text: the current step's text.
        step: the current step's number (from 1).
        pending: token ids it feeds in its next forward.
        parts: every text delta it wrote (sampled and fed), in order: its whole text.
        steps: its committed steps.
        generated: tokens it sampled.
        since_check: tokens sampled since its last self-check question.
        stopped: why it stopped ("" while it writes).
        feed_only: its next forward only writes the token that closed a call (its sample is dropped).
        call_token: the unfed token that closed a call returned to the caller.
        samples: how many tokens it drew (its position in its random stream).
        stream: its random stream key (from the run's seed and its name).
        guard: keeps it from writing the workspace's markup (see :mod:`..text.markup`), or ``None``.
        nudged: the loop guard already nudged it once (see :mod:`.loopguard`).
        stops: stop strings over its text (plain generation without a finisher), or ``None``.
    """

    index: int
    name: str
    block: int
    text: TextStream
    step: int = 1
    pending: list[int] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    generated: int = 0
    since_check: int = 0
    stopped: str = ""
    feed_only: bool = False
    call_token: list[int] = field(default_factory=list)
    samples: int = 0
    stream: int = 0
    stops: StopMatcher | None = None
    guard: MarkupGuard | None = None
    nudged: bool = False


@dataclass(slots=True)
class FinisherState:
    """The finisher's turn: its block, grammar, the answer so far and how much it may still write."""

    block: int
    constraint: Any
    answer: TextStream
    stops: StopMatcher
    pending: list[int] = field(default_factory=list)
    streamed: int = 0
    forwards_left: int = 0
    samples: int = 0
    stream: int = 0
    guard: MarkupGuard | None = None
    call_openers: tuple[str, ...] = ()  # answer text from one of these on may be a call: not streamed


@dataclass(slots=True)
class RunState:
    """Everything one request's run holds; created by :func:`hogwild_agents.engine.run.new_run`."""

    res: RunResources
    cfg: HogwildConfig
    texts: PromptTexts
    tools: ToolSession
    sampling: SamplingParams
    prompt_ids: list[int]
    finisher_ids: list[int]
    worker_ban: BanSet | None
    finisher_ban: BanSet | None
    context_window: int
    phase: Phase = Phase.PREFILL
    worker_markup: tuple[str, ...] = ()
    finisher_markup: tuple[str, ...] = ()
    workers: list[WorkerState] = field(default_factory=list)
    layout: SharedLayoutState | None = None
    blocks: list[int] = field(default_factory=list)
    trace: Trace = field(default_factory=Trace)
    usage: Usage = field(default_factory=Usage)
    forward_index: int = 0
    written: int = 0
    started: float = field(default_factory=time.perf_counter)
    stop_reason: StopReason | None = None
    answer: str = ""
    returned: list[tuple[WorkerState | None, ToolCall]] = field(default_factory=list)
    resume_phase: Phase | None = None
    resume_outcomes: dict[str, str] = field(default_factory=dict)
    finisher: FinisherState | None = None
    final_calls: list[ToolCall] = field(default_factory=list)
    outbox: list[Event] = field(default_factory=list)
    result: RunResult | None = None
    step_texts: list[str] = field(default_factory=list)
    """Every committed step's own words, for the loop guard."""
    injections: list[tuple[str, str]] = field(default_factory=list)
    """Messages (text, role) injected by the caller, written at the run's next forward."""
    probe_block: int | None = None
    """The early-exit probe's block while its forward is in flight (see :mod:`.probe`)."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """The request's normalized conversation (a suspended run is kept under it)."""
    answer_truncated: bool = False
    """The answer's grammar (response_format, a forced call) was cut by the token budget before it closed."""
    inflight: Plan | None = None
    """The plan of the forward in flight (set by the scheduler between schedule and postprocess)."""

    def active(self) -> list[WorkerState]:
        """The workers that still write."""
        return [w for w in self.workers if not w.stopped]

    def emit(self, event: Event) -> None:
        """Queue ``event`` for the run's caller (the scheduler delivers it after this step)."""
        self.outbox.append(event)
