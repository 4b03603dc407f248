"""Pure conversions between LlamaIndex objects and the hogwild-agents engine's inputs and outputs.

Nothing here runs a model: messages, tools and tool choices go in as LlamaIndex objects and come out as the
engine's HF-style dicts, and a :class:`~hogwild_agents.RunResult` or a stream of engine events comes back
as :class:`~llama_index.core.base.llms.types.ChatResponse` objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    ChatResponse,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.llm import ToolSelection

from hogwild_agents import (
    AnswerEvent,
    FinishedEvent,
    RunResult,
    RunStartedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallRecord,
    ToolCallStartedEvent,
    Usage,
)

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = [
    "ChatStream",
    "convert_messages",
    "convert_result",
    "convert_tool_choice",
    "convert_tools",
    "convert_usage",
    "tool_calls_from_message",
]

_ROLES: dict[str, str] = {
    MessageRole.SYSTEM.value: "system",
    MessageRole.DEVELOPER.value: "system",
    MessageRole.USER.value: "user",
    MessageRole.ASSISTANT.value: "assistant",
    MessageRole.CHATBOT.value: "assistant",
    MessageRole.MODEL.value: "assistant",
    MessageRole.TOOL.value: "tool",
    MessageRole.FUNCTION.value: "tool",
}
_CHOICE_KEYWORDS = frozenset({"auto", "none", "required", "any"})


# ---------------------------------------------------------------------------------------------- messages
def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _decode_arguments(arguments: Any, where: str) -> dict[str, Any]:
    """Tool-call arguments as a dict; JSON text is decoded, anything else is a ``ValueError``."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{where}: tool-call arguments are not valid JSON ({e}): {arguments!r:.120}"
            ) from e
    if not isinstance(arguments, Mapping):
        raise ValueError(
            f"{where}: tool-call arguments must be a JSON object, got {type(arguments).__name__}"
        )
    return dict(arguments)


def _legacy_tool_calls(message: ChatMessage, where: str) -> list[dict[str, Any]]:
    """Read OpenAI-style ``additional_kwargs["tool_calls"]`` (dicts or OpenAI client objects)."""
    calls = []
    for raw in message.additional_kwargs.get("tool_calls") or []:
        call = raw.model_dump() if hasattr(raw, "model_dump") else raw
        if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
            raise ValueError(f"{where}: additional_kwargs['tool_calls'] entries need a 'function' object")
        function = call["function"]
        calls.append(
            {
                "id": call.get("id") or _new_call_id(),
                "type": "function",
                "function": {
                    "name": str(function.get("name", "")),
                    "arguments": _decode_arguments(function.get("arguments"), where),
                },
            }
        )
    return calls


