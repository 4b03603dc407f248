r"""Tool call and tool result formats, derived by rendering the model's own chat template.

Nothing here is hard-coded per model family. :meth:`ToolFormat.from_tokenizer` renders small conversations
whose tool name, arguments and result are sentinels, then reads the text around the sentinels:

* ``call_prefix``/``call_suffix``: what wraps the JSON of an assistant tool call, e.g. ``"<tool_call>\n"``
  and ``"\n</tool_call>"`` for Qwen2.5.
* ``result_prefix``/``result_suffix``: what the template writes after a call's suffix, around a tool
  result, up to the next assistant generation prompt, e.g.
  ``"<|im_end|>\n<|im_start|>user\n<tool_response>\n"`` and
  ``"\n</tool_response><|im_end|>\n<|im_start|>assistant\n"``.
* ``inline_prefix``/``inline_suffix``: the innermost result wrapper without turn markers, e.g.
  ``"<tool_response>\n"`` and ``"\n</tool_response>"``.

When each result text is used:

* :meth:`ToolFormat.render_result_block` (turn markers included) when the call ends the assistant turn, as in
  an ordinary chat: a single worker without collaboration, or the finisher turn.
* :meth:`ToolFormat.inline_result_text` when the call is inside a worker's step of a multi-worker run: the
  result becomes a block the caller's step continues from, visible to all workers, and turn markers there
  would break the one shared assistant turn.

Templates that ignore ``tools`` (plain ChatML, SmolLM2) get the generic fallback :data:`GENERIC_FORMAT`
(``<tool_call>``/``<tool_response>`` tags, ``native=False``); :func:`render_prompt_with_tools` then adds
the tool definitions to the system message itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .tool import Tool, ToolCall, ToolOutcome

logger = logging.getLogger(__name__)

SENTINEL_NAME = "hogwild_sentinel_tool"
_SENTINEL_ARGS = {"hogwild_sentinel_arg": "hogwild_sentinel_value"}
_SENTINEL_RESULT = "HOGWILD_SENTINEL_RESULT_7f3a"
_SENTINEL_RESULT_2 = "HOGWILD_SENTINEL_RESULT_9c1e"
_SENTINEL_TEXT = "HOGWILD_SENTINEL_TEXT_42b8"
_USER = [{"role": "user", "content": "hogwild sentinel question"}]
_SENTINEL_TOOL = {
    "type": "function",
    "function": {
        "name": SENTINEL_NAME,
        "description": "sentinel",
        "parameters": {"type": "object", "properties": {"hogwild_sentinel_arg": {"type": "string"}}},
    },
}
_GENERIC_INSTRUCTIONS = (
    "You may call one or more functions to assist with the user query. The functions are:\n{tools}\n"
    "To call a function, write a JSON object with the function name and arguments inside tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


class ChatTemplateError(ValueError):
    """The tokenizer has no chat template, or it renders conversations in a way we cannot read."""


@dataclass(frozen=True, slots=True)
class ToolFormat:
    """How one model writes tool calls and reads tool results (see the module docstring)."""

    call_prefix: str
    """Text before the JSON of a call, e.g. ``<tool_call>`` and a newline."""
    call_suffix: str
    """Text after the JSON of a call, e.g. a newline and ``</tool_call>``."""
    result_prefix: str
    """Text from the end of a call's suffix to the result content (closes the assistant turn)."""
    result_suffix: str
    """Text after the result content, through the next assistant generation prompt."""
    inline_prefix: str
    """Innermost result opener without turn markers, e.g. ``<tool_response>`` and a newline."""
    inline_suffix: str
    """Innermost result closer without turn markers, e.g. a newline and ``</tool_response>``."""
    native: bool = True
    """Whether the wrappers come from the model's template (False: the generic fallback)."""

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> ToolFormat:
        """Derive the format by rendering the tokenizer's chat template with sentinels.

        Args:
            tokenizer: A Hugging Face tokenizer with a chat template.

        Returns:
            The derived format, or :data:`GENERIC_FORMAT` when the template does not support tools.

        Raises:
            ChatTemplateError: The tokenizer has no chat template.

        """
        if not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError(
                f"{type(tokenizer).__name__} has no chat template; tool calling needs one (set "
                "tokenizer.chat_template to the model's template)"
            )
        with_tools = _render(tokenizer, _USER, tools=[_SENTINEL_TOOL], add_generation_prompt=True)
        if SENTINEL_NAME not in with_tools:
            logger.info("chat template ignores `tools`; using the generic <tool_call> format")
            return GENERIC_FORMAT
        try:
            return _derive(tokenizer)
        except Exception as e:  # any template error means: not usable natively
            logger.warning("cannot derive the tool format from the chat template (%s); using the generic", e)
            return GENERIC_FORMAT

    def render_call_text(self, call: ToolCall) -> str:
        """Return the text of ``call`` as the model would write it (prefix, JSON, suffix)."""
        body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
        return f"{self.call_prefix}{body}{self.call_suffix}"

    def render_result_block(self, outcome: ToolOutcome) -> str:
        """Return the text written after a call that ends the assistant turn (turn markers included)."""
        return f"{self.result_prefix}{outcome.content}{self.result_suffix}"

    def inline_result_text(self, outcome: ToolOutcome) -> str:
        """Return the result text written inside a worker's step (innermost wrapper, then a blank line)."""
        return f"{self.inline_prefix}{outcome.content}{self.inline_suffix}\n\n"

    def result_block_pieces(self, outcome: ToolOutcome) -> list[tuple[str, bool]]:
        """:meth:`render_result_block` as ``(text, untrusted)`` pieces: the content is untrusted."""
        return [(self.result_prefix, False), (outcome.content, True), (self.result_suffix, False)]

    def inline_result_pieces(self, outcome: ToolOutcome) -> list[tuple[str, bool]]:
        """:meth:`inline_result_text` as ``(text, untrusted)`` pieces: the content is untrusted."""
        return [(self.inline_prefix, False), (outcome.content, True), (self.inline_suffix + "\n\n", False)]


