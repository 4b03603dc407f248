"""The pure conversions between LangChain objects and engine requests/results (no model involved)."""

import json

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langchain_hogwild._convert import (
    _convert_messages_to_dicts,
    _convert_response_format,
    _convert_result_to_message,
    _convert_tool_choice,
    _convert_tools_to_schemas,
    _convert_usage,
    _StreamConverter,
)
from pydantic import BaseModel

from hogwild_agents import (
    AnswerEvent,
    FinishedEvent,
    RunResult,
    StepCommittedEvent,
    TokenEvent,
    ToolCallRecord,
    Usage,
    WorkerResult,
    WorkerStoppedEvent,
)


def _call(name: str, args: dict, call_id: str) -> dict:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


# ------------------------------------------------------------------------------------------- messages
def test_basic_roles_and_ai_tool_calls_become_hf_dicts():
    messages = [
        SystemMessage("be brief"),
        HumanMessage("add 1 and 2"),
        AIMessage("", tool_calls=[_call("add", {"a": 1, "b": 2}, "call_1")]),
        ToolMessage("3", tool_call_id="call_1"),
        AIMessage("It is 3."),
    ]
    assert _convert_messages_to_dicts(messages) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "add 1 and 2"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "add", "arguments": {"a": 1, "b": 2}},
                }
            ],
        },
        {"role": "tool", "content": "3", "tool_call_id": "call_1", "name": "add"},
        {"role": "assistant", "content": "It is 3."},
    ]


def test_list_content_keeps_text_and_drops_tool_use_and_reasoning_blocks():
    ai = AIMessage(
        content=[
            {"type": "reasoning", "reasoning": "hmm"},
            {"type": "text", "text": "Let me add."},
            {"type": "tool_use", "id": "t1", "name": "add", "input": {"a": 1}},
        ],
        tool_calls=[_call("add", {"a": 1}, "t1")],
    )
    out = _convert_messages_to_dicts([HumanMessage(["hi ", {"type": "text", "text": "there"}]), ai])
    assert out[0] == {"role": "user", "content": "hi there"}
    assert out[1]["content"] == "Let me add."
    assert out[1]["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 1}}


def test_consecutive_same_role_messages_are_merged_but_tool_results_are_not():
    messages = [
        SystemMessage("a"),
        SystemMessage("b"),
        HumanMessage("c"),
        HumanMessage("d"),
        AIMessage("e"),
        AIMessage("f", tool_calls=[_call("x", {}, "1"), _call("x", {}, "2")]),
        ToolMessage("r1", tool_call_id="1"),
        ToolMessage("r2", tool_call_id="2"),
    ]
    out = _convert_messages_to_dicts(messages)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool", "tool"]
    assert [m["content"] for m in out[:3]] == ["a\n\nb", "c\n\nd", "e\n\nf"]
    assert [c["id"] for c in out[2]["tool_calls"]] == ["1", "2"]


def test_tool_message_error_status_and_chat_message_roles():
    messages = [
        ChatMessage(role="user", content="go"),
        AIMessage("", tool_calls=[_call("f", {}, "c")]),
        ToolMessage("boom", tool_call_id="c", status="error"),
    ]
    out = _convert_messages_to_dicts(messages)
    assert out[0] == {"role": "user", "content": "go"}
    assert out[2]["content"] == "Error: boom"


def test_image_content_is_a_clear_error():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(ValueError, match=r"message 0 .*'image_url'.*text-only"):
        _convert_messages_to_dicts([HumanMessage(["what is this?", image])])
    with pytest.raises(ValueError, match="'image'"):
        _convert_messages_to_dicts(
            [HumanMessage([{"type": "image", "base64": "AAAA", "mime_type": "image/png"}])]
        )


def test_orphan_tool_message_is_a_clear_error():
    with pytest.raises(
        ValueError, match=r"message 1 is a ToolMessage for tool_call_id 'nope'.*known ids: \['a'\]"
    ):
        _convert_messages_to_dicts(
            [AIMessage("", tool_calls=[_call("f", {}, "a")]), ToolMessage("x", tool_call_id="nope")]
        )
    with pytest.raises(ValueError, match="no earlier AIMessage"):
        _convert_messages_to_dicts([HumanMessage("hi"), ToolMessage("x", tool_call_id="a")])


def test_unknown_chat_role_is_rejected():
    with pytest.raises(ValueError, match="role 'critic'"):
        _convert_messages_to_dicts([ChatMessage(role="critic", content="meh")])


# ----------------------------------------------------------------------------------- tools and options
@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Point(BaseModel):
    """A point."""

    x: int
    y: int


def subtract(a: int, b: int) -> int:
    """Subtract b from a."""
    return a - b


def test_tools_of_every_kind_become_openai_schemas():
    raw = {
        "type": "function",
        "function": {"name": "raw", "description": "d", "parameters": {"type": "object"}},
    }
    schemas = _convert_tools_to_schemas([add, Point, subtract, raw])
    assert [s["function"]["name"] for s in schemas] == ["add", "Point", "subtract", "raw"]
    assert schemas[0]["function"]["parameters"]["properties"].keys() == {"a", "b"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", "auto"),
        ("none", "none"),
        ("any", "any"),
        ("required", "required"),
        ("add", "add"),
        (False, "none"),
        ({"type": "function", "function": {"name": "sub"}}, "sub"),
        ({"type": "tool", "name": "add"}, "add"),
    ],
)
def test_tool_choice_is_normalised(choice, expected):
    assert _convert_tool_choice(choice, ["add", "sub"]) == expected