def convert_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Convert LlamaIndex chat messages to the engine's HF-style message dicts.

    Text blocks are joined; ``ToolCallBlock``s (or legacy ``additional_kwargs["tool_calls"]``) become the
    assistant's ``tool_calls``; tool results need ``additional_kwargs["tool_call_id"]`` naming an earlier
    call. Thinking blocks (the workers' notes of an earlier answer) and cache points are not sent back.

    Args:
        messages: The conversation, oldest first.

    Returns:
        The messages as ``{"role", "content", ...}`` dicts for :meth:`HogwildEngine.run`.

    Raises:
        ValueError: A message holds an image, audio, video or document block, a tool result answers no
            earlier tool call, or a role or tool-call payload is not understood.

    """
    if not messages:
        raise ValueError("no messages to send: pass at least one ChatMessage")
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        where = f"message {i} ({message.role.value})"
        role = _ROLES.get(message.role.value)
        if role is None:  # pragma: no cover - MessageRole is a closed enum; kept for future roles
            raise ValueError(f"{where}: unsupported role; use one of {sorted(_ROLES)}")
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for block in message.blocks:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif isinstance(block, ToolCallBlock):
                if role != "assistant":
                    raise ValueError(f"{where}: only assistant messages may hold tool calls (ToolCallBlock)")
                arguments = _decode_arguments(block.tool_kwargs, where)
                call_id = block.tool_call_id or _new_call_id()
                tool_calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": block.tool_name, "arguments": arguments},
                    }
                )
            elif isinstance(block, ThinkingBlock | CachePoint):
                continue
            else:
                raise ValueError(
                    f"{where}: {type(block).__name__} is not supported; the Hogwild LLM serves text-only "
                    "models, so pass text (TextBlock) instead"
                )
        if role == "assistant" and not tool_calls:
            tool_calls = _legacy_tool_calls(message, where)
        entry: dict[str, Any] = {"role": role, "content": "".join(texts)}
        if tool_calls:
            entry["tool_calls"] = tool_calls
            call_names.update({c["id"]: c["function"]["name"] for c in tool_calls})
        if role == "tool":
            call_id = message.additional_kwargs.get("tool_call_id")
            if not call_id or call_id not in call_names:
                raise ValueError(
                    f"{where}: tool result with tool_call_id={call_id!r} answers no earlier assistant tool "
                    f"call (known ids: {sorted(call_names)}); keep the assistant message making the call in "
                    "the history and set additional_kwargs={'tool_call_id': ...} on the tool message"
                )
            entry["tool_call_id"] = call_id
            entry["name"] = message.additional_kwargs.get("name") or call_names[call_id]
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------------------- tools
def _tool_name(tool: Any) -> str:
    return str(getattr(getattr(tool, "metadata", None), "name", None) or "")


def _call_tool(tool: BaseTool) -> Callable[..., str]:
    """Wrap a LlamaIndex tool as a plain callable returning its output text (for the engine to run)."""

    def run(**kwargs: Any) -> str:
        return str(tool.call(**kwargs).content)

    run.__name__ = _tool_name(tool) or "tool"
    return run


def convert_tools(tools: Sequence[Any], *, execute: bool) -> list[Any]:
    """Convert LlamaIndex tools to what the engine takes.

    Args:
        tools: ``BaseTool``s (e.g. ``FunctionTool``) or OpenAI tool schemas (dicts).
        execute: The engine will run the tools itself, so every tool needs a callable (schemas are refused).

    Returns:
        :class:`hogwild_agents.Tool` objects (carrying the LlamaIndex tool's callable) for ``BaseTool``s, and
        schema dicts as they are (return mode only).

    Raises:
        ValueError: A tool has no name, a name repeats, execute mode got a bare schema with no callable, or a
            tool's name or schema is rejected by the engine.
        TypeError: A tool is neither a LlamaIndex tool nor a schema dict.

    """
    out: list[Any] = []
    names: set[str] = set()
    for tool in tools:
        if isinstance(tool, Mapping):
            if execute:
                raise ValueError(
                    "execute_tools=True needs LlamaIndex tools with a callable (e.g. FunctionTool), "
                    f"not a bare schema: {dict(tool)!r:.120}"
                )
            function = tool.get("function") if tool.get("type") == "function" else None
            if not isinstance(function, Mapping) or not function.get("name"):
                raise ValueError(
                    f"tool schema must be {{'type': 'function', 'function': {{'name': ...}}}}: {tool!r:.120}"
                )
            name, converted = str(function["name"]), dict(tool)
        elif hasattr(tool, "metadata") and hasattr(tool.metadata, "to_openai_tool"):
            from hogwild_agents import Tool

            name = _tool_name(tool)
            if not name:
                raise ValueError(f"tool {tool!r:.80} has no name; set ToolMetadata(name=...)")
            function = tool.metadata.to_openai_tool(skip_length_check=True)["function"]
            try:  # with its callable: the engine runs it in execute mode and returns its calls otherwise
                converted = Tool(
                    name=name,
                    description=function.get("description", ""),
                    parameters=function.get("parameters") or {"type": "object", "properties": {}},
                    func=_call_tool(tool),
                )
            except (ValueError, TypeError) as e:
                raise ValueError(f"tool {name!r} cannot be used by the engine: {e}") from e
        else:
            raise TypeError(
                f"expected a LlamaIndex BaseTool or an OpenAI tool schema dict, got {type(tool).__name__}"
            )
        if name in names:
            raise ValueError(f"two tools are named {name!r}; tool names must be unique")
        names.add(name)
        out.append(converted)
    return out


def convert_tool_choice(tool_choice: Any, tool_required: bool, tool_names: Sequence[str]) -> str:
    """Resolve LlamaIndex's ``tool_choice`` / ``tool_required`` to the engine's ``tool_choice`` string.

    Args:
        tool_choice: ``None``, ``"auto"``, ``"none"``, ``"required"``/``"any"``, a tool name, or an OpenAI
            dict ``{"type": "function", "function": {"name": ...}}``.
        tool_required: The caller needs a tool call (``None``/``"auto"`` then mean ``"required"``).
        tool_names: Names of the tools offered.

    Returns:
        ``"auto"``, ``"none"``, ``"required"`` or a tool name; the engine enforces it by constrained decoding.

    Raises:
        ValueError: The choice is not understood, names an unknown tool, or contradicts ``tool_required``.

    """
    choice = tool_choice
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if choice.get("type") == "function" and isinstance(function, Mapping) and function.get("name"):
            choice = str(function["name"])
        elif isinstance(choice.get("type"), str) and choice["type"] in _CHOICE_KEYWORDS:
            choice = choice["type"]
        else:
            raise ValueError(
                f"tool_choice dict {dict(choice)!r:.120} is not understood; use "
                "{'type': 'function', 'function': {'name': <tool>}} or a string"
            )
    if choice is None:
        return "required" if tool_required else "auto"
    if not isinstance(choice, str):
        raise ValueError(f"tool_choice must be a string, a dict or None, got {type(choice).__name__}")
    if choice in _CHOICE_KEYWORDS:
        if choice == "any":
            choice = "required"
        if tool_required and choice == "auto":
            return "required"
        if tool_required and choice == "none":
            raise ValueError("tool_required=True contradicts tool_choice='none'")
        if choice != "none" and not tool_names:
            raise ValueError(f"tool_choice={tool_choice!r} needs at least one tool")
        return choice
    if choice not in tool_names:
        raise ValueError(
            f"tool_choice {choice!r} is neither 'auto', 'none', 'required', 'any' nor one of the tools "
            f"{sorted(tool_names)}"
        )
    return choice


def tool_calls_from_message(message: ChatMessage) -> list[ToolSelection]:
    """Read an assistant message's tool calls as ``ToolSelection``s (blocks first, then legacy kwargs)."""
    selections = [
        ToolSelection(
            tool_id=block.tool_call_id or _new_call_id(),
            tool_name=block.tool_name,
            tool_kwargs=_decode_arguments(block.tool_kwargs, "tool call"),
        )
        for block in message.blocks
        if isinstance(block, ToolCallBlock)
    ]
    if not selections:
        for call in _legacy_tool_calls(message, "tool call"):
            selections.append(
                ToolSelection(
                    tool_id=call["id"],
                    tool_name=call["function"]["name"],
                    tool_kwargs=call["function"]["arguments"],
                )
            )
    return selections


# --------------------------------------------------------------------------------------------- responses
def convert_usage(usage: Usage) -> dict[str, Any]:
    """Usage in the keys LlamaIndex's token counter reads, plus the engine's own breakdown.

    ``prompt_tokens`` is everything the model read that it did not sample (the shared prompt and the
    headers, tool results and finisher turn the engine fed); ``completion_tokens`` counts every sampled
    token: the workers' (their thinking) and the answer's.
    """
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "answer_tokens": usage.answer_tokens,
        "fed_tokens": usage.fed_tokens,
        "reused_prompt_tokens": usage.reused_prompt_tokens,
        "forwards": usage.forwards,
        "worker_forwards": usage.worker_forwards,
        "wall_time_s": usage.wall_time_s,
    }


def _thinking_block(name: str, text: str, num_tokens: int | None, extra: Mapping[str, Any]) -> ThinkingBlock:
    return ThinkingBlock(
        content=text, num_tokens=num_tokens, additional_information={"worker": name, **extra}
    )


def _tool_call_blocks(calls: Sequence[ToolCallRecord]) -> list[ToolCallBlock]:
    """The engine's returned calls (each with a unique id and decoded arguments) as ``ToolCallBlock``s."""
    return [ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=dict(c.arguments)) for c in calls]


