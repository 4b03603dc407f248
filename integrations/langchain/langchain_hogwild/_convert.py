"""Pure conversions between LangChain objects and the hogwild engine's requests and results.

Nothing here touches the engine or a model: every function maps plain values to plain values, so each can
be unit-tested on its own. ``chat_models.ChatHogwild`` strings them together.

Input side: LangChain messages → HF-style chat dicts (``_convert_messages_to_dicts``), bound tools → OpenAI
schemas or engine ``Tool`` objects, ``tool_choice`` and ``response_format`` → engine options.
Output side: ``RunResult`` → ``AIMessage`` (``_convert_result_to_message``), stream events → message chunks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.tool import ToolCall, ToolCallChunk, tool_call, tool_call_chunk
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool

if TYPE_CHECKING:
    from hogwild_agents import RunResult, Tool, ToolCallRecord, Usage, WorkerResult

PROVIDER = "hogwild"
TOOL_CHOICE_KEYWORDS = ("auto", "none", "any", "required")

# Content-block types that carry no prompt text for a text-only model but are safe to drop on input:
# tool calls travel in ``AIMessage.tool_calls``; earlier reasoning is not fed back (the template has no slot).
_SKIPPED_AI_BLOCKS = frozenset({"tool_use", "tool_call", "tool_call_chunk", "reasoning", "thinking"})
_ROLE_BY_CHAT_ROLE = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
}

# ----------------------------------------------------------------------------------------------- input


def _convert_content_to_text(content: str | list[Any], *, index: int, role: str) -> str:
    """Join the text of a message's content; reject images, audio, files and other non-text blocks.

    Args:
        content: ``message.content``: a string or a list of strings and content-block dicts.
        index: Position of the message in the conversation (for the error message).
        role: Engine role of the message; assistant messages may carry tool-use and reasoning blocks.

    Raises:
        ValueError: A block is not text (ChatHogwild serves text-only models).

    """
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type") if isinstance(block, dict) else type(block).__name__
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif role == "assistant" and kind in _SKIPPED_AI_BLOCKS:
            continue
        else:
            raise ValueError(
                f"message {index} ({role}) has a {kind!r} content block; ChatHogwild serves text-only "
                "models, so content must be a string or text blocks; describe images or files in text."
            )
    return "".join(parts)


def _convert_tool_call_to_dict(call: ToolCall) -> dict[str, Any]:
    """Convert a LangChain tool call to the HF chat-template form (arguments stay a dict)."""
    return {
        "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": call["name"], "arguments": dict(call.get("args") or {})},
    }


def _convert_message_to_dict(message: BaseMessage, index: int) -> dict[str, Any]:
    """Convert one message to an engine chat dict (``role``, ``content`` and tool fields).

    Raises:
        ValueError: Unsupported message type or role, or non-text content.

    """
    if isinstance(message, SystemMessage):
        role = "system"
    elif isinstance(message, HumanMessage):
        role = "user"
    elif isinstance(message, AIMessage):
        role = "assistant"
    elif isinstance(message, ToolMessage):
        role = "tool"
    elif isinstance(message, ChatMessage) and message.role.lower() in _ROLE_BY_CHAT_ROLE:
        role = _ROLE_BY_CHAT_ROLE[message.role.lower()]
    else:
        detail = f" with role {message.role!r}" if isinstance(message, ChatMessage) else ""
        raise ValueError(
            f"message {index} is a {type(message).__name__}{detail}; ChatHogwild accepts System, Human, "
            f"AI and Tool messages (and ChatMessage with role in {sorted(_ROLE_BY_CHAT_ROLE)})"
        )
    out: dict[str, Any] = {
        "role": role,
        "content": _convert_content_to_text(message.content, index=index, role=role),
    }
    if isinstance(message, AIMessage) and message.tool_calls:
        out["tool_calls"] = [_convert_tool_call_to_dict(c) for c in message.tool_calls]
    if isinstance(message, ToolMessage):
        out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
        if message.status == "error" and not out["content"].lstrip().lower().startswith("error"):
            out["content"] = f"Error: {out['content']}"
    return out


def _merge_same_role(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    """Fold ``current`` into ``previous`` if both are system, user or assistant turns; say if it did."""
    if previous["role"] != current["role"] or current["role"] == "tool":
        return False
    if previous["role"] == "assistant" and previous.get("tool_calls"):
        return False  # the tool results that follow belong to that turn's calls
    texts = [t for t in (previous["content"], current["content"]) if t]
    previous["content"] = "\n\n".join(texts)
    if current.get("tool_calls"):
        previous["tool_calls"] = list(current["tool_calls"])
    return True


def _convert_messages_to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Convert a LangChain conversation to the engine's HF-style chat dicts.

    Consecutive system, user or assistant messages are merged (chat templates expect alternating turns);
    a tool message gets the name of the call it answers.

    Raises:
        ValueError: Non-text content, an unsupported message type, or a ``ToolMessage`` whose
            ``tool_call_id`` matches no tool call of an earlier ``AIMessage``.

    """
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for index, message in enumerate(messages):
        converted = _convert_message_to_dict(message, index)
        if converted["role"] == "tool":
            call_id = converted["tool_call_id"]
            if call_id not in call_names:
                known = sorted(call_names) or "none"
                raise ValueError(
                    f"message {index} is a ToolMessage for tool_call_id {call_id!r}, but no earlier "
                    f"AIMessage made a tool call with that id (known ids: {known}); send the AIMessage with "
                    "its tool_calls first"
                )
            converted.setdefault("name", call_names[call_id])
        for call in converted.get("tool_calls", ()):
            call_names[call["id"]] = call["function"]["name"]
        if out and _merge_same_role(out[-1], converted):
            continue
        out.append(converted)
    return out


