"""Deriving a tool's argument schema from a typed Python signature and a Google-style docstring."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import pydantic
from pydantic import BaseModel, Field

_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else")


def arguments_model(fn: Callable[..., Any], arg_docs: dict[str, str]) -> type[BaseModel]:
    """Build a pydantic model whose fields are ``fn``'s parameters."""
    try:
        signature = inspect.signature(fn)
        hints = _parameter_hints(fn)
    except (TypeError, ValueError, NameError) as e:
        raise TypeError(f"cannot read the signature of {fn!r}: {e}") from e
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool function {fn!r} has variadic parameter {param.name!r}; name each one")
        if param.name not in hints:
            raise TypeError(
                f"parameter {param.name!r} of {getattr(fn, '__name__', fn)!r} has no type annotation; "
                "annotate it (e.g. `city: str`) so the tool's JSON schema can be derived"
            )
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hints[param.name], Field(default, description=arg_docs.get(param.name)))
    model_name = f"{getattr(fn, '__name__', 'tool')}_arguments".replace("<", "").replace(">", "")
    return pydantic.create_model(model_name, **fields)


def _parameter_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Evaluate the parameter annotations of ``fn`` (not its return annotation, which may be unresolvable)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    target = inspect.unwrap(fn if inspect.isroutine(fn) else type(fn).__call__)
    annotations = dict(getattr(target, "__annotations__", None) or {})
    annotations.pop("return", None)
    stub = types.SimpleNamespace(__annotations__=annotations, __globals__=getattr(target, "__globals__", {}))
    local_ns = inspect.getclosurevars(target).nonlocals if inspect.isfunction(target) else None
    return typing.get_type_hints(stub, localns=local_ns, include_extras=True)


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its first paragraph and its ``Args:`` descriptions."""
    summary = doc.split("\n\n", 1)[0].strip().replace("\n", " ") if doc else ""
    args: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:"))
    except StopIteration:
        return summary, args
    indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent:
            break  # the next section
        text = line.strip()
        if width == indent and ":" in text:
            head, _, rest = text.partition(":")
            current = head.split("(")[0].strip()
            args[current] = rest.strip()
        elif current is not None:
            args[current] = f"{args[current]} {text}".strip()
    return summary, args


def clean_schema(schema: Any) -> Any:
    """Drop pydantic's auto-generated ``title`` keywords (they only cost prompt tokens)."""
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if not (k == "title" and isinstance(v, str))}
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: clean_schema(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [clean_schema(sub) for sub in out[key]]
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = clean_schema(out[key])
    return out
