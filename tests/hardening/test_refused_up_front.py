"""Bad requests are refused up front with :class:`InvalidRequestError` naming the problem, before any forward.

Each case runs through ``engine.run`` (and ``engine.stream``) on one engine; afterwards the engine has run no
forward for them (its scheduler counted no step), holds no page, and still answers a good request exactly.
"""

from __future__ import annotations

import pytest
from hardening_helpers import QUESTION, engine_for

from hogwild_agents import InvalidRequestError, Tool

CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": {"city": "Paris"}}}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "d", "parameters": SCHEMA}}


def _tool_with(parameters: dict) -> dict:
    return {"type": "function", "function": {"name": "lookup", "description": "d", "parameters": parameters}}


CASES: dict[str, tuple[dict, str]] = {
    # --- tool messages and calls
    "unknown tool_call_id": (
        {
            "messages": [
                *QUESTION,
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_9", "content": "x"},
            ]
        },
        "call_9.*no earlier assistant",
    ),
    "tool result before any call": (
        {"messages": [*QUESTION, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
        "no earlier assistant",
    ),
    "arguments not JSON": (
        {
            "messages": [
                *QUESTION,
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": "{city: Paris"},
                        }
                    ],
                },
            ]
        },
        "not valid JSON",
    ),
    "arguments a JSON list": (
        {
            "messages": [
                *QUESTION,
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "lookup", "arguments": "[1, 2]"}}
                    ],
                },
            ]
        },
        "must be a JSON object",
    ),
    "tool_calls on a user message": (
        {"messages": [{"role": "user", "content": "hi", "tool_calls": [CALL]}]},
        "only assistant messages",
    ),
    # --- tool_choice
    "required without tools": ({"tool_choice": "required"}, "no tools"),
    "named without tools": ({"tool_choice": "lookup"}, "no tools"),
    "named tool not given": ({"tool_choice": "search", "tools": [LOOKUP], "tool_mode": "return"}, "search"),
    # --- content types
    "set content": ({"messages": [{"role": "user", "content": {"a", "b"}}]}, "set"),
    "image part": (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        "image_url",
    ),
    "bytes content": ({"messages": [{"role": "user", "content": b"hi"}]}, "bytes"),
    "int part": ({"messages": [{"role": "user", "content": ["hi", 3]}]}, "int"),
    # --- stop strings
    "empty stop string": ({"stop": [""]}, "non-empty"),
    "too many stop strings": ({"stop": [f"s{i}" for i in range(17)]}, "at most 16"),
    "huge stop string": ({"stop": ["x" * 513]}, "at most 512"),
    "stop not a list": ({"stop": 5}, "stop"),
    # --- schemas
    "response_format not a schema": ({"response_format": {"type": "banana"}}, "response_format"),
    "response_format dangling ref": (
        {"response_format": {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}},
        "response_format.*Missing",
    ),
    "tool schema dangling ref": (
        {
            "tools": [_tool_with({"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}})],
            "tool_mode": "return",
        },
        "Nope",
    ),
    "tool schema invalid type": (
        {
            "tools": [_tool_with({"type": "object", "properties": {"a": {"type": "strin"}}})],
            "tool_mode": "return",
        },
        "lookup",
    ),
    # --- seeds
    "seed too large": ({"seed": 2**64}, "seed"),
    "seed negative": ({"seed": -1}, "seed"),
    "seed not an int": ({"seed": "abc"}, "seed"),
    # --- system prompt template
    "system prompt unknown placeholder": ({"system_prompt": "You are {role} of {count}."}, "role"),
    "system prompt stray brace": ({"system_prompt": "Use a {dict literal"}, "system_prompt"),
    "system prompt positional field": ({"system_prompt": "You are {0}."}, "system_prompt"),
    # --- invalid text
    "lone surrogate in user text": (
        {"messages": [{"role": "user", "content": "bad \ud800 text"}]},
        "surrogate",
    ),
    "lone surrogate in system text": (
        {"messages": [{"role": "system", "content": "\udfff"}, *QUESTION]},
        "surrogate",
    ),
    "lone surrogate in a text part": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "\ud83d"}]}]},
        "surrogate",
    ),
    "lone surrogate in a stop string": ({"stop": ["\ud800"]}, "surrogate"),
    "lone surrogate in the system prompt": ({"system_prompt": "rules \ud800"}, "surrogate"),
    "lone surrogate in tool arguments": (
        {
            "messages": [
                *QUESTION,
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": {"city": "\ud800"}},
                        }
                    ],
                },
            ]
        },
        "surrogate",
    ),
    # --- engine-level options per run
    "engine option per run": ({"page_size": 32}, "engine-level"),
    "unknown option": ({"temprature": 0.5}, "unknown option"),
}


@pytest.fixture(scope="module")
def engine(qwen_tokenizer):
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=3)
    yield engine
    engine.close()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_requests_are_refused_before_any_forward(engine, case: str) -> None:
    request, match = CASES[case]
    request = dict(request)
    messages = request.pop("messages", QUESTION)
    steps = engine.scheduler.steps
    with pytest.raises(InvalidRequestError, match=match):
        engine.run(messages, **request)
    with pytest.raises(InvalidRequestError, match=match):
        engine.stream(messages, **request)  # refused when the stream is made, not when it is read
    assert engine.scheduler.steps == steps, "no forward ran"
    assert engine.runner.store.free_pages == engine.runner.store.num_pages


def test_the_engine_answers_exactly_after_every_refusal(engine) -> None:
    first = engine.run(QUESTION)
    for case, (request, _) in CASES.items():
        request = dict(request)
        with pytest.raises(InvalidRequestError):
            engine.run(request.pop("messages", QUESTION), **request)
    again = engine.run(QUESTION)
    assert [w.text for w in again.workers] == [w.text for w in first.workers] and again.answer == first.answer


def test_a_tool_object_with_a_dangling_ref_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="Nope"):
        Tool(
            name="t",
            description="d",
            parameters={"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}},
        )