def _convert_tools_to_schemas(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """LangChain tools, functions, pydantic classes, TypedDicts or dicts → OpenAI tool schemas."""
    return [convert_to_openai_tool(t) for t in tools]


def _tool_callable(tool: Any) -> Callable[..., Any] | None:
    """Return the function behind a bindable tool, or None for pure schemas (dicts, classes)."""
    if isinstance(tool, BaseTool):

        def call(**arguments: Any) -> Any:
            return tool.invoke(arguments)

        return call
    if isinstance(tool, dict) or isinstance(tool, type) or not callable(tool):
        return None
    return tool


def _convert_tools_to_engine_tools(tools: Sequence[Any]) -> list[Tool]:
    """Bindable tools → ``hogwild_agents.Tool`` objects the engine runs itself (``execute_tools=True``).

    Raises:
        ValueError: A tool is a schema without a function (a dict or a pydantic class).

    """
    from hogwild_agents import Tool

    out = []
    for tool in tools:
        schema = convert_to_openai_tool(tool)["function"]
        func = _tool_callable(tool)
        if func is None:
            raise ValueError(
                f"tool {schema['name']!r} is a schema without a function, so the engine cannot run it; with "
                "execute_tools=True bind LangChain tools or Python functions, or set execute_tools=False to "
                "get the tool calls back"
            )
        parameters = schema.get("parameters") or {"type": "object", "properties": {}}
        out.append(
            Tool(
                name=schema["name"],
                description=schema.get("description", ""),
                parameters=parameters,
                func=func,
            )
        )
    return out


def _tool_names(tools: Sequence[Any]) -> list[str]:
    """Names of bound tools given as OpenAI schemas or engine ``Tool`` objects."""
    names = []
    for tool in tools:
        if isinstance(tool, dict):
            names.append(tool.get("function", tool).get("name", ""))
        else:
            names.append(getattr(tool, "name", ""))
    return names


def _convert_tool_choice(tool_choice: Any, tool_names: Sequence[str]) -> str | None:
    """Normalise a LangChain ``tool_choice`` to the engine's ``auto``/``none``/``any``/``required`` or a name.

    Accepts None, those keywords, a tool name, ``True`` (the single bound tool), ``False`` (``none``) and
    the dict forms ``{"type": "function", "function": {"name": ...}}`` and ``{"type": "tool", "name": ...}``.

    Raises:
        ValueError: An unknown keyword or tool name, or ``True`` with several tools bound.

    """
    if tool_choice is None:
        return None
    if tool_choice is True:
        if len(tool_names) != 1:
            raise ValueError(
                f"tool_choice=True forces the single bound tool, but {len(tool_names)} tools are bound "
                f"({list(tool_names)}); pass a tool name or 'any'"
            )
        return tool_names[0]
    if tool_choice is False:
        return "none"
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
        if tool_choice.get("type") in ("any", "required") and not name:
            return "any"
        if not isinstance(name, str):
            raise ValueError(
                f"tool_choice dict {tool_choice!r} names no tool; use "
                "{'type': 'function', 'function': {'name': ...}}"
            )
        tool_choice = name
    if not isinstance(tool_choice, str):
        raise ValueError(
            f"tool_choice must be a string, bool, dict or None, got {type(tool_choice).__name__}"
        )
    if tool_choice in TOOL_CHOICE_KEYWORDS:
        return tool_choice
    if tool_choice in tool_names:
        return tool_choice
    raise ValueError(
        f"unknown tool_choice {tool_choice!r}: use one of {list(TOOL_CHOICE_KEYWORDS)} or the name of a "
        f"bound tool ({list(tool_names) or 'no tools are bound'})"
    )


def _convert_response_format(response_format: Any) -> dict[str, Any] | None:
    """Convert a structured-output request to the JSON schema the engine's answer must follow.

    Accepts a JSON schema dict, a pydantic class or TypedDict, or the OpenAI shapes
    ``{"type": "json_schema", "json_schema": {"schema": ...}}`` and ``{"type": "json_object"}``.
    """
    if response_format is None:
        return None
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
            return dict(response_format["json_schema"].get("schema") or {"type": "object"})
        if kind == "json_object":
            return {"type": "object"}
        return dict(response_format)
    return convert_to_json_schema(response_format)


# ---------------------------------------------------------------------------------------------- output


def _convert_tool_calls(calls: Sequence[ToolCallRecord]) -> list[ToolCall]:
    """Engine tool calls → LangChain ``ToolCall``s (the engine gives every call a unique id)."""
    return [tool_call(name=c.name, args=dict(c.arguments), id=c.id) for c in calls]


def _convert_tool_call_chunks(calls: Sequence[ToolCall]) -> list[ToolCallChunk]:
    """Complete tool calls as stream chunks: one per call, with an int index and JSON args (Unicode kept)."""
    return [
        tool_call_chunk(name=c["name"], args=json.dumps(c["args"], ensure_ascii=False), id=c["id"], index=i)
        for i, c in enumerate(calls)
    ]


def _convert_usage(usage: Usage) -> UsageMetadata:
    """Engine ``Usage`` → LangChain ``UsageMetadata``.

    Input is the shared prompt (encoded once for all workers; the part reused from an earlier run is
    ``cache_read``); output is every sampled token, the workers' and the finisher's; ``reasoning`` is the
    engine's count of the tokens that are not the answer (none in plain generation).
    """
    return UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        input_token_details=InputTokenDetails(cache_read=usage.reused_prompt_tokens),
        output_token_details=OutputTokenDetails(reasoning=usage.reasoning_tokens),
    )