def convert_result(result: RunResult, answer_worker: str | None = None) -> ChatResponse:
    """Convert a finished run to a ``ChatResponse``.

    Args:
        result: The engine's result.
        answer_worker: Name of the worker whose text *is* the answer (runs without a finisher); ``None`` when
            a finisher wrote the answer and every worker's text is thinking.

    Returns:
        A response whose message blocks are one ``ThinkingBlock`` per thinking worker, the answer as a
        ``TextBlock``, and a ``ToolCallBlock`` per returned tool call; ``raw`` holds ``usage``,
        ``stop_reason``, ``finish_reason`` (OpenAI's terms), per-worker details and the executed
        ``tool_events``.

    """
    blocks: list[Any] = [
        _thinking_block(
            w.name, w.text, w.generated_tokens, {"steps": len(w.steps), "stop_reason": w.stop_reason}
        )
        for w in result.workers
        if w.name != answer_worker and w.text
    ]
    blocks.append(TextBlock(text=result.answer))
    blocks.extend(_tool_call_blocks(result.tool_calls))
    raw = {
        "usage": convert_usage(result.usage),
        "stop_reason": result.stop_reason,
        "finish_reason": result.finish_reason,
        "answer_truncated": result.answer_truncated,
        "workers": [
            {
                "name": w.name,
                "generated_tokens": w.generated_tokens,
                "steps": len(w.steps),
                "stop_reason": w.stop_reason,
            }
            for w in result.workers
        ],
        "tool_events": [e.model_dump() for e in result.tool_events],
    }
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks), raw=raw)


