"""Tool definitions: a callable plus the JSON schema of its arguments, and the records of one call.

A :class:`Tool` is what callers hand to the engine. It is usually built from a typed function::

    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
        # docstring: "Return the weather." plus an "Args:" section describing city and unit
        ...

    tool = Tool.from_function(get_weather)
    tool.to_openai_schema()   # {"type": "function", "function": {"name": "get_weather", ...}}

:class:`ToolCall` (what a worker wrote) and :class:`ToolOutcome` (what the tool returned, as text for the
cache) are plain dataclasses: they live on the hot path.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ._signature import arguments_model, clean_schema, parse_docstring

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def dangling_refs(schema: Any) -> list[str]:
    """Local ``$ref`` pointers (``#/...``) of ``schema`` that resolve to nothing in it, in order.

    Remote refs (``http://...``) are dangling too: nothing is fetched, so they cannot be resolved.
    """
    found: list[str] = []

    def resolve(ref: str) -> bool:
        if not ref.startswith("#"):
            return False
        node: Any = schema
        for raw in filter(None, ref[1:].split("/")):
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return False
        return True

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not resolve(ref) and ref not in found:
                found.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


class ToolArgumentsError(ValueError):
    """The arguments of a tool call do not match the tool's JSON schema.

    Attributes:
        tool_name: Name of the tool whose schema rejected the arguments.
        field: JSON path of the offending field ("$" for the arguments object itself).

    """

    def __init__(self, message: str, *, tool_name: str, field: str) -> None:
        super().__init__(message)
        self.tool_name = tool_name
        self.field = field


@dataclass(slots=True)
class ToolCall:
    """One tool call written by a worker.

    Attributes:
        name: Name of the called tool (may be unknown; the executor then answers with an error).
        arguments: Decoded arguments object.
        text: The raw text span the call was parsed from (delimiters included).
        id: Unique id, ``call_<hex>``.
        error: Why the call is malformed (bad JSON, unknown tool, schema mismatch), or None. A call with an
            error is never run; the executor turns the error into the result text the model sees.

    """

    name: str
    arguments: dict[str, Any]
    text: str = ""
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")
    error: str | None = None


@dataclass(slots=True)
class ToolOutcome:
    """The result of one call, already rendered as the text that goes into the shared cache.

    Attributes:
        call: The call this answers.
        content: Result text (or an ``Error: ...`` text when ``is_error``).
        is_error: Whether the tool raised, timed out, was unknown, got bad arguments or returned junk.
        duration_s: Wall time from the start of the run to the outcome.
        truncated: Whether the content was cut to the token limit.

    """

    call: ToolCall
    content: str
    is_error: bool = False
    duration_s: float = 0.0
    truncated: bool = False


class Tool(BaseModel):
    """A function the model may call, with the JSON schema of its arguments."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str = Field(description="Name the model calls the tool by: 1-64 of [A-Za-z0-9_-].")
    description: str = Field(default="", description="What the tool does, shown to the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments object.",
    )
    func: Callable[..., Any] | None = Field(
        default=None,
        exclude=True,
        description="Sync or async callable run with **arguments; None for a schema-only tool (return mode).",
    )
    timeout_s: float | None = Field(default=None, gt=0, description="Per-call timeout; None for no limit.")

    _validator: Any = PrivateAttr(default=None)
    _args_model: type[BaseModel] | None = PrivateAttr(default=None)

    @pydantic.field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"invalid tool name {value!r}: use 1-64 characters from [A-Za-z0-9_-] "
                "(pass name=... to Tool.from_function for lambdas and partials)"
            )
        return value

    @pydantic.field_validator("func", mode="before")
    @classmethod
    def _check_func(cls, value: Any) -> Any:
        if value is not None and not callable(value):
            raise TypeError(f"Tool.func must be callable, got {type(value).__name__}")
        return value

    @pydantic.field_validator("parameters")
    @classmethod
    def _check_parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object":
            raise ValueError(f"tool parameters must be an object schema, got type {value.get('type')!r}")
        jsonschema.Draft202012Validator.check_schema(value)
        dangling = dangling_refs(value)
        if dangling:
            raise ValueError(
                f"tool parameters have $ref(s) pointing at nothing in the schema: {', '.join(dangling)}; "
                "define them under $defs (or inline them)"
            )
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Build the argument validator once."""
        self._validator = jsonschema.Draft202012Validator(self.parameters)

    @property
    def is_async(self) -> bool:
        """Whether calling ``func`` returns an awaitable (``async def`` functions and callables)."""
        if self.func is None:
            return False
        call = getattr(self.func, "__call__", None)  # noqa: B004 - async __call__ of callable objects
        return inspect.iscoroutinefunction(self.func) or inspect.iscoroutinefunction(call)

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None, **kwargs: Any
    ) -> Tool:
        """Build a tool from a typed function; the schema comes from its signature via pydantic.

        Args:
            fn: Sync or async function. Every parameter needs a type annotation; ``*args``/``**kwargs``
                are not allowed. Google-style ``Args:`` docstring lines become parameter descriptions.
            name: Tool name; defaults to ``fn.__name__``.
            description: Tool description; defaults to the first paragraph of the docstring.
            **kwargs: Other :class:`Tool` fields, e.g. ``timeout_s``.

        Returns:
            The tool.

        Raises:
            TypeError: ``fn`` is not callable, has an untyped or variadic parameter.
            ValueError: The name is invalid.

        """
        if not callable(fn):
            raise TypeError(f"Tool.from_function needs a callable, got {type(fn).__name__}")
        name = name or getattr(fn, "__name__", "")
        cls._check_name(name)
        summary, arg_docs = parse_docstring(inspect.getdoc(fn) or "")
        args_model = arguments_model(fn, arg_docs)
        tool = cls(
            name=name,
            description=summary if description is None else description,
            parameters=clean_schema(args_model.model_json_schema()),
            func=fn,
            **kwargs,
        )
        tool._args_model = args_model
        return tool

    def to_openai_schema(self) -> dict[str, Any]:
        """Return the OpenAI/chat-template tool definition ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate_arguments(self, args: dict[str, Any]) -> None:
        """Check an arguments object against the schema.

        Args:
            args: Decoded arguments.

        Raises:
            ToolArgumentsError: The arguments do not match; the message names the field.

        """
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(args))
        if error is None:
            return
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        if error.validator == "required":
            missing = next((r for r in error.validator_value if r not in (error.instance or {})), None)
            path = f"{path}.{missing}" if missing else path
        raise ToolArgumentsError(
            f"invalid arguments for tool {self.name!r}: field '{path}': {error.message}",
            tool_name=self.name,
            field=path,
        )

    def prepare_arguments(self, args: dict[str, Any]) -> dict[str, Any]:
        """Validate ``args`` and convert them to the Python values ``func`` expects (models, enums, ...).

        Raises:
            ToolArgumentsError: The arguments do not match the schema.

        """
        self.validate_arguments(args)
        if self._args_model is None:
            return dict(args)
        try:
            parsed = self._args_model.model_validate(args)
        except pydantic.ValidationError as e:
            loc = ".".join(str(p) for p in e.errors()[0]["loc"])
            raise ToolArgumentsError(
                f"invalid arguments for tool {self.name!r}: field '$.{loc}': {e.errors()[0]['msg']}",
                tool_name=self.name,
                field=f"$.{loc}",
            ) from e
        return {k: getattr(parsed, k) for k in type(parsed).model_fields}
