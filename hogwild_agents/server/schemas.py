"""The request bodies the server accepts, validated by pydantic before anything runs.

Responses are the official ``openai`` package's models (``openai.types.chat``); requests are mirrored here
field by field for what the server supports, with ``extra="forbid"`` so a misspelt or unsupported field is
a 400 naming it rather than being silently ignored. OpenAI fields that only have one meaning here (``n``,
``logprobs``, penalties) are accepted at their neutral value and refused otherwise.

The ``hogwild`` object carries the engine's own options (:class:`HogwildOptions`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..api.config import Layout, WorkerRole

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "HogwildOptions",
    "ResponseFormat",
    "ToolChoiceFunction",
    "ToolSpec",
    "WebRunRequest",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    """A text part of a message's content (``{"type": "text", "text": ...}``)."""

    type: Literal["text"] = "text"
    text: str


class FunctionCall(_Strict):
    """The function of an assistant's tool call; ``arguments`` is a JSON string (or an object)."""

    name: str = Field(min_length=1)
    arguments: str | dict[str, Any] = "{}"


class ToolCallParam(_Strict):
    """One tool call of an earlier assistant message."""

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One chat message. Unknown keys are ignored here (clients add their own, e.g. ``refusal: null``)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages may have tool_calls")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        return self

    def to_engine(self) -> dict[str, Any]:
        """The engine's chat dict (``developer`` is a system message; text parts are joined)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(p.text for p in content)
        out: dict[str, Any] = {
            "role": "system" if self.role == "developer" else self.role,
            "content": content or "",
        }
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": c.function.model_dump()} for c in self.tool_calls
            ]
        if self.role == "tool":
            out["tool_call_id"] = self.tool_call_id
            if self.name:
                out["name"] = self.name
        return out


class FunctionSpec(_Strict):
    """A function the model may call (OpenAI's ``FunctionDefinition``)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(_Strict):
    """A tool of the request: ``{"type": "function", "function": {...}}``."""

    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedFunction(_Strict):
    """The function named by a ``tool_choice`` object."""

    name: str


class ToolChoiceFunction(_Strict):
    """``tool_choice={"type": "function", "function": {"name": ...}}``: that tool must be called."""

    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaSpec(_Strict):
    """The ``json_schema`` of a ``response_format``."""

    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormat(_Strict):
    """``{"type": "text"}``, ``{"type": "json_object"}`` or ``{"type": "json_schema", ...}``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format type 'json_schema' needs a json_schema object with a schema")
        return self

    def engine_schema(self) -> dict[str, Any] | None:
        """The JSON schema the answer must follow (``None`` for plain text)."""
        if self.type == "json_object":
            return {"type": "object"}
        if self.type == "json_schema":
            assert self.json_schema is not None
            return self.json_schema.schema_
        return None


class StreamOptions(_Strict):
    """``stream_options``: ``include_usage`` adds a last chunk with the usage and no choices."""

    include_usage: bool = False
    include_obfuscation: bool | None = None  # sent by some SDKs; there is nothing to obfuscate here


class HogwildOptions(_Strict):
    """The engine's options for one request, under ``"hogwild"`` in the body (all optional).

    Budgets bound the work the request may cost: ``max_forwards`` (sequential forward passes of the
    workers) and ``max_new_tokens`` (tokens sampled by all workers together).
    """

    workers: int | None = Field(None, ge=1, le=16, description="Workers writing in parallel.")
    worker_names: list[str] | None = Field(None, description="Their names (default Alice, Bob, ...).")
    roles: list[WorkerRole] | None = Field(None, description="One role per worker (sets the workers).")
    layout: Layout | None = Field(None, description="How each worker's view of the cache is ordered.")
    collaboration: bool | Literal["auto"] | None = Field(
        None, description="The team (True), one plain worker (False), or decided by the request ('auto')."
    )
    max_forwards: int | None = Field(None, ge=1, le=4096, description="Forward-pass budget of the workers.")
    max_new_tokens: int | None = Field(None, ge=1, le=65536, description="Token budget of all workers.")
    early_exit: bool | None = Field(None, description="Stop once a probe says the work answers the request.")
    probe_every: int | None = Field(None, ge=1, description="Worker forwards between early-exit probes.")
    probe_min_steps: int | None = Field(
        None, ge=0, description="Steps every working worker must have committed before a probe is asked."
    )
    self_check_every: int | None = Field(None, ge=0, description="Tokens between self-check questions.")
    top_k: int | None = Field(None, ge=0, description="Keep the k most likely tokens (0 keeps all).")

    def overrides(self) -> dict[str, Any]:
        """The given options as engine overrides."""
        return self.model_dump(exclude_none=True)


class ChatCompletionRequest(_Strict):
    """The body of ``POST /v1/chat/completions`` (the subset of OpenAI's the server implements)."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1, description="Only one choice per request.")
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    logprobs: Literal[False] | None = None
    presence_penalty: Literal[0, 0.0] | None = None
    frequency_penalty: Literal[0, 0.0] | None = None
    hogwild: HogwildOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str] | None:
        return [stop] if isinstance(stop, str) else stop


class WebRunRequest(_Strict):
    """A run started from the web view: one task, built-in tools the engine runs inside the shared cache."""

    task: str = Field(min_length=1, max_length=20000)
    tools: list[Literal["calculator"]] = Field(default_factory=list)
    tool_choice: Literal["auto", "required"] = "auto"
    workers: int | None = Field(None, ge=1, le=8)
    max_forwards: int | None = Field(None, ge=1, le=4096)
    max_answer_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    early_exit: bool | None = None
