"""Pure conversions between LlamaIndex objects and the engine's inputs and outputs (no model runs)."""

from __future__ import annotations

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.tools import FunctionTool
from llama_index.llms.hogwild._convert import (
    ChatStream,
    convert_messages,
    convert_result,
    convert_tool_choice,
    convert_tools,
    convert_usage,
    tool_calls_from_message,
)

from hogwild_agents import (
    AnswerEvent,
    FinishedEvent,
    RunResult,
    RunStartedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallRecord,
    Usage,
    WorkerResult,
)


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def subtract(a: int, b: int) -> int:
    """Subtract b from a."""
    return a - b


ADD = FunctionTool.from_defaults(add)
SUBTRACT = FunctionTool.from_defaults(subtract)


def _result(answer="42", tool_calls=(), workers=("Alice", "Bob")) -> RunResult:
    return RunResult(
        answer=answer,
        workers=[WorkerResult(name=n, text=f"{n} thinks", steps=["s"], generated_tokens=3) for n in workers],
        stop_reason="final_answer",
        usage=Usage(prompt_tokens=10, generated_tokens=6, fed_tokens=4, answer_tokens=2, forwards=9),
        tool_calls=list(tool_calls),
    )


# ------------------------------------------------------------------------------------------- messages
def test_messages_roles_text_and_tool_round_trip():
    history = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="developer", content="and exact"),
        ChatMessage(role="user", blocks=[TextBlock(text="2+"), TextBlock(text="3?")]),
        ChatMessage(
            role="assistant",
            blocks=[
                ThinkingBlock(content="Alice: use add", additional_information={"worker": "Alice"}),
                TextBlock(text=""),
                ToolCallBlock(tool_call_id="call_a", tool_name="add", tool_kwargs={"a": 2, "b": 3}),
                ToolCallBlock(tool_call_id="call_b", tool_name="subtract", tool_kwargs='{"a": 5, "b": 1}'),
            ],
        ),
        ChatMessage(role="tool", content="5", additional_kwargs={"tool_call_id": "call_a"}),
        ChatMessage(role="tool", content="4", additional_kwargs={"tool_call_id": "call_b"}),
    ]
    out = convert_messages(history)
    assert [m["role"] for m in out] == ["system", "system", "user", "assistant", "tool", "tool"]
    assert out[2]["content"] == "2+3?"
    assert out[3]["content"] == ""  # thinking is not sent back
    assert out[3]["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}},
        {"id": "call_b", "type": "function", "function": {"name": "subtract", "arguments": {"a": 5, "b": 1}}},
    ]
    assert out[4] == {"role": "tool", "content": "5", "tool_call_id": "call_a", "name": "add"}
    assert out[5]["name"] == "subtract"


def test_messages_legacy_openai_tool_calls():
    legacy = ChatMessage(
        role="assistant",
        content="",
        additional_kwargs={
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
            ]
        },
    )
    out = convert_messages([ChatMessage(role="user", content="hi"), legacy])
    assert out[1]["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 1}}
    assert [s.tool_name for s in tool_calls_from_message(legacy)] == ["add"]


@pytest.mark.parametrize(
    "messages, match",
    [
        ([], "at least one"),
        (
            [ChatMessage(role="user", blocks=[ImageBlock(url="http://x/cat.png")])],
            "ImageBlock is not supported",
        ),
        (
            [ChatMessage(role="tool", content="5", additional_kwargs={"tool_call_id": "nope"})],
            "answers no earlier",
        ),
        ([ChatMessage(role="tool", content="5")], "tool_call_id=None"),
        ([ChatMessage(role="user", blocks=[ToolCallBlock(tool_name="add")])], "only assistant"),
        (
            [ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_name="add", tool_kwargs="{bad json")])],
            "not valid JSON",
        ),
    ],
)
def test_bad_messages_raise_clear_value_errors(messages, match):
    with pytest.raises(ValueError, match=match):
        convert_messages(messages)


# ---------------------------------------------------------------------------------------------- tools
@pytest.mark.parametrize("execute", [False, True])
def test_llama_index_tools_become_engine_tools_with_their_callable(execute):
    from hogwild_agents import Tool

    tool, schema = convert_tools(
        [ADD, {"type": "function", "function": {"name": "mul"}}] if not execute else [ADD, SUBTRACT],
        execute=execute,
    )
    assert isinstance(tool, Tool)
    assert tool.name == "add"
    assert set(tool.parameters["properties"]) == {"a", "b"}
    assert tool.func(a=2, b=3) == "5"
    if not execute:  # a bare schema passes through (return mode: the engine only needs the schema)
        assert schema == {"type": "function", "function": {"name": "mul"}}


@pytest.mark.parametrize(
    "tools, execute, error, match",
    [
        ([ADD, ADD], False, ValueError, "unique"),
        ([{"type": "function", "function": {"name": "x"}}], True, ValueError, "execute_tools=True needs"),
        ([{"type": "function"}], False, ValueError, "tool schema must be"),
        ([object()], False, TypeError, "expected a LlamaIndex BaseTool"),
    ],
)
def test_bad_tools(tools, execute, error, match):
    with pytest.raises(error, match=match):
        convert_tools(tools, execute=execute)


