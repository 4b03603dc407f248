"""Requests to engine calls, and engine results and events to the official ``openai`` response models.

Nothing here touches the network: :func:`engine_request` turns a validated :class:`ChatCompletionRequest`
into ``(messages, tools, overrides)`` for :meth:`HogwildEngine.stream`; :func:`completion` builds the
``ChatCompletion`` of a finished run; :class:`ChunkWriter` turns a run's events into ``ChatCompletionChunk``s.

Streaming contract (documented in docs/SERVER.md): every worker token is a chunk whose
``delta.reasoning_content`` holds the text and ``delta.hogwild = {"worker": name}`` says whose it is; tool
calls the engine ran and steps committed come as chunks with an empty delta and a ``hogwild`` object
(``{"event": "tool_call" | "tool_result" | "commit", ...}``); the finisher's answer is ``delta.content``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
)
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import (
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.chat.chat_completion_message_function_tool_call import Function
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails

from ..api.config import HogwildConfig
from ..api.errors import InvalidRequestError
from ..api.events import (
    AnswerEvent,
    Event,
    FinishedEvent,
    StepCommittedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
)
from ..api.results import RunResult, Usage
from .schemas import ChatCompletionRequest, ToolChoiceFunction

__all__ = ["ChunkWriter", "EngineRequest", "completion", "engine_request", "usage"]

SERVER_DEFAULTS: dict[str, Any] = dict(HogwildConfig.CHAT_DEFAULTS)
"""What a request gets unless it says otherwise: the chat front ends' defaults (as ``hogwild run``)."""


@dataclass
class EngineRequest:
    """One request, translated: what goes to the engine and what shapes the reply."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    overrides: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    model: str = ""
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def returns_calls(self) -> bool:
        """Whether the answer may be tool-call markup (then it is sent parsed, once, at the end)."""
        return bool(self.tools) and self.overrides.get("tool_choice") != "none"


def engine_request(body: ChatCompletionRequest, model: str) -> EngineRequest:
    """Translate a validated request; refuse what the engine cannot mean.

    Raises:
        InvalidRequestError: ``tool_choice`` names no given tool, or forces a call with no tools.
    """
    overrides: dict[str, Any] = dict(SERVER_DEFAULTS)
    if body.hogwild is not None:
        overrides.update(body.hogwild.overrides())
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None:
        overrides["max_answer_tokens"] = limit
    for name in ("temperature", "top_p", "seed"):
        value = getattr(body, name)
        if value is not None:
            overrides[name] = value
    if body.stop:
        overrides["stop"] = list(body.stop)
    tools = [t.model_dump(exclude_none=True) for t in body.tools or []] or None
    names = [t["function"]["name"] for t in tools or []]
    choice = body.tool_choice
    if isinstance(choice, ToolChoiceFunction):
        if choice.function.name not in names:
            raise InvalidRequestError(
                f"tool_choice names the function {choice.function.name!r}, which is not among the request's "
                f"tools ({names or 'none given'}); name one of them"
            )
        overrides["tool_choice"] = choice.function.name
    elif choice is not None:
        if choice == "required" and not tools:
            raise InvalidRequestError("tool_choice='required' needs at least one tool in 'tools'")
        overrides["tool_choice"] = choice
    if tools:
        overrides["tool_mode"] = "return"  # the client runs its tools and sends the results back
    if body.response_format is not None:
        schema = body.response_format.engine_schema()
        if schema is not None:
            overrides["response_format"] = schema
    messages = [m.to_engine() for m in body.messages]
    if limit is not None and tools and overrides.get("collaboration") is False:
        # Plain generation with tools: the engine bounds the worker (calls and all) by forwards only.
        overrides["max_forwards"] = min(overrides["max_forwards"], limit)
    return EngineRequest(
        messages=messages,
        tools=tools,
        overrides=overrides,
        stream=bool(body.stream),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        model=body.model or model,
    )


def usage(u: Usage) -> CompletionUsage:
    """The engine's accounting as OpenAI usage: tokens that are not the answer are reasoning tokens."""
    return CompletionUsage(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        total_tokens=u.total_tokens,
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=u.reasoning_tokens),
        prompt_tokens_details=PromptTokensDetails(cached_tokens=u.reused_prompt_tokens),
    )


def _tool_calls(result: RunResult) -> list[ChatCompletionMessageFunctionToolCall]:
    return [
        ChatCompletionMessageFunctionToolCall(
            id=c.id,
            type="function",
            function=Function(name=c.name, arguments=json.dumps(c.arguments, ensure_ascii=False)),
        )
        for c in result.tool_calls
    ]


def reasoning_text(result: RunResult) -> str:
    """The workers' texts joined in worker order (each step opens with ``**Name [k]:**``)."""
    return "\n\n".join(w.text.strip() for w in result.workers if w.text.strip())