def _convert_workers(workers: Sequence[WorkerResult]) -> list[dict[str, Any]]:
    """Per-worker detail for ``response_metadata["workers"]``."""
    return [
        {
            "name": w.name,
            "text": w.text,
            "steps": list(w.steps),
            "generated_tokens": w.generated_tokens,
            "stop_reason": w.stop_reason,
        }
        for w in workers
    ]


def _reasoning_text(workers: Sequence[WorkerResult], answer_worker: str | None) -> str:
    """Join the thinking workers' texts in worker order (each step opens with ``**Name [k]:**``).

    The ``answer_worker``'s text is the answer itself (plain generation), not reasoning.
    """
    return "\n\n".join(w.text.strip() for w in workers if w.text.strip() and w.name != answer_worker)


def _convert_generation_info(result: RunResult, *, model_name: str) -> dict[str, Any]:
    """``response_metadata`` of a run: model, finish reason, the engine's stop reason, workers and usage."""
    return {
        "model_name": model_name,
        "model_provider": PROVIDER,
        "finish_reason": result.finish_reason,
        "stop_reason": result.stop_reason,
        "collaboration": result.collaboration,
        "answer_truncated": result.answer_truncated,
        "workers": _convert_workers(result.workers),
        "tool_events": [e.model_dump() for e in result.tool_events],
        "usage": result.usage.model_dump(),
    }


def _convert_result_to_message(result: RunResult, *, model_name: str) -> AIMessage:
    """Convert a finished run to the ``AIMessage`` of ``invoke``: answer, tool calls, reasoning, usage."""
    additional_kwargs: dict[str, Any] = {}
    reasoning = _reasoning_text(result.workers, result.answer_worker)
    if reasoning:
        additional_kwargs["reasoning_content"] = reasoning
    return AIMessage(
        content=result.answer,
        tool_calls=_convert_tool_calls(result.tool_calls),
        additional_kwargs=additional_kwargs,
        usage_metadata=_convert_usage(result.usage),
        response_metadata=_convert_generation_info(result, model_name=model_name),
    )


