"""What a live view knows about a run in progress, folded from the engine's events.

Both live views, the terminal one of the ``hogwild`` command and the notebook one of
:func:`hogwild_agents.ui.display.watch`, feed every event to one :class:`RunProgress` and draw from it, so
they cannot disagree about what happened.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from ..api.events import (
    AnswerEvent,
    Event,
    FinishedEvent,
    StepCommittedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
    WorkerStoppedEvent,
)
from ..api.results import RunResult

__all__ = ["WORKER_COLORS", "LogLine", "RunProgress", "WorkerProgress", "worker_color"]

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies, readable on dark and light
# backgrounds. Hex strings work both as rich styles and as CSS colours.
WORKER_COLORS: tuple[str, ...] = (
    "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#999999",
)  # fmt: skip


def worker_color(index: int) -> str:
    """Return the colour of the ``index``-th worker (cycling through :data:`WORKER_COLORS`)."""
    return WORKER_COLORS[index % len(WORKER_COLORS)]


@dataclass(slots=True)
class WorkerProgress:
    """One worker's text so far and its counters."""

    name: str
    color: str
    text: str = ""
    steps: int = 0
    generated: int = 0
    stopped: str = ""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of the event log: a commit, a tool call, a tool result or a stop."""

    kind: str  # "commit", "tool_call", "tool_result", "tool_error", "stop"
    worker: str
    text: str
    forward: int


@dataclass(slots=True)
class RunProgress:
    """The state of a run as seen through its events.

    Attributes:
        workers: Per worker, in the order their names were given (others are added as they appear).
        log: Commits, tool calls and results, and stops, oldest first.
        answer: The answer text streamed so far.
        forwards: Forward passes seen so far (the highest forward index plus one).
        generated_tokens: Tokens sampled by the workers.
        max_forwards: The run's forward budget, when known (for a progress bar).
        result: The :class:`RunResult`, once the run finished.

    """

    workers: dict[str, WorkerProgress] = field(default_factory=dict)
    log: list[LogLine] = field(default_factory=list)
    answer: str = ""
    forwards: int = 0
    generated_tokens: int = 0
    max_forwards: int | None = None
    result: RunResult | None = None
    started: float = field(default_factory=time.perf_counter)
    finished_at: float | None = None

    @classmethod
    def for_workers(cls, names: list[str], max_forwards: int | None = None) -> RunProgress:
        """Create a record with a pane for each of ``names``, ready before the first token arrives."""
        progress = cls(max_forwards=max_forwards)
        for name in names:
            progress.worker(name)
        return progress

    def worker(self, name: str) -> WorkerProgress:
        """Return the record of worker ``name``, creating it (with the next colour) on first sight."""
        if name not in self.workers:
            self.workers[name] = WorkerProgress(name, worker_color(len(self.workers)))
        return self.workers[name]

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started (frozen once it finished)."""
        return (self.finished_at or time.perf_counter()) - self.started

    @property
    def tokens_per_s(self) -> float:
        """Worker tokens sampled per second of wall time."""
        elapsed = self.elapsed_s
        return self.generated_tokens / elapsed if elapsed > 0 else 0.0

    def update(self, event: Event) -> LogLine | None:
        """Fold one event into the state; return the log line it produced, if any."""
        forward = getattr(event, "forward", None)
        if forward is not None:
            self.forwards = max(self.forwards, forward + 1)
        line: LogLine | None = None
        if isinstance(event, TokenEvent):
            worker = self.worker(event.worker)
            worker.text += event.text
            if event.generated:
                worker.generated += len(event.token_ids)
                self.generated_tokens += len(event.token_ids)
        elif isinstance(event, StepCommittedEvent):
            self.worker(event.worker).steps += 1
            line = LogLine("commit", event.worker, f"committed step {event.step}", event.forward)
        elif isinstance(event, ToolCallStartedEvent):
            args = json.dumps(event.arguments, ensure_ascii=False)
            line = LogLine("tool_call", event.worker, f"calls {event.name}({args})", event.forward)
        elif isinstance(event, ToolCallFinishedEvent):
            kind = "tool_error" if event.is_error else "tool_result"
            text = f"{event.name} returned {_one_line(event.content)} ({event.duration_s:.2f} s)"
            line = LogLine(kind, event.worker, text, event.forward)
        elif isinstance(event, WorkerStoppedEvent):
            self.worker(event.worker).stopped = event.reason
            line = LogLine("stop", event.worker, f"stopped ({event.reason})", event.forward)
        elif isinstance(event, AnswerEvent):
            self.answer += event.text
        elif isinstance(event, FinishedEvent):
            self.result = event.result
            self.answer = event.result.answer
            self.forwards = max(self.forwards, event.result.usage.forwards)
            self.finished_at = time.perf_counter()
        if line is not None:
            self.log.append(line)
        return line

    def status_line(self) -> str:
        """Summarise progress in one line: forwards (workers' budget), tokens, tokens/s, time, state."""
        budget = f" (worker budget {self.max_forwards})" if self.max_forwards else ""
        state = f"done: {self.result.stop_reason}" if self.result is not None else "running"
        return (
            f"forwards {self.forwards}{budget} · tokens {self.generated_tokens} · "
            f"{self.tokens_per_s:.1f} tok/s · {self.elapsed_s:.1f} s · {state}"
        )


def _one_line(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
