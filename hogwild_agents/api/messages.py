"""Chat messages: one normal form, validated before any work starts (used by every front end).

A request is a string (one user message) or a list of ``{"role", "content", ...}`` dicts in the OpenAI /
Hugging Face shape. :func:`normalize_messages` returns fresh dicts in which

- ``content`` is a string: text parts (``{"type": "text", "text": ...}``) are joined, ``None`` is ``""``;
  any other type is refused, naming it (a Python set is not silently rendered as ``<set>``);
- assistant ``tool_calls`` are ``{"id", "type": "function", "function": {"name", "arguments": dict}}``:
  arguments given as a JSON string are decoded (invalid JSON is refused), missing ids are minted;
- a ``tool`` message's ``tool_call_id`` names a call of an earlier assistant message (refused otherwise),
  and its ``name`` is filled from that call when absent.

Text that cannot be encoded (lone surrogates) is refused here too, so no forward ever sees it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from .errors import InvalidRequestError

__all__ = ["ROLES", "Messages", "check_text", "new_call_id", "normalize_messages"]

Messages = str | Sequence[dict[str, Any]]
"""What the engine's ``run``/``stream`` accept as a request."""

ROLES = frozenset({"system", "user", "assistant", "tool"})


def new_call_id() -> str:
    """A fresh tool-call id (``call_`` and 24 hex digits), unique across processes."""
    return f"call_{uuid.uuid4().hex[:24]}"


def check_text(text: str, where: str) -> str:
    """Return ``text`` if it can be encoded as UTF-8; raise :class:`InvalidRequestError` naming ``where``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidRequestError(
            f"{where} holds text that is not valid Unicode ({e.reason} at index {e.start}: a lone surrogate "
            "such as '\\ud800'); send well-formed UTF-8 text"
        ) from None
    return text


def _content_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return check_text(content, where)
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        pieces = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                pieces.append(part)
            elif (
                isinstance(part, dict)
                and part.get("type", "text") == "text"
                and isinstance(part.get("text"), str)
            ):
                pieces.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequestError(
                    f"{where} part {j} is of type {kind!r}; only text parts are supported "
                    "({'type': 'text', 'text': ...} or plain strings)"
                )
        return check_text("".join(pieces), where)
    raise InvalidRequestError(
        f"{where} content must be a string, a list of text parts or None, got {type(content).__name__}"
    )


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InvalidRequestError(
                f"{where} arguments are not valid JSON ({e.msg} at {e.pos}): {raw[:80]!r}"
            ) from e
    if not isinstance(raw, dict):
        raise InvalidRequestError(f"{where} arguments must be a JSON object, got {type(raw).__name__}")
    check_text(json.dumps(raw, ensure_ascii=False, default=str), f"{where} arguments")
    return raw


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)):
        raise InvalidRequestError(f"{where} tool_calls must be a list, got {type(calls).__name__}")
    out = []
    for j, call in enumerate(calls):
        at = f"{where} tool call {j}"
        if not isinstance(call, dict):
            raise InvalidRequestError(f"{at} must be a dict, got {type(call).__name__}")
        function = call.get("function", call)
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise InvalidRequestError(
                f"{at} needs a function name: {{'function': {{'name': ..., 'arguments': ...}}}}"
            )
        call_id = call.get("id") or new_call_id()
        if not isinstance(call_id, str):
            raise InvalidRequestError(f"{at} id must be a string, got {type(call_id).__name__}")
        args = _arguments(function.get("arguments"), at)
        out.append(
            {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": args}}
        )
    return out


def normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """Validate a request and return it in the normal form described in the module docstring.

    Raises:
        InvalidRequestError: naming the first problem (empty request, unknown role, bad content type, a
            tool result for an unknown call, tool-call arguments that are not JSON, invalid text).

    """
    if isinstance(messages, str):
        if not messages.strip():
            raise InvalidRequestError("the request is empty: pass a non-empty string or list of messages")
        return [{"role": "user", "content": check_text(messages, "the request")}]
    if not isinstance(messages, Sequence) or not messages:
        raise InvalidRequestError(
            "messages must be a non-empty string or a non-empty list of {'role': ..., 'content': ...} dicts"
        )
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise InvalidRequestError(f"message {i} must be a dict with a 'role' key, got {message!r:.80}")
        role = message["role"]
        if role not in ROLES:
            raise InvalidRequestError(f"message {i} has role {role!r}; allowed roles are {sorted(ROLES)}")
        where = f"message {i} ({role})"
        entry = dict(message)
        entry["content"] = _content_text(message.get("content"), where)
        if message.get("tool_calls"):
            if role != "assistant":
                raise InvalidRequestError(f"{where} has tool_calls; only assistant messages may")
            entry["tool_calls"] = _tool_calls(message["tool_calls"], where)
            call_names.update({c["id"]: c["function"]["name"] for c in entry["tool_calls"]})
        else:
            entry.pop("tool_calls", None)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id is not None:
                if call_id not in call_names:
                    known = ", ".join(sorted(call_names)) or "none"
                    raise InvalidRequestError(
                        f"{where} answers tool_call_id {call_id!r}, which no earlier assistant message "
                        f"called (calls so far: {known})"
                    )
                entry.setdefault("name", call_names[call_id])
        out.append(entry)
    return out
