"""Tools as the front ends hand them over, and the tool options of a request: one place for all of them.

Integrations (LangChain, LlamaIndex, the server) convert their framework's tools to OpenAI function
schemas or :class:`Tool` objects; :func:`tools_from_specs` turns those into :class:`Tool` objects and
:func:`check_tool_choice` validates ``tool_choice`` against them, so every front end refuses the same
requests with the same message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jsonschema

from ..api.errors import InvalidRequestError
from .tool import Tool, dangling_refs

__all__ = [
    "FORCING_CHOICES",
    "check_response_format",
    "check_tool_choice",
    "finisher_may_call",
    "grammar_error",
    "tools_from_specs",
]

FORCING_CHOICES = ("required", "any")
"""``tool_choice`` keywords that force a call of any tool (a tool's name forces that tool)."""
_KEYWORDS = ("auto", "none", *FORCING_CHOICES)


def tools_from_specs(tools: Sequence[Any] | None, mode: str) -> list[Tool]:
    """Accept :class:`Tool` objects or OpenAI function schemas; execute mode needs callables.

    Raises:
        InvalidRequestError: a tool is neither, has no name, names repeat, or (execute mode) a tool has
            no callable.
    """
    out: list[Tool] = []
    for i, tool in enumerate(tools or []):
        if isinstance(tool, Tool):
            out.append(tool)
        elif isinstance(tool, dict) and isinstance(tool.get("function", tool), dict):
            spec = tool.get("function", tool)
            if "name" not in spec:
                raise InvalidRequestError(f"tool {i} has no 'name': {json.dumps(tool, default=str)[:120]}")
            try:
                out.append(
                    Tool(
                        name=spec["name"],
                        description=spec.get("description") or "",
                        parameters=spec.get("parameters") or {"type": "object", "properties": {}},
                    )
                )
            except (ValueError, jsonschema.SchemaError) as e:  # both say what is wrong with the schema
                raise InvalidRequestError(f"tool {i} ({spec.get('name')!r}) is invalid: {e}") from e
        else:
            raise InvalidRequestError(
                f"tool {i} must be a hogwild_agents.Tool or an OpenAI function schema dict, "
                f"got {type(tool).__name__}"
            )
    for tool in out:  # descriptions and schemas are written into the prompt: they must be valid text
        try:
            json.dumps(tool.to_openai_schema(), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError(
                f"tool {tool.name!r} holds text that is not valid Unicode (a lone surrogate); send "
                "well-formed UTF-8 text"
            ) from None
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"tool names must be unique, got {names}")
    if mode == "execute":
        missing = [t.name for t in out if t.func is None]
        if missing:
            raise InvalidRequestError(
                f"tool_mode='execute' needs callables, but {missing} have none; pass Tool objects "
                "with func=, or use tool_mode='return' to get the calls back"
            )
    return out


def check_tool_choice(choice: str, tools: Sequence[Tool]) -> str:
    """Validate ``tool_choice`` for ``tools``; return it.

    Raises:
        InvalidRequestError: the choice forces a call but no tool is given, or names no given tool.
    """
    names = sorted(t.name for t in tools)
    if choice in ("auto", "none"):
        return choice
    if not tools:
        raise InvalidRequestError(
            f"tool_choice {choice!r} forces a tool call, but the request has no tools; pass tools or use "
            "tool_choice='auto'"
        )
    if choice not in FORCING_CHOICES and choice not in names:
        raise InvalidRequestError(
            f"tool_choice {choice!r} is not one of {', '.join(map(repr, _KEYWORDS))} or a tool name "
            f"({', '.join(names)})"
        )
    return choice


def finisher_may_call(tools: Sequence[Tool], tool_mode: str, tool_choice: str) -> bool:
    """Whether the finisher may answer with tool calls: tools bound, returned to the caller, not 'none'."""
    return bool(tools) and tool_mode == "return" and tool_choice != "none"


def check_response_format(schema: Any) -> dict[str, Any]:
    """Validate a ``response_format`` JSON schema (meta-schema and local ``$ref`` targets); return it.

    Raises:
        InvalidRequestError: naming what is wrong (the grammar compiler's own check follows in the engine).
    """
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"response_format must be a JSON schema dict, got {type(schema).__name__}")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(map(str, e.path)) or "(root)"
        raise InvalidRequestError(
            f"response_format is not a valid JSON schema at {where}: {e.message}"
        ) from e
    dangling = dangling_refs(schema)
    if dangling:
        raise InvalidRequestError(
            f"response_format has $ref(s) pointing at nothing in the schema: {', '.join(dangling)}; define "
            "them under $defs (or inline them)"
        )
    return schema


def grammar_error(what: str, error: Exception) -> InvalidRequestError:
    """The grammar compiler's refusal of ``what`` as a request error (its log prefix dropped)."""
    import re

    text = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", str(error).strip().splitlines()[-1] if str(error) else "")
    return InvalidRequestError(
        f"{what} cannot be enforced by constrained decoding: {text or type(error).__name__}"
    )