def hogwild_summary(result: RunResult) -> dict[str, Any]:
    """What a reply adds under ``hogwild``: the engine's stop reason, each worker's text, tool events."""
    return {
        "stop_reason": result.stop_reason,
        "collaboration": result.collaboration,
        "workers": [{"name": w.name, "text": w.text, "stop_reason": w.stop_reason} for w in result.workers],
        "tool_events": [e.model_dump(mode="json") for e in result.tool_events],
        "usage": result.usage.model_dump(mode="json"),
    }


def completion(req: EngineRequest, result: RunResult) -> ChatCompletion:
    """The ``ChatCompletion`` of a finished run."""
    calls = _tool_calls(result)
    message = ChatCompletionMessage(
        role="assistant",
        content=None if calls else result.answer,
        tool_calls=calls or None,
        reasoning_content=reasoning_text(result) or None,
    )
    reason = result.finish_reason
    return ChatCompletion(
        id=req.id,
        object="chat.completion",
        created=req.created,
        model=req.model,
        choices=[Choice(index=0, message=message, finish_reason=reason)],  # type: ignore[arg-type]
        usage=usage(result.usage),
        hogwild=hogwild_summary(result),
    )


class ChunkWriter:
    """Turns one run's events into ``ChatCompletionChunk``s, in order (see the module docstring)."""

    def __init__(self, req: EngineRequest) -> None:
        self.req = req
        self._answer_started = False
        self.result: RunResult | None = None

    def _chunk(
        self, delta: ChoiceDelta | None, reason: str | None = None, with_choice: bool = True, **extra: Any
    ) -> ChatCompletionChunk:
        choices = [ChunkChoice(index=0, delta=delta or ChoiceDelta(), finish_reason=reason)]  # type: ignore[arg-type]
        return ChatCompletionChunk(
            id=self.req.id,
            object="chat.completion.chunk",
            created=self.req.created,
            model=self.req.model,
            choices=choices if with_choice else [],
            **extra,
        )

    def first(self) -> ChatCompletionChunk:
        """The opening chunk: the assistant role."""
        return self._chunk(ChoiceDelta(role="assistant", content=""))

    def convert(self, event: Event) -> list[ChatCompletionChunk]:
        """The chunks for one event (none for events the protocol has no place for)."""
        if isinstance(event, TokenEvent):
            if not event.text:
                return []
            delta = ChoiceDelta(reasoning_content=event.text, hogwild={"worker": event.worker})
            return [self._chunk(delta)]
        if isinstance(event, StepCommittedEvent):
            info = {"event": "commit", "worker": event.worker, "step": event.step}
            return [self._chunk(ChoiceDelta(hogwild=info))]
        if isinstance(event, ToolCallStartedEvent):
            info = {"event": "tool_call", "worker": event.worker, "id": event.call_id, "name": event.name}
            return [self._chunk(ChoiceDelta(hogwild={**info, "arguments": event.arguments}))]
        if isinstance(event, ToolCallFinishedEvent):
            info = {"event": "tool_result", "worker": event.worker, "id": event.call_id, "name": event.name}
            return [self._chunk(ChoiceDelta(hogwild={**info, "content": event.content}))]
        if isinstance(event, AnswerEvent):
            if self.req.returns_calls:
                return []
            text = event.text if self._answer_started else event.text.lstrip()
            self._answer_started = self._answer_started or bool(text)
            return [self._chunk(ChoiceDelta(content=text))] if text else []
        if isinstance(event, FinishedEvent):
            return self._final(event.result)
        return []

    def _final(self, result: RunResult) -> list[ChatCompletionChunk]:
        self.result = result
        out = []
        calls = _tool_calls(result) if self.req.returns_calls else []
        if calls:
            deltas = [
                ChoiceDeltaToolCall(
                    index=i,
                    id=c.id,
                    type="function",
                    function=ChoiceDeltaToolCallFunction(
                        name=c.function.name, arguments=c.function.arguments
                    ),
                )
                for i, c in enumerate(calls)
            ]
            out.append(self._chunk(ChoiceDelta(tool_calls=deltas)))
        elif not self._answer_started and result.answer.strip():
            # The answer came without answer events (plain workers: the first one's text), or was held
            # back because it might have been a tool call: it is sent whole now.
            out.append(self._chunk(ChoiceDelta(content=result.answer.lstrip())))
        reason = result.finish_reason
        out.append(
            self._chunk(ChoiceDelta(hogwild={"event": "finished", "stop_reason": result.stop_reason}), reason)
        )
        if self.req.include_usage:
            out.append(self._chunk(None, with_choice=False, usage=usage(result.usage)))
        return out
