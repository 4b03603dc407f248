"""parse_tool_calls and the incremental ToolCallDetector."""

from __future__ import annotations

import json

import pytest

from hogwild_agents.tools import GENERIC_FORMAT, Tool, ToolCallDetector, ToolCallParseError, parse_tool_calls


def get_weather(city: str, unit: str = "celsius") -> str:
    """Weather in a city."""
    return "sunny"


def add(a: int, b: int) -> int:
    """Add."""
    return a + b


TOOLS = [Tool.from_function(get_weather), Tool.from_function(add)]
CALL = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'


@pytest.mark.parametrize(
    "text",
    [
        f"Sure.\n<tool_call>\n{CALL}\n</tool_call>",
        f"```json\n{CALL}\n```",
        f"```\n{CALL}\n```",
        f"```json\n{json.dumps(json.loads(CALL), indent=2)}\n```",
        f"I will call it: {CALL} and wait.",
        f"[{CALL}]",
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\", \\"unit\\": \\"celsius\\"}"}',
        '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
    ],
    ids=["tagged", "fenced", "fence-no-lang", "fenced-pretty", "bare", "array", "string-args", "parameters"],
)
def test_forms(text):
    (call,) = parse_tool_calls(text, TOOLS, GENERIC_FORMAT)
    assert call.name == "get_weather" and call.arguments == {"city": "Paris", "unit": "celsius"}
    assert call.id.startswith("call_") and call.text in text and call.error is None


def test_several_calls_in_order_with_unique_ids():
    second = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
    text = f"<tool_call>\n{CALL}\n</tool_call>\n<tool_call>\n{second}\n</tool_call>"
    calls = parse_tool_calls(text, TOOLS)
    assert [c.name for c in calls] == ["get_weather", "add"] and calls[0].id != calls[1].id
    array = parse_tool_calls(f'[{CALL}, {{"name": "add", "arguments": {{"a": 1, "b": 2}}}}]', TOOLS)
    assert [c.name for c in array] == ["get_weather", "add"]


@pytest.mark.parametrize(
    "text",
    [
        "No tools needed. The answer is 4.",
        'Data: {"name": "Bob", "age": 3} and {"a": {"b": [1, 2]}}',
        '```json\n{"city": "Paris"}\n```',
        '```python\nx = {"name": "get_weather", "arguments": {}}\n```',
        '{"name": "not_a_tool", "arguments": {}}',
        "Unbalanced { brace and [1, 2] list",
    ],
)
def test_non_calls_are_ignored(text):
    assert parse_tool_calls(text, TOOLS) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<tool_call>\n{not json}\n</tool_call>", "could not parse tool call JSON"),
        ('<tool_call>\n{"name": "launch", "arguments": {}}\n</tool_call>', "unknown tool 'launch'"),
        ('```json\n{"name": "launch", "arguments": {}}\n```', "available tools: add, get_weather"),
        ('{"name": "add", "arguments": {"a": "one", "b": 2}}', "field '$.a'"),
        ('<tool_call>\n{"name": "add", "arguments": "{bad"}\n</tool_call>', "not valid JSON"),
        ('<tool_call>\n{"name": "add", "arguments": [1]}\n</tool_call>', "must be an object"),
    ],
)
def test_malformed_calls_raise(text, words):
    with pytest.raises(ToolCallParseError, match=None) as info:
        parse_tool_calls(text, TOOLS)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def _feed_pieces(detector, pieces):
    fired = []
    for i, piece in enumerate(pieces):
        for call in detector.feed(piece):
            fired.append((i, call))
    return fired


@pytest.mark.parametrize(
    ("text", "closer"),
    [
        (f"Let me check.\n<tool_call>\n{CALL}\n</tool_call>", "</tool_call>"),
        (f"Let me check.\n```json\n{CALL}\n```\nthen more", "```"),
        (f'Let me check {{"x": 1}} first. {CALL} then more', "}}"),
    ],
    ids=["tagged", "fenced", "bare"],
)
def test_detector_fires_once_at_the_closing_character(text, closer):
    end = text.index(closer, text.index("Paris")) + len(closer)  # index just past the closing delimiter
    detector = ToolCallDetector(GENERIC_FORMAT, TOOLS)
    fired = _feed_pieces(detector, list(text))  # one character at a time
    assert len(fired) == 1
    index, call = fired[0]
    assert index == end - 1 and call.name == "get_weather" and call.arguments["city"] == "Paris"
    assert text[:end].endswith(call.text)


def test_detector_on_real_tokens(qwen_tokenizer):
    from hogwild_agents.tools import ToolFormat

    fmt = ToolFormat.from_tokenizer(qwen_tokenizer)
    text = f"I'll look it up.\n```json\n{json.dumps(json.loads(CALL), indent=2)}\n```<|im_end|>"
    ids = qwen_tokenizer.encode(text, add_special_tokens=False)
    pieces = [qwen_tokenizer.decode([i]) for i in ids]
    assert "".join(pieces) == text
    fired = _feed_pieces(ToolCallDetector(fmt, TOOLS), pieces)
    assert len(fired) == 1
    index, call = fired[0]
    assert "```" in pieces[index] and "".join(pieces[: index + 1]).rstrip().endswith("```")
    assert call.arguments == {"city": "Paris", "unit": "celsius"}
    tagged = fmt.render_call_text(fired[0][1]) + "<|im_end|>"
    tag_ids = qwen_tokenizer.encode(tagged, add_special_tokens=False)
    fired = _feed_pieces(ToolCallDetector(fmt, TOOLS), [qwen_tokenizer.decode([i]) for i in tag_ids])
    assert [(i, c.name) for i, c in fired] == [
        (tag_ids.index(qwen_tokenizer.convert_tokens_to_ids("</tool_call>")), "get_weather")
    ]


def test_detector_does_not_fire_on_json_and_stays_cheap():
    detector = ToolCallDetector(GENERIC_FORMAT, TOOLS)
    prose = 'Some prose with {"name": "Bob", "arguments": 1} and code `x[0] = {1: 2}`. ' * 200
    assert _feed_pieces(detector, [prose[i : i + 3] for i in range(0, len(prose), 3)]) == []
    assert len(detector._buf) < 64  # keeps only a short tail, not the whole text


def test_detector_reports_malformed_tagged_call_with_error():
    detector = ToolCallDetector(GENERIC_FORMAT, TOOLS)
    (call,) = detector.feed('<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>')
    assert call.name == "add" and "field '$.b'" in call.error
