"""Finding tool calls in generated text: all at once (:func:`parse_tool_calls`) or token by token.

Three forms are accepted, because small models do not always use their template's tags (Qwen2.5-Coder
writes fenced or bare JSON, see shared/reference/models.md):

1. tagged: ``call_prefix {json} call_suffix`` with the wrappers of the model's :class:`ToolFormat`;
2. fenced: a ```` ```json ```` (or bare ```` ``` ````) block whose body is a call or a list of calls;
3. bare: a balanced JSON object ``{"name": ..., "arguments": ...}`` (or a list of them) in prose.

A call is a JSON object whose first key is ``"name"`` and which has ``"arguments"`` (or ``"parameters"``);
the arguments may be a JSON string. Inside tags every body is an attempted call, so bad JSON, unknown
tools and bad arguments are reported. A fenced call-shaped body is reported the same way. Bare JSON
counts only when its name is a known tool, so ordinary JSON in prose never fires.

Bodies are decoded with :meth:`json.JSONDecoder.raw_decode`; the scanner only finds where they end.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .formats import GENERIC_FORMAT, ToolFormat
from .tool import Tool, ToolArgumentsError, ToolCall

_FENCE = "```"
_MAX_CALL_CHARS = 32768  # a bare candidate longer than this is given up (an unclosed brace in prose)
_SCAN, _TAG, _FENCE_INFO, _FENCE_BODY, _FENCE_OTHER, _BARE = range(6)
_DECODER = json.JSONDecoder()


class ToolCallParseError(ValueError):
    """A tool call was written but cannot be used: bad JSON, an unknown tool or invalid arguments."""


class ToolCallDetector:
    """Incremental detector of tool calls in one worker's generated text.

    Feed it each newly sampled piece of text; it returns the calls whose closing delimiter (call suffix,
    closing fence, or the closing brace of a bare call) is in that piece. It keeps its state, so every
    character is examined about once; outside a candidate call the work per piece is a few ``str.find``.

    Example:
        >>> detector = ToolCallDetector(fmt, tools)   # doctest: +SKIP
        >>> for piece in token_texts:                 # doctest: +SKIP
        ...     for call in detector.feed(piece):
        ...         executor.submit(call, tools_by_name.get(call.name))

    """

    def __init__(self, fmt: ToolFormat | None, tools: Sequence[Tool]) -> None:
        """Create a detector.

        Args:
            fmt: The model's tool format (None: the generic ``<tool_call>`` tags).
            tools: The tools the model may call.

        """
        fmt = fmt or GENERIC_FORMAT
        self._open = fmt.call_prefix.strip() or None
        self._close = fmt.call_suffix.strip() or None
        self._tools = {t.name: t for t in tools}
        self._triggers = [t for t in (self._open, _FENCE, "{", "[") if t]
        self._keep = max(len(t) for t in self._triggers) - 1
        self.reset()

    @property
    def in_candidate(self) -> bool:
        """Whether a possible call has started and not closed yet."""
        return self._mode != _SCAN

    def reset(self) -> None:
        """Forget all text fed so far."""
        self._buf = ""  # text from the start of the open candidate (or a short tail in _SCAN)
        self._pos = 0  # next index of _buf to examine
        self._mode = _SCAN
        self._body = 0  # index in _buf where a tag or fence body starts
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._shape_ok = False

    def feed(self, text: str) -> list[ToolCall]:
        """Add newly generated text; return the calls completed by it (usually none)."""
        self._buf += text
        calls: list[ToolCall] = []
        while self._step(calls):
            pass
        return calls

    def _restart(self, at: int) -> None:
        """Drop the open candidate and go back to scanning at ``at``."""
        self._buf = self._buf[at:]
        self._pos = 0
        self._mode = _SCAN

    def _step(self, calls: list[ToolCall]) -> bool:
        """Advance the state machine; return False when it needs more text."""
        buf = self._buf
        if self._mode == _SCAN:
            hits = [(i, t) for t in self._triggers if (i := buf.find(t, self._pos)) >= 0]
            if not hits:
                self._buf = buf[max(len(buf) - self._keep, 0) :]
                self._pos = 0
                return False
            at, trigger = min(hits)
            self._buf, self._pos = buf[at:], len(trigger)
            if trigger == self._open:
                self._mode, self._body = _TAG, len(trigger)
            elif trigger == _FENCE:
                self._mode = _FENCE_INFO
            else:
                self._mode, self._depth, self._in_string, self._escape = _BARE, 0, False, False
                self._shape_ok = False
                self._pos = 0
            return True
        if self._mode == _TAG:
            end = buf.find(self._close, max(self._body, self._pos - len(self._close)))
            if end < 0:
                self._pos = len(buf)
                return False
            calls.extend(_calls_from_body(buf[self._body : end], buf[: end + len(self._close)], self._tools))
            self._restart(end + len(self._close))
            return True
        if self._mode == _FENCE_INFO:
            newline = buf.find("\n", self._pos)
            if newline < 0:
                self._pos = len(buf)
                return False
            info = buf[len(_FENCE) : newline].strip().lower()
            self._mode, self._body, self._pos = (
                (_FENCE_BODY if info in ("", "json") else _FENCE_OTHER),
                newline,
                newline,
            )
            return True
        if self._mode in (_FENCE_BODY, _FENCE_OTHER):
            end = buf.find(_FENCE, max(self._body, self._pos - len(_FENCE)))
            if end < 0:
                self._pos = len(buf)
                return False
            if self._mode == _FENCE_BODY:
                calls.extend(_calls_from_fence(buf[self._body : end], buf[: end + len(_FENCE)], self._tools))
            self._restart(end + len(_FENCE))
            return True
        return self._step_bare(calls)

    def _step_bare(self, calls: list[ToolCall]) -> bool:
        buf = self._buf
        if not self._shape_ok:
            verdict = _call_shape(buf)
            if verdict is False or len(buf) > _MAX_CALL_CHARS:
                self._restart(1)
                return True
            if verdict is None:
                return False
            self._shape_ok = True
        i, depth, in_string, escape = self._pos, self._depth, self._in_string, self._escape
        n = len(buf)
        while i < n:
            ch = buf[i]
            i += 1
            if in_string:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    calls.extend(_calls_from_bare(buf[:i], self._tools))
                    self._restart(i)
                    return True
        self._pos, self._depth, self._in_string, self._escape = i, depth, in_string, escape
        if n > _MAX_CALL_CHARS:
            self._restart(1)
            return True
        return False


def parse_tool_calls(text: str, tools: Sequence[Tool], fmt: ToolFormat | None = None) -> list[ToolCall]:
    """Return every tool call in ``text``, in order of appearance.

    Args:
        text: Generated text.
        tools: The tools the model may call.
        fmt: The model's tool format (None: the generic ``<tool_call>`` tags).

    Returns:
        The calls, with validated names and arguments.

    Raises:
        ToolCallParseError: A call is malformed; the message says what is wrong.

    """
    calls = ToolCallDetector(fmt, tools).feed(text)
    for call in calls:
        if call.error is not None:
            raise ToolCallParseError(call.error)
    return calls


def _call_shape(buf: str) -> bool | None:
    """Whether ``buf`` (starting at ``{`` or ``[``) can start a call: True, False, or None (undecided)."""
    rest = buf[1:].lstrip()
    if buf[0] == "[":
        if not rest:
            return None
        if rest[0] != "{":
            return False
        rest = rest[1:].lstrip()
    head = rest[:6]
    if head == '"name"':
        return True
    return None if '"name"'.startswith(head) else False


def _calls_from_body(body: str, span: str, tools: dict[str, Tool]) -> list[ToolCall]:
    """Decode the body of a tag: every body is an attempted call."""
    try:
        obj = _decode_whole(body)
    except ValueError as e:
        return [ToolCall(name="", arguments={}, text=span, error=f"could not parse tool call JSON: {e}")]
    items = obj if isinstance(obj, list) else [obj]
    return [_to_call(item, span, tools) for item in items]


def _calls_from_fence(body: str, span: str, tools: dict[str, Tool]) -> list[ToolCall]:
    """Decode a ```json block: only call-shaped bodies count."""
    try:
        obj = _decode_whole(body)
    except ValueError as e:
        if '"name"' in body and ('"arguments"' in body or '"parameters"' in body):
            return [ToolCall(name="", arguments={}, text=span, error=f"could not parse tool call JSON: {e}")]
        return []
    items = obj if isinstance(obj, list) else [obj]
    if not items or not all(_is_call_dict(item) for item in items):
        return []
    return [_to_call(item, span, tools) for item in items]


def _calls_from_bare(span: str, tools: dict[str, Tool]) -> list[ToolCall]:
    """Decode a balanced bare object or array: only calls of known tools count."""
    try:
        obj, _ = _DECODER.raw_decode(span)
    except ValueError:
        return []
    items = obj if isinstance(obj, list) else [obj]
    if not items or not all(_is_call_dict(item) and item["name"] in tools for item in items):
        return []
    return [_to_call(item, span, tools) for item in items]


def _decode_whole(body: str) -> Any:
    body = body.strip()
    obj, end = _DECODER.raw_decode(body)
    if body[end:].strip():
        raise ValueError(f"unexpected text after the JSON: {body[end:].strip()[:40]!r}")
    return obj


def _is_call_dict(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and ("arguments" in item or "parameters" in item)
    )


def _to_call(item: Any, span: str, tools: dict[str, Tool]) -> ToolCall:
    """Turn one decoded JSON value into a ToolCall, recording what is wrong with it in ``error``."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return ToolCall(name="", arguments={}, text=span, error='a tool call needs a string "name"')
    name = item["name"]
    args: Any = item.get("arguments", item.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as e:
            return ToolCall(name, {}, span, error=f"arguments of tool {name!r} are not valid JSON: {e}")
    if not isinstance(args, dict):
        return ToolCall(name, {}, span, error=f"arguments of tool {name!r} must be an object, got {args!r}")
    tool = tools.get(name)
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        return ToolCall(name, args, span, error=f"unknown tool {name!r}; available tools: {known}")
    try:
        tool.validate_arguments(args)
    except ToolArgumentsError as e:
        return ToolCall(name, args, span, error=str(e))
    return ToolCall(name, args, span)