def _convert_final_chunk(result: RunResult, *, model_name: str) -> AIMessageChunk:
    """Build the last chunk of a stream: tool calls, usage (the only chunk that has any) and metadata."""
    calls = _convert_tool_calls(result.tool_calls)
    return AIMessageChunk(
        content="",
        tool_call_chunks=_convert_tool_call_chunks(calls),
        usage_metadata=_convert_usage(result.usage),
        response_metadata=_convert_generation_info(result, model_name=model_name),
        chunk_position="last",
    )


class _StreamConverter:
    """Turns engine events into ``AIMessageChunk``s, in order; one converter per stream.

    Worker tokens go to ``additional_kwargs["worker_texts"][name]`` (live, per worker; merged chunks hold each
    worker's whole text). ``additional_kwargs["reasoning_content"]`` grows one committed step at a time, in
    commit order (the shared history), plus each worker's unfinished step when it stops. Answer deltas are
    the content. The last chunk carries tool calls, usage and metadata.

    In plain generation (the run's first event, ``RunStartedEvent``, names an ``answer_worker``) that
    worker's tokens are the answer: they stream as content, up to the opening of a tool call the caller
    gets back (the event's ``call_openers``); the last chunk adds whatever of the final answer is left.

    The engine never streams a stop string or tool-call markup in the finisher's answer deltas, so the
    answer streams live with tools bound too; returned calls arrive whole as ``tool_call_chunks`` in the
    last chunk.
    """

    def __init__(self, *, model_name: str) -> None:
        self._model_name = model_name
        self._unfinished: dict[str, str] = {}
        self._answer_started = False
        self._answer_worker: str | None = None
        self._call_openers: tuple[str, ...] = ()
        self._plain_text = ""  # the answer worker's text so far (plain generation)
        self._plain_shown = 0  # how much of it was streamed

    def convert(self, event: Any) -> AIMessageChunk | None:
        """Return the chunk for one event, or None when the event has nothing for the caller."""
        from hogwild_agents import (
            AnswerEvent,
            FinishedEvent,
            RunStartedEvent,
            StepCommittedEvent,
            TokenEvent,
            WorkerStoppedEvent,
        )
        from hogwild_agents.text.stops import text_before

        if isinstance(event, RunStartedEvent):
            self._answer_worker = event.answer_worker
            self._call_openers = event.call_openers
            return None
        if isinstance(event, TokenEvent) and event.worker == self._answer_worker:
            self._plain_text += event.text
            visible = text_before(self._plain_text, self._call_openers)
            delta, self._plain_shown = visible[self._plain_shown :], max(self._plain_shown, len(visible))
            return self._answer(delta, strip=False)  # exactly the final answer's text
        if isinstance(event, WorkerStoppedEvent) and event.worker == self._answer_worker:
            return None
        if isinstance(event, TokenEvent):
            self._unfinished[event.worker] = self._unfinished.get(event.worker, "") + event.text
            return AIMessageChunk(content="", additional_kwargs={"worker_texts": {event.worker: event.text}})
        if isinstance(event, StepCommittedEvent):
            self._unfinished[event.worker] = ""
            return self._reasoning(event.text)
        if isinstance(event, WorkerStoppedEvent):
            return self._reasoning(self._unfinished.pop(event.worker, ""))
        if isinstance(event, AnswerEvent):
            return self._answer(event.text)
        if isinstance(event, FinishedEvent):
            last = _convert_final_chunk(event.result, model_name=self._model_name)
            shown, answer = self._plain_text[: self._plain_shown], event.result.answer
            if self._answer_worker is not None and answer.startswith(shown):
                last.content = answer[len(shown) :]  # held back as a possible call opening, but not one
            return last
        return None  # tool call start/finish: reported in the final chunk's response_metadata["tool_events"]

    def _answer(self, text: str, strip: bool = True) -> AIMessageChunk | None:
        text = text if self._answer_started or not strip else text.lstrip()
        self._answer_started = self._answer_started or bool(text)
        return AIMessageChunk(content=text) if text else None

    @staticmethod
    def _reasoning(text: str) -> AIMessageChunk | None:
        text = text.strip()
        return (
            AIMessageChunk(content="", additional_kwargs={"reasoning_content": text + "\n\n"})
            if text
            else None
        )