class ChatStream:
    """Turns engine events into cumulative streamed ``ChatResponse``s.

    Each response carries the whole message so far plus ``delta`` (new answer text). A worker's new text
    arrives as ``additional_kwargs["thinking_delta"]`` (with ``"worker"``); tool calls the engine reports as
    ``additional_kwargs["tool_event"]``. In plain generation the answer worker's text is the answer, shown
    only up to the opening of a tool call the caller gets back (``RunStartedEvent.call_openers``; the call
    arrives as a ``ToolCallBlock`` instead); a finisher's answer events never hold call markup. The last
    response is built from the final result, so it carries complete ``ToolCallBlock``s and ``raw["usage"]``.

    Args:
        answer_worker: As in :func:`convert_result` (the run's ``RunStartedEvent`` sets it too).

    """

    def __init__(self, answer_worker: str | None = None) -> None:
        self.answer_worker = answer_worker
        self.call_openers: tuple[str, ...] = ()
        self.thinking: dict[str, str] = {}
        self.raw_answer = ""
        self.answer = ""  # the part of raw_answer shown so far

    def _message(self) -> ChatMessage:
        blocks: list[Any] = [_thinking_block(n, t, None, {}) for n, t in self.thinking.items() if t]
        blocks.append(TextBlock(text=self.answer))
        return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks)

    def _visible(self) -> str:
        """The raw answer up to a call's opening, minus a trailing part that may begin one."""
        from hogwild_agents.text.stops import text_before

        return text_before(self.raw_answer, self.call_openers)

    def _answer_delta(self, text: str) -> ChatResponse | None:
        self.raw_answer += text
        visible = self._visible()
        if len(visible) <= len(self.answer):
            return None
        delta, self.answer = visible[len(self.answer) :], visible
        return ChatResponse(message=self._message(), delta=delta)

    def feed(self, event: Any) -> ChatResponse | None:
        """Take one engine event; return the response to yield for it, or ``None`` if it shows nothing."""
        if isinstance(event, RunStartedEvent):
            self.answer_worker = event.answer_worker  # decided by the engine ("auto" collaboration)
            self.call_openers = event.call_openers
            return None
        if isinstance(event, TokenEvent):
            if not event.text:
                return None
            if event.worker == self.answer_worker:
                return self._answer_delta(event.text)
            self.thinking[event.worker] = self.thinking.get(event.worker, "") + event.text
            return ChatResponse(
                message=self._message(),
                delta="",
                additional_kwargs={"thinking_delta": event.text, "worker": event.worker},
            )
        if isinstance(event, AnswerEvent):
            if self.answer_worker is not None or not event.text:
                return None  # without a finisher the answer already streamed as the worker's tokens
            return self._answer_delta(event.text)
        if isinstance(event, ToolCallStartedEvent | ToolCallFinishedEvent):
            info = {
                "type": "tool_call_started"
                if isinstance(event, ToolCallStartedEvent)
                else "tool_call_finished"
            }
            info.update({k: getattr(event, k) for k in event.__slots__})  # type: ignore[attr-defined]
            return ChatResponse(message=self._message(), delta="", additional_kwargs={"tool_event": info})
        if isinstance(event, FinishedEvent):
            final = convert_result(event.result, event.result.answer_worker)
            answer = event.result.answer
            final.delta = answer[len(self.answer) :] if answer.startswith(self.answer) else ""
            self.answer = answer
            return final
        return None