@pytest.mark.parametrize(
    "choice, required, expected",
    [
        (None, False, "auto"),
        (None, True, "required"),
        ("auto", True, "required"),
        ("none", False, "none"),
        ("any", False, "required"),
        ("required", False, "required"),
        ("add", False, "add"),
        ("add", True, "add"),
        ({"type": "function", "function": {"name": "subtract"}}, False, "subtract"),
    ],
)
def test_tool_choice_resolution(choice, required, expected):
    assert convert_tool_choice(choice, required, ["add", "subtract"]) == expected


@pytest.mark.parametrize(
    "choice, required, match",
    [
        ("multiply", False, "neither"),
        ({"type": "weird"}, False, "not understood"),
        (3, False, "must be a string"),
        ("none", True, "contradicts"),
    ],
)
def test_bad_tool_choice(choice, required, match):
    with pytest.raises(ValueError, match=match):
        convert_tool_choice(choice, required, ["add", "subtract"])


# ------------------------------------------------------------------------------------------ responses
def test_result_blocks_usage_and_tool_call_ids():
    calls = [
        ToolCallRecord(id="call_1", name="add", arguments={"a": 1, "b": 2}),
        ToolCallRecord(id="call_2", name="add", arguments={"a": 3, "b": 4}),
        ToolCallRecord(id="call_3", name="subtract", arguments={"a": 9, "b": 1}),
    ]
    response = convert_result(_result(answer="", tool_calls=calls))
    kinds = [b.block_type for b in response.message.blocks]
    assert kinds == ["thinking", "thinking", "text", "tool_call", "tool_call", "tool_call"]
    thinking = [b for b in response.message.blocks if isinstance(b, ThinkingBlock)]
    assert [b.additional_information["worker"] for b in thinking] == ["Alice", "Bob"]
    assert thinking[0].content == "Alice thinks"
    assert thinking[0].num_tokens == 3
    selections = tool_calls_from_message(response.message)
    assert [s.tool_id for s in selections] == ["call_1", "call_2", "call_3"]
    assert selections[2].tool_kwargs == {"a": 9, "b": 1}
    assert response.raw["usage"]["prompt_tokens"] == 14  # the prompt + the 4 tokens the engine fed
    assert response.raw["usage"]["completion_tokens"] == 8
    assert response.raw["usage"]["total_tokens"] == 22
    assert response.raw["stop_reason"] == "final_answer"


def test_result_without_finisher_has_the_answer_worker_as_content():
    response = convert_result(_result(answer="Alice thinks"), answer_worker="Alice")
    assert [
        b.additional_information["worker"] for b in response.message.blocks if b.block_type == "thinking"
    ] == ["Bob"]
    assert response.message.content == "Alice thinks"


def test_usage_keys_for_the_token_counter():
    usage = convert_usage(Usage(prompt_tokens=5, generated_tokens=7, answer_tokens=1, reasoning_tokens=7))
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (5, 8, 13)
    assert usage["reasoning_tokens"] == 7  # the engine's count, passed on as it is


def test_chat_stream_cumulative_thinking_and_answer():
    stream = ChatStream()
    events = [
        TokenEvent("Alice", "Let ", (1,), 0),
        TokenEvent("Bob", "I ", (2,), 0),
        TokenEvent("Alice", "me", (3,), 1),
        ToolCallFinishedEvent("Bob", "call_1", "add", "5", False, 0.1, 1),
        AnswerEvent("4", 2),
        AnswerEvent("2", 3),
        FinishedEvent(_result(answer="42")),
    ]
    responses = [r for e in events if (r := stream.feed(e)) is not None]
    assert responses[0].additional_kwargs == {"thinking_delta": "Let ", "worker": "Alice"}
    assert responses[2].message.blocks[0].content == "Let me"
    assert responses[3].additional_kwargs["tool_event"]["content"] == "5"
    assert [r.delta for r in responses[4:6]] == ["4", "2"]
    assert responses[5].message.content == "42"
    last = responses[-1]
    assert last.delta == ""
    assert last.message.content == "42"
    assert last.raw["usage"]["completion_tokens"] == 8


def test_chat_stream_holds_back_tool_call_markup():
    """Plain generation: the answer worker's tokens stream up to the call opening the engine names."""
    stream = ChatStream()
    started = RunStartedEvent(("Alice",), False, "Alice", call_openers=("<tool_call>",))
    assert stream.feed(started) is None
    pieces = ["Sure", ". <tool", "_call>", '\n{"name": "add", "arguments": {"a": 1}}', "\n</tool_call>"]
    responses = [r for p in pieces if (r := stream.feed(TokenEvent("Alice", p, (1,), 0))) is not None]
    assert "".join(r.delta for r in responses) == "Sure. "
    assert all("<tool" not in r.message.content for r in responses)
    final = stream.feed(
        FinishedEvent(_result(answer="", tool_calls=[ToolCallRecord(id="c1", name="add", arguments={})]))
    )
    assert final.message.content == ""
    assert [b.tool_name for b in final.message.blocks if isinstance(b, ToolCallBlock)] == ["add"]


def test_chat_stream_without_finisher_streams_the_answer_worker():
    stream = ChatStream(answer_worker="Alice")
    first = stream.feed(TokenEvent("Alice", "Hel", (1,), 0))
    second = stream.feed(TokenEvent("Alice", "lo", (2,), 1))
    assert (first.delta, second.delta, second.message.content) == ("Hel", "lo", "Hello")
    assert stream.feed(AnswerEvent("Hello", 2)) is None  # not streamed twice
