"""What a run returns: the answer, each worker's text, token usage and a replayable trace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = [
    "BlockRecord",
    "FinishReason",
    "ForwardRecord",
    "GroupRecord",
    "RunResult",
    "SampleRecord",
    "SamplingRecord",
    "StopReason",
    "TokenMask",
    "ToolCallRecord",
    "ToolEventRecord",
    "Trace",
    "Usage",
    "WorkerResult",
    "set_html_renderer",
]

StopReason = Literal[
    "final_answer",
    "all_stopped",
    "max_forwards",
    "max_new_tokens",
    "max_answer_tokens",
    "context_window",
    "cache_full",
    "tool_calls",
    "answer_ready",
]


FinishReason = Literal["stop", "length", "tool_calls"]
"""Why the answer ended, in OpenAI's terms (what every front end reports)."""


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
class TokenMask:
    """The tokens a grammar allowed at one sample: ``ids`` allowed (``allow``) or ``ids`` refused."""

    allow: bool
    ids: list[int]

    def permits(self, token: int) -> bool:
        """Whether ``token`` was allowed."""
        return (token in self.ids) == self.allow


@dataclass(slots=True)
class SampleRecord:
    """One sampled token: who drew it, from which group's last position, under which masks.

    Attributes:
        writer: who sampled (a worker or ``"finisher"``).
        group: index in the forward's ``groups`` of the logits' position.
        token: the sampled id.
        greedy: the argmax of the masked logits was taken (temperature 0 or a greedy writer).
        ban: name of the ban set applied (a key of :attr:`Trace.bans`), or ``None``.
        grammar: the grammar's mask when it restricted the choice, else ``None``.
    """

    writer: str
    group: int
    token: int
    greedy: bool = True
    ban: str | None = None
    grammar: TokenMask | None = None


@dataclass(slots=True)
class ForwardRecord:
    """One batched forward pass: every writer that fed tokens in it, and every token sampled from it."""

    index: int
    groups: list[GroupRecord] = field(default_factory=list)
    samples: list[SampleRecord] = field(default_factory=list)


@dataclass(slots=True)
class SamplingRecord:
    """The run's sampling settings (``seed`` is the one actually used, drawn when none was given)."""

    temperature: float
    top_p: float
    top_k: int
    seed: int


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
    sampling: SamplingRecord | None = Field(None, description="Sampling settings of the run.")
    bans: dict[str, list[int]] = Field(
        default_factory=dict, description="Token ids each named ban set forbids (see SampleRecord.ban)."
    )


class Usage(BaseModel):
    """Token accounting of one run."""

    prompt_tokens: int = Field(0, description="Tokens of the shared prompt (encoded once for all workers).")
    generated_tokens: int = Field(0, description="Tokens sampled by the workers.")
    fed_tokens: int = Field(
        0,
        description="Tokens the engine fed (headers, tool results, the finisher's and the probes' prompts).",
    )
    probes: int = Field(0, description="Early-exit probes asked (see HogwildConfig.early_exit).")
    answer_tokens: int = Field(0, description="Tokens written by the finisher.")
    reasoning_tokens: int = Field(
        0,
        description="Tokens the workers sampled that are not the answer (OpenAI's reasoning tokens): all "
        "of them when a finisher writes the answer; in plain generation none, since the worker's text is "
        "the answer. Set when the run ends.",
    )
    reused_prompt_tokens: int = Field(0, description="Prompt tokens reused from a kept run (not re-encoded).")
    forwards: int = Field(0, description="Sequential forward passes, the finisher's included.")
    worker_forwards: int = Field(
        0, description="Forward passes in which workers generated (the budget axis)."
    )
    wall_time_s: float = Field(0.0, description="Wall-clock seconds of the whole run.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def input_tokens(self) -> int:
        """Tokens the model read that no worker sampled: the prompt and everything the engine fed."""
        return self.prompt_tokens + self.fed_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def output_tokens(self) -> int:
        """Tokens the model wrote: the workers' and the finisher's."""
        return self.generated_tokens + self.answer_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        """All tokens encoded by the model in this run (input + output)."""
        return self.input_tokens + self.output_tokens


class ToolCallRecord(BaseModel):
    """A tool call the run hands back to the caller (``tool_mode="return"``)."""

    id: str = Field(description="Call id the tool message must answer (``tool_call_id``).")
    name: str = Field(description="Name of the tool.")
    arguments: dict[str, Any] = Field(description="Decoded arguments, valid against the tool's schema.")


class ToolEventRecord(BaseModel):
    """A tool call the engine ran during the run, and what it returned into the shared cache."""

    worker: str = Field(description="The worker whose step holds the call.")
    id: str = Field(description="Call id.")
    name: str = Field(description="Name of the tool.")
    arguments: dict[str, Any] = Field(description="Arguments as written by the worker.")
    content: str = Field(description="The result text written into the cache (an error text on failure).")
    is_error: bool = Field(description="The tool raised, timed out, was unknown or got bad arguments.")
    truncated: bool = Field(False, description="The result was cut to max_tool_result_tokens.")
    duration_s: float = Field(0.0, description="Seconds from the call's start to its outcome.")


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
    finish_reason: FinishReason = Field(
        "stop",
        description="Why the answer ended, as OpenAI-style clients read it: 'tool_calls' when calls are "
        "handed back, 'length' when a token budget cut it (the finisher's max_answer_tokens; in plain "
        "generation max_answer_tokens, max_forwards or max_new_tokens), else 'stop'. The engine sets it; "
        "the server, LangChain and LlamaIndex report it as it is.",
    )
    answer_truncated: bool = Field(
        False,
        description="The answer was constrained (response_format, a forced or started tool call) and the "
        "token budget ended it before its grammar closed: it is not valid JSON / not a complete call. "
        "Front ends turn this into their parser error (LangChain OutputParserException).",
    )
    collaboration: bool = Field(
        True, description="Whether the workers collaborated (False: plain generation)."
    )
    answer_worker: str | None = Field(
        None,
        description="The worker whose own text is the answer (plain generation, no finisher); None when "
        "a finisher wrote it.",
    )
    usage: Usage = Field(default_factory=Usage, description="Token and time accounting.")
    tool_calls: list[ToolCallRecord] = Field(
        default_factory=list, description="Tool calls returned to the caller (return mode)."
    )
    tool_events: list[ToolEventRecord] = Field(
        default_factory=list, description="Tool calls executed during the run, with their results."
    )
    trace: Trace = Field(default_factory=Trace, description="Replayable record of every forward pass.")

    def to_json_dict(self, include_trace: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; the (large) trace is left out unless asked for."""
        return self.model_dump(mode="json", exclude=None if include_trace else {"trace"})

    def _repr_html_(self) -> str | None:
        """Render the run for notebooks (steps, tool calls, answer) with the registered renderer."""
        return _HTML_RENDERER[0](self) if _HTML_RENDERER else None


# The notebook renderer lives in the ui layer, which registers it here (this layer imports nothing above).
_HTML_RENDERER: list[Callable[[RunResult], str]] = []


def set_html_renderer(render: Callable[[RunResult], str]) -> None:
    """Make ``render`` the HTML view of every :class:`RunResult` in notebooks."""
    _HTML_RENDERER[:] = [render]