GENERIC_FORMAT = ToolFormat(
    call_prefix="<tool_call>\n",
    call_suffix="\n</tool_call>",
    result_prefix="\n<tool_response>\n",
    result_suffix="\n</tool_response>\n",
    inline_prefix="<tool_response>\n",
    inline_suffix="\n</tool_response>",
    native=False,
)
"""Fallback for templates without tool support: Hermes-style tags, results written inline."""


def render_prompt_with_tools(
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[Tool | dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
) -> str:
    """Render a prompt whose system text lists the tools, as the model's template does it.

    For a template that ignores ``tools``, the generic instructions (matching :data:`GENERIC_FORMAT`) are
    prepended to the system message (one is created when there is none).

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template.
        messages: Chat messages (``{"role": ..., "content": ...}``).
        tools: :class:`Tool` objects or OpenAI-style tool dicts.
        add_generation_prompt: Whether to end with the assistant generation prompt.

    Returns:
        The prompt text.

    """
    schemas = [t.to_openai_schema() if isinstance(t, Tool) else t for t in tools]
    if not schemas:
        return _render(tokenizer, list(messages), add_generation_prompt=add_generation_prompt)
    if ToolFormat.from_tokenizer(tokenizer).native:
        return _render(tokenizer, list(messages), tools=schemas, add_generation_prompt=add_generation_prompt)
    listing = "\n".join(json.dumps(s, ensure_ascii=False) for s in schemas)
    note = _GENERIC_INSTRUCTIONS.format(tools=listing)
    msgs = [dict(m) for m in messages]
    if msgs and msgs[0].get("role") == "system":
        msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{note}".lstrip()
    else:
        msgs.insert(0, {"role": "system", "content": note})
    return _render(tokenizer, msgs, add_generation_prompt=add_generation_prompt)


def _render(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    if not isinstance(text, str):
        raise ChatTemplateError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def _call_message(n_calls: int = 1) -> dict[str, Any]:
    call = {"type": "function", "function": {"name": SENTINEL_NAME, "arguments": dict(_SENTINEL_ARGS)}}
    return {"role": "assistant", "content": "", "tool_calls": [call] * n_calls}


def _find_call_json(text: str, start: int) -> tuple[int, int]:
    """Return the span of the JSON object that holds the sentinel call, searching from ``start``."""
    anchor = text.find(SENTINEL_NAME, start)
    if anchor < 0:
        raise ChatTemplateError("the template does not render assistant tool_calls")
    decoder = json.JSONDecoder()
    pos = text.rfind("{", start, anchor)
    while pos >= start:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            obj, end = None, -1
        if isinstance(obj, dict) and end > anchor and obj.get("name") == SENTINEL_NAME:
            if obj.get("arguments") not in (_SENTINEL_ARGS, json.dumps(_SENTINEL_ARGS)):
                raise ChatTemplateError(f"unexpected call JSON in template output: {obj}")
            return pos, end
        pos = text.rfind("{", start, pos)
    raise ChatTemplateError('the template does not write calls as {"name": ..., "arguments": ...} JSON')


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _derive(tokenizer: Any) -> ToolFormat:
    plain = _render(tokenizer, [*_USER, {"role": "assistant", "content": _SENTINEL_TEXT}])
    end_of_turn = plain[plain.index(_SENTINEL_TEXT) + len(_SENTINEL_TEXT) :]
    called = _render(tokenizer, [*_USER, _call_message()])
    turn_start = _common_prefix_len(plain, called)
    json_start, json_end = _find_call_json(called, turn_start)
    if not called.endswith(end_of_turn):
        raise ChatTemplateError("the assistant turn with a tool call ends differently from a plain one")
    call_prefix = called[turn_start:json_start]
    call_suffix = called[json_end : len(called) - len(end_of_turn)]
    answered = _render(
        tokenizer,
        [*_USER, _call_message(), {"role": "tool", "name": SENTINEL_NAME, "content": _SENTINEL_RESULT}],
        add_generation_prompt=True,
    )
    after_call = json_end + len(call_suffix)
    if answered[:after_call] != called[:after_call] or _SENTINEL_RESULT not in answered:
        raise ChatTemplateError("the template renders tool results in a way we cannot locate")
    res_at = answered.index(_SENTINEL_RESULT)
    fmt = ToolFormat(
        call_prefix=call_prefix,
        call_suffix=call_suffix,
        result_prefix=answered[after_call:res_at],
        result_suffix=answered[res_at + len(_SENTINEL_RESULT) :],
        inline_prefix="",
        inline_suffix="",
    )
    return _derive_inline(tokenizer, fmt)


def _derive_inline(tokenizer: Any, fmt: ToolFormat) -> ToolFormat:
    """Find the innermost result wrapper from two consecutive tool messages.

    Between two results the template writes ``inner_suffix + inner_prefix`` with no turn markers; the
    inner suffix is what that gap shares with the start of ``result_suffix``, the inner prefix what it
    shares with the end of ``result_prefix``.
    """
    results = [
        {"role": "tool", "name": SENTINEL_NAME, "content": _SENTINEL_RESULT},
        {"role": "tool", "name": SENTINEL_NAME, "content": _SENTINEL_RESULT_2},
    ]
    text = _render(tokenizer, [*_USER, _call_message(2), *results], add_generation_prompt=True)
    first = text.index(_SENTINEL_RESULT) + len(_SENTINEL_RESULT)
    gap = text[first : text.index(_SENTINEL_RESULT_2)]
    suffix = gap[: _common_prefix_len(gap, fmt.result_suffix)]
    prefix_len = _common_prefix_len(gap[::-1], fmt.result_prefix[::-1])
    prefix = gap[len(gap) - prefix_len :] if prefix_len else ""
    if not prefix or not suffix or len(prefix) + len(suffix) > len(gap):
        raise ChatTemplateError(f"cannot split the gap between two tool results: {gap!r}")
    return replace(fmt, inline_prefix=prefix.lstrip(), inline_suffix=suffix.rstrip())