def test_bad_tool_choice_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown tool_choice 'mul'.*'auto'.*\['add', 'sub'\]"):
        _convert_tool_choice("mul", ["add", "sub"])
    with pytest.raises(ValueError, match="single bound tool"):
        _convert_tool_choice(True, ["add", "sub"])
    assert _convert_tool_choice(True, ["add"]) == "add"


def test_response_format_shapes():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert _convert_response_format(schema) == schema
    assert (
        _convert_response_format({"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
        == schema
    )
    assert _convert_response_format({"type": "json_object"}) == {"type": "object"}
    assert _convert_response_format(Point)["properties"].keys() == {"x", "y"}
    assert _convert_response_format(None) is None


# ---------------------------------------------------------------------------------------------- output
def _result(**kwargs) -> RunResult:
    fields = {
        "answer": "42",
        "workers": [
            WorkerResult(
                name="Alice",
                text="**Alice [1]:** six times seven",
                steps=["six times seven"],
                generated_tokens=5,
            ),
            WorkerResult(name="Bob", text="**Bob [1]:** checking", generated_tokens=3),
        ],
        "stop_reason": "final_answer",
        "usage": Usage(
            prompt_tokens=100,
            generated_tokens=8,
            fed_tokens=20,
            answer_tokens=2,
            reused_prompt_tokens=40,
            reasoning_tokens=8,  # a finisher wrote the answer: the engine counts every worker token
        ),
    }
    return RunResult(**{**fields, **kwargs})


def test_usage_counts_prompt_and_fed_tokens_as_input_and_all_sampled_tokens_as_output():
    usage = _convert_usage(_result().usage)
    assert usage["input_tokens"] == 120  # the prompt + what the engine fed (headers, tool results, ...)
    assert usage["output_tokens"] == 10
    assert usage["total_tokens"] == 130
    assert usage["input_token_details"] == {"cache_read": 40}
    assert usage["output_token_details"] == {"reasoning": 8}


def test_result_becomes_ai_message_with_reasoning_workers_and_metadata():
    message = _convert_result_to_message(_result(), model_name="m")
    assert message.content == "42"
    assert (
        message.additional_kwargs["reasoning_content"]
        == "**Alice [1]:** six times seven\n\n**Bob [1]:** checking"
    )
    meta = message.response_metadata
    assert (meta["model_name"], meta["model_provider"], meta["finish_reason"]) == ("m", "hogwild", "stop")
    assert [w["name"] for w in meta["workers"]] == ["Alice", "Bob"]
    assert meta["workers"][0]["steps"] == ["six times seven"]
    assert [b["type"] for b in message.content_blocks] == ["reasoning", "text"]


def test_tool_calls_get_ids_and_finish_reason():
    calls = [
        ToolCallRecord(id="call_9", name="add", arguments={"a": 1, "b": 2}),
        ToolCallRecord(id="call_10", name="add", arguments={"a": "日本"}),
    ]
    message = _convert_result_to_message(
        _result(answer="", tool_calls=calls, finish_reason="tool_calls"), model_name="m"
    )
    assert message.tool_calls[0] == {
        "name": "add",
        "args": {"a": 1, "b": 2},
        "id": "call_9",
        "type": "tool_call",
    }
    assert message.tool_calls[1]["id"] == "call_10"
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_stream_converter_routes_workers_steps_answer_and_final_chunk():
    calls = [ToolCallRecord(id="c1", name="add", arguments={"a": "日本"})]
    events = [
        TokenEvent("Alice", "**Alice [1]:** ", (1,), 1, generated=False),
        TokenEvent("Bob", "**Bob [1]:** ", (2,), 1, generated=False),
        TokenEvent("Alice", "six", (3,), 1),
        TokenEvent("Bob", "check", (4,), 1),
        StepCommittedEvent("Alice", 1, "**Alice [1]:** six", 2),
        TokenEvent("Alice", "**Alice [2]:** ", (5,), 2, generated=False),
        WorkerStoppedEvent("Alice", "run_ended", 3),
        WorkerStoppedEvent("Bob", "run_ended", 3),
        AnswerEvent("\n 4", 4),
        AnswerEvent("2", 5),
        FinishedEvent(_result(tool_calls=calls)),
    ]
    converter = _StreamConverter(model_name="m")
    chunks = [c for c in (converter.convert(e) for e in events) if c is not None]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert [c.chunk_position for c in chunks].count("last") == 1 and chunks[-1].chunk_position == "last"
    assert sum(c.usage_metadata is not None for c in chunks) == 1
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == "42"
    assert merged.additional_kwargs["worker_texts"] == {
        "Alice": "**Alice [1]:** six**Alice [2]:** ",
        "Bob": "**Bob [1]:** check",
    }
    # committed steps in commit order, then each worker's unfinished step when it stops
    assert (
        merged.additional_kwargs["reasoning_content"]
        == "**Alice [1]:** six\n\n**Alice [2]:**\n\n**Bob [1]:** check\n\n"
    )
    assert merged.tool_calls == [{"name": "add", "args": {"a": "日本"}, "id": "c1", "type": "tool_call"}]
    assert (
        json.loads(merged.tool_call_chunks[0]["args"]) == {"a": "日本"}
        and "日本" in merged.tool_call_chunks[0]["args"]
    )
    assert merged.response_metadata["model_name"] == "m"
