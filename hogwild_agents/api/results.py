"""What a run returns: the answer, each worker's text, token usage and a replayable trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BlockRecord",
    "ForwardRecord",
    "GroupRecord",
    "RunResult",
    "StopReason",
    "Trace",
    "Usage",
    "WorkerResult",
]

StopReason = Literal[
    "final_answer",
    "all_stopped",
    "max_forwards",
    "max_new_tokens",
    "context_window",
    "cache_full",
    "tool_calls",
]


@dataclass(slots=True)
class GroupRecord:
    """One writer's part of one forward pass.

    Attributes:
        writer: worker name, or ``"prompt"``, ``"header"``, ``"finisher"``.
        block: id of the block the fed tokens were appended to (always last in ``view``).
        fed: token ids fed this pass, in order.
        view: ordered block ids the writer attended to.
        sampled: token sampled from the last fed position's logits, or ``None`` when nothing was sampled.
    """

    writer: str
    block: int
    fed: list[int]
    view: list[int]
    sampled: int | None = None


@dataclass(slots=True)
class ForwardRecord:
    """One batched forward pass: every writer that fed tokens in it."""

    index: int
    groups: list[GroupRecord] = field(default_factory=list)


@dataclass(slots=True)
class BlockRecord:
    """A block of the shared store: its author, its tokens and the forward pass each token was written in."""

    id: int
    author: str
    kind: str
    token_ids: list[int] = field(default_factory=list)
    written_at: list[int] = field(default_factory=list)


class Trace(BaseModel):
    """Everything needed to replay a run: per forward the groups (fed tokens, views), and every block."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    forwards: list[ForwardRecord] = Field(default_factory=list, description="Forward passes in order.")
    blocks: dict[int, BlockRecord] = Field(default_factory=dict, description="Blocks by id.")


class Usage(BaseModel):
    """Token accounting of one run."""

    prompt_tokens: int = Field(0, description="Tokens of the shared prompt (encoded once for all workers).")
    generated_tokens: int = Field(0, description="Tokens sampled by the workers.")
    fed_tokens: int = Field(0, description="Tokens the engine fed (headers, tool results, finisher prompt).")
    answer_tokens: int = Field(0, description="Tokens written by the finisher.")
    reused_prompt_tokens: int = Field(0, description="Prompt tokens reused from a kept run (not re-encoded).")
    forwards: int = Field(0, description="Sequential forward passes, the finisher's included.")
    worker_forwards: int = Field(
        0, description="Forward passes in which workers generated (the budget axis)."
    )
    wall_time_s: float = Field(0.0, description="Wall-clock seconds of the whole run.")

    @property
    def total_tokens(self) -> int:
        """All tokens encoded by the model in this run."""
        return self.prompt_tokens + self.generated_tokens + self.fed_tokens + self.answer_tokens


class WorkerResult(BaseModel):
    """One worker's contribution."""

    name: str = Field(description="Worker name (Alice, Bob, ...).")
    text: str = Field(description="Everything the worker wrote, headers included, in order.")
    steps: list[str] = Field(default_factory=list, description="The worker's committed steps.")
    generated_tokens: int = Field(0, description="Tokens this worker sampled.")
    stop_reason: str = Field("", description="Why the worker stopped.")


class RunResult(BaseModel):
    """The outcome of :meth:`HogwildEngine.run`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    answer: str = Field(description="The final answer text (the finisher's, or the single worker's).")
    workers: list[WorkerResult] = Field(description="Each worker's text, in worker order.")
    stop_reason: StopReason = Field(description="Why generation ended before the finisher.")
    usage: Usage = Field(default_factory=Usage, description="Token and time accounting.")
    tool_calls: list[dict[str, Any]] = Field(
        default_factory=list, description="Tool calls returned to the caller (return mode) in OpenAI format."
    )
    tool_events: list[dict[str, Any]] = Field(
        default_factory=list, description="Tool calls executed during the run, with their results."
    )
    trace: Trace = Field(default_factory=Trace, description="Replayable record of every forward pass.")

    def to_json_dict(self, include_trace: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; the (large) trace is left out unless asked for."""
        return self.model_dump(mode="json", exclude=None if include_trace else {"trace"})

    def _repr_html_(self) -> str:
        """Render the run for notebooks (steps, tool calls, answer); see ``display.render_run_html``."""
        from ..ui.display import render_run_html

        return render_run_html(self)
