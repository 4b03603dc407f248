"""Tool.from_function schemas, argument validation and definition errors."""

from __future__ import annotations

import enum
from typing import Literal

import pytest
from pydantic import BaseModel

from hogwild_agents.tools import Tool, ToolArgumentsError


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius", days: int = 1) -> str:
    """Return the weather forecast for a city.

    Longer explanation that is not part of the description.

    Args:
        city: Name of the city,
            e.g. "Paris".
        unit (str): Temperature unit.
        days: Number of days.

    Returns:
        The forecast.
    """
    return f"{city}: sunny"


class Point(BaseModel):
    x: float
    y: float


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_schema_types_defaults_and_docstring():
    tool = Tool.from_function(get_weather)
    assert tool.name == "get_weather"
    assert tool.description == "Return the weather forecast for a city."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": 'Name of the city, e.g. "Paris".'},
            "unit": {
                "type": "string",
                "enum": ["celsius", "fahrenheit"],
                "default": "celsius",
                "description": "Temperature unit.",
            },
            "days": {"type": "integer", "default": 1, "description": "Number of days."},
        },
        "required": ["city"],
    }


def test_openai_schema_and_func_not_serialized():
    tool = Tool.from_function(get_weather, name="weather", description="Weather.", timeout_s=3)
    assert tool.to_openai_schema() == {
        "type": "function",
        "function": {"name": "weather", "description": "Weather.", "parameters": tool.parameters},
    }
    dumped = tool.model_dump()
    assert "func" not in dumped and dumped["timeout_s"] == 3


def test_async_function_and_nested_models():
    async def place(p: Point, color: Color, tags: list[str] | None = None) -> dict:
        """Place a point."""
        return {}

    tool = Tool.from_function(place)
    assert tool.is_async
    assert tool.parameters["required"] == ["p", "color"]
    assert tool.parameters["properties"]["p"] == {"$ref": "#/$defs/Point"}
    assert set(tool.parameters["$defs"]) == {"Point", "Color"}
    kwargs = tool.prepare_arguments({"p": {"x": 1, "y": 2}, "color": "red"})
    assert kwargs["p"] == Point(x=1, y=2) and kwargs["color"] is Color.RED and kwargs["tags"] is None


@pytest.mark.parametrize(
    ("args", "field", "words"),
    [
        ({}, "$.city", "required"),
        ({"city": 3}, "$.city", "not of type 'string'"),
        ({"city": "Oslo", "unit": "kelvin"}, "$.unit", "is not one of"),
        ({"city": "Oslo", "days": "2"}, "$.days", "not of type 'integer'"),
    ],
)
def test_validation_errors_name_the_field(args, field, words):
    tool = Tool.from_function(get_weather)
    with pytest.raises(ToolArgumentsError) as info:
        tool.validate_arguments(args)
    assert info.value.field == field
    assert field in str(info.value) and words in str(info.value) and "get_weather" in str(info.value)


def test_valid_arguments_pass():
    Tool.from_function(get_weather).validate_arguments({"city": "Oslo", "unit": "fahrenheit"})


def test_untyped_parameter_is_rejected():
    def f(a: int, b) -> int:
        return a

    with pytest.raises(TypeError, match="parameter 'b'.*no type annotation"):
        Tool.from_function(f)


def test_variadic_parameter_is_rejected():
    def f(*values: int) -> int:
        return 0

    with pytest.raises(TypeError, match="variadic parameter 'values'"):
        Tool.from_function(f)


def test_bad_name_and_non_callable():
    with pytest.raises(ValueError, match="invalid tool name '<lambda>'"):
        Tool.from_function(lambda x: x)  # the name is checked before the (missing) annotations
    with pytest.raises(TypeError, match="needs a callable"):
        Tool.from_function(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid tool name 'has space'"):
        Tool(name="has space", func=print)
    with pytest.raises(TypeError, match="must be callable"):
        Tool(name="ok", func="not callable")
