"""ChatHogwild on a tiny random engine: plumbing, streaming, async, errors, token counting, tools.

The tiny model's text is noise; these tests check what the integration guarantees regardless of quality
(shapes, routing of workers/answer/usage, errors, recovery, sharing). Forced tool calls and JSON answers are
well-formed even here, because the engine enforces them by constrained decoding.
"""

import asyncio
import json
import time

import langchain_hogwild
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_hogwild import ChatHogwild
from pydantic import BaseModel

import hogwild_agents
from hogwild_agents.engine import registry

needs_engine_tools = pytest.mark.skipif(
    not hasattr(hogwild_agents, "Tool"),
    reason="the engine's tool support (hogwild_agents.Tool, tool_mode) has not landed",
)


@pytest.fixture
def llm(tiny_engine) -> ChatHogwild:
    # The team always: these tests look at the workers ("auto" answers a short prompt with one worker).
    return ChatHogwild(engine=tiny_engine, workers=2, max_forwards=2, max_tokens=6, collaboration=True)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_public_api_is_pinned():
    assert langchain_hogwild.__all__ == ["ChatHogwild", "__version__"]
    assert langchain_hogwild.__version__ == "0.1.0"


def test_construction_is_lazy_and_equal_configurations_share_one_engine(monkeypatch, tiny_engine):
    loads = []

    def fake_from_pretrained(model, **options):
        loads.append((model, options))
        return tiny_engine

    monkeypatch.setattr(registry, "_ENGINES", {})
    monkeypatch.setattr(hogwild_agents.HogwildEngine, "from_pretrained", staticmethod(fake_from_pretrained))
    a, b = ChatHogwild(model="m1"), ChatHogwild(model="m1", workers=4, temperature=0.7, max_forwards=9)
    assert loads == []  # constructing never loads
    assert a._get_engine() is b._get_engine() is tiny_engine  # per-run options do not split the cache
    assert len(loads) == 1 and loads[0][0] == "m1"
    ChatHogwild(model="m2")._get_engine()
    ChatHogwild(model="m1", dtype="float32")._get_engine()
    assert [m for m, _ in loads] == ["m1", "m2", "m1"]
    assert ChatHogwild(engine=tiny_engine)._get_engine() is tiny_engine and len(loads) == 3


def test_identity_and_standard_params(llm):
    assert llm._llm_type == "hogwild-chat"
    params = llm._identifying_params
    assert (params["workers"], params["max_forwards"], params["max_answer_tokens"]) == (2, 2, 6)
    ls = llm._get_ls_params(stop=["x"])
    assert (ls["ls_provider"], ls["ls_model_type"], ls["ls_max_tokens"], ls["ls_stop"]) == (
        "hogwild",
        "chat",
        6,
        ["x"],
    )
    assert llm.profile["tool_choice"] and llm.profile["max_input_tokens"] == 4096
    assert (
        ChatHogwild(max_answer_tokens=5).max_answer_tokens == ChatHogwild(max_tokens=5).max_answer_tokens == 5
    )


def test_invoke_returns_answer_reasoning_per_worker_and_usage(llm):
    message = llm.invoke([SystemMessage("Be brief."), HumanMessage("Hello")])
    assert isinstance(message, AIMessage) and isinstance(message.content, str) and message.content
    assert message.additional_kwargs["reasoning_content"].startswith("**Alice [1]:**")
    workers = message.response_metadata["workers"]
    assert [w["name"] for w in workers] == ["Alice", "Bob"]
    assert all(w["generated_tokens"] > 0 for w in workers)
    usage = message.usage_metadata
    assert (
        usage["input_tokens"] > 0
        and usage["output_tokens"] == sum(w["generated_tokens"] for w in workers) + 6
    )
    assert usage["output_token_details"]["reasoning"] == sum(w["generated_tokens"] for w in workers)
    assert message.response_metadata["finish_reason"] == "length"  # 6 answer tokens, the budget
    assert (
        llm.invoke("Hello", workers=3).response_metadata["workers"][2]["name"] == "Carol"
    )  # per-call override


def test_stream_matches_invoke_and_routes_workers_to_reasoning(llm):
    invoked = llm.invoke("Hello")
    chunks = list(llm.stream("Hello"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert chunks[-1].chunk_position == "last"
    assert sum(c.usage_metadata is not None for c in chunks) == 1  # usage only on the final chunk
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == invoked.content
    assert merged.usage_metadata == invoked.usage_metadata
    texts = {w["name"]: w["text"] for w in invoked.response_metadata["workers"]}
    assert merged.additional_kwargs["worker_texts"] == texts
    assert "**Alice [1]:**" in merged.additional_kwargs["reasoning_content"]
    first_answer = next(i for i, c in enumerate(chunks) if c.content)
    assert all(not c.content for c in chunks[:first_answer])  # workers think first, then the answer streams


async def test_async_matches_sync_and_never_blocks_the_event_loop(llm):
    expected = llm.invoke("Hello").content
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    message = await llm.ainvoke("Hello")
    chunks = [c async for c in llm.astream("Hello")]
    elapsed = time.perf_counter() - started
    done.set()
    await task
    assert message.content == expected
    assert "".join(c.content for c in chunks) == expected and chunks[-1].chunk_position == "last"
    assert ticks >= elapsed / 0.01 * 0.3  # the loop kept ticking while the engine ran on its thread


def test_stop_sequence_ends_the_answer(llm):
    answer = llm.invoke("Hello").content
    stop = answer[2:4]
    cut = llm.invoke("Hello", stop=[stop]).content
    assert stop not in cut and answer.startswith(cut)
    assert (
        ChatHogwild(engine=llm.engine, max_forwards=2, max_tokens=6, stop=[stop], collaboration=True)
        .invoke("Hello")
        .content
        == cut
    )


def test_stop_sequence_also_ends_the_streamed_answer(llm):
    answer = llm.invoke("Hello").content
    stop = answer[2:4]
    chunks = list(llm.stream("Hello", stop=[stop]))
    streamed = "".join(c.content for c in chunks)
    assert streamed.strip() == llm.invoke("Hello", stop=[stop]).content and stop not in streamed
    # Streamed live: no prefix of the stream ever shows the stop string (the engine holds back its start).
    assert all(stop not in "".join(c.content for c in chunks[:i]) for i in range(len(chunks)))


def test_bad_input_raises_a_clear_error_and_the_model_stays_usable(llm):
    expected = llm.invoke("Hello").content
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(ValueError, match="text-only"):
        llm.invoke([HumanMessage(["What is in this picture?", image])])
    assert llm.invoke("Hello").content == expected
    with pytest.raises(ValueError, match="no earlier AIMessage made a tool call"):
        llm.invoke([HumanMessage("Hi"), ToolMessage("3", tool_call_id="call_404")])
    assert llm.invoke("Hello").content == expected
    with pytest.raises(ValueError, match="unknown tool_choice 'multiply'"):
        llm.bind_tools([add], tool_choice="multiply")
    with pytest.raises(ValueError, match="unknown tool_choice 'sometimes'"):
        llm.bind(tools=[], tool_choice="sometimes").invoke("Hello")
    assert llm.invoke("Hello").content == expected


async def test_bad_input_in_async_and_stream_leaves_the_model_usable(llm):
    with pytest.raises(ValueError, match="text-only"):
        await llm.ainvoke([HumanMessage([{"type": "image", "url": "https://example.com/cat.png"}])])
    with pytest.raises(ValueError, match="ToolMessage"):
        list(llm.stream([ToolMessage("3", tool_call_id="x")]))
    assert (await llm.ainvoke("Hello")).content


def test_token_counting_uses_the_models_tokenizer_and_chat_template(llm, tiny_tokenizer):
    assert (
        llm.get_num_tokens("hello world")
        == len(tiny_tokenizer.encode("hello world", add_special_tokens=False))
        == 2
    )
    messages = [SystemMessage("Be brief."), HumanMessage("What is 2 + 2?")]
    dicts = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
    rendered = tiny_tokenizer.apply_chat_template(dicts, add_generation_prompt=True, tokenize=False)
    assert llm.get_num_tokens_from_messages(messages) == len(
        tiny_tokenizer.encode(rendered, add_special_tokens=False)
    )
    assert llm.get_num_tokens_from_messages(messages, tools=[add]) > llm.get_num_tokens_from_messages(
        messages
    )


# ------------------------------------------------------------------------------ tools (engine support)
class Point(BaseModel):
    """A point on the grid."""

    x: int
    y: int


@needs_engine_tools
def test_forced_tool_call_comes_back_as_tool_calls_in_invoke_and_stream(llm):
    bound = llm.bind_tools([add], tool_choice="add")
    message = bound.invoke("Add 2 and 3.")
    assert [c["name"] for c in message.tool_calls] == ["add"]
    assert set(message.tool_calls[0]["args"]) == {"a", "b"} and message.tool_calls[0]["id"]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    chunks = list(bound.stream("Add 2 and 3."))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert [c["name"] for c in merged.tool_calls] == ["add"] and merged.tool_calls[0][
        "args"
    ] == message.tool_calls[0]["args"]
    assert "<tool_call>" not in merged.content


@needs_engine_tools
def test_tool_choice_none_returns_no_calls(llm):
    assert llm.bind_tools([add], tool_choice="none").invoke("Add 2 and 3.").tool_calls == []


@needs_engine_tools
def test_structured_output_by_function_calling_and_by_json_schema(llm):
    point = llm.with_structured_output(Point).invoke("Give me a point.")
    assert isinstance(point, Point)
    raw = llm.with_structured_output(Point, method="json_schema", include_raw=True).invoke("Give me a point.")
    assert raw["parsing_error"] is None and isinstance(raw["parsed"], Point)
    assert json.loads(raw["raw"].content) == raw["parsed"].model_dump()
    as_dict = llm.with_structured_output(Point.model_json_schema(), method="json_schema").invoke("A point.")
    assert set(as_dict) == {"x", "y"}


def test_execute_tools_hands_the_engine_runnable_tools_built_from_langchain_tools():
    from langchain_hogwild._convert import _convert_tools_to_engine_tools

    notes = []

    @tool
    def remember(note: str) -> str:
        """Store a note."""
        notes.append(note)
        return "stored"

    def subtract(a: int, b: int) -> int:
        """Subtract b from a."""
        return a - b

    engine_tools = _convert_tools_to_engine_tools([remember, subtract])
    assert isinstance(engine_tools[0], hogwild_agents.Tool)
    assert [t.name for t in engine_tools] == ["remember", "subtract"]
    assert engine_tools[0].parameters["properties"].keys() == {"note"}
    assert engine_tools[0].func(note="milk") == "stored" and notes == ["milk"]
    assert engine_tools[1].func(a=5, b=3) == 2
    with pytest.raises(ValueError, match="schema without a function"):
        _convert_tools_to_engine_tools([Point])


@needs_engine_tools
def test_execute_tools_runs_in_execute_mode_and_returns_no_calls(tiny_engine):
    @tool
    def remember(note: str) -> str:
        """Store a note."""
        return "stored"

    llm = ChatHogwild(engine=tiny_engine, max_forwards=2, max_tokens=6, execute_tools=True)
    bound = llm.bind_tools([remember])
    assert bound.kwargs["tool_mode"] == "execute" and isinstance(
        bound.kwargs["tools"][0], hogwild_agents.Tool
    )
    message = bound.invoke("Store a note.")
    assert message.tool_calls == [] and isinstance(message.response_metadata["tool_events"], list)
    with pytest.raises(ValueError, match="schema without a function"):
        llm.bind_tools([Point])


# ------------------------------------------------------------------------------- chat defaults ("auto")
def test_defaults_answer_a_greeting_with_one_plain_worker(tiny_engine):
    llm = ChatHogwild(engine=tiny_engine, max_tokens=5)  # the front-end defaults: collaboration="auto"
    message = llm.invoke("Hello")
    meta = message.response_metadata
    assert meta["collaboration"] is False and [w["name"] for w in meta["workers"]] == ["Alice"]
    assert "reasoning_content" not in message.additional_kwargs  # the worker's text is the answer
    usage = message.usage_metadata
    assert usage["output_token_details"]["reasoning"] == 0 and usage["output_tokens"] > 0
    assert (
        message.content
        == tiny_engine.run("Hello", collaboration=False, workers=1).answer[: len(message.content)]
    )
    # max_tokens bounds the answer the caller reads, in plain generation too
    assert meta["stop_reason"] == "max_answer_tokens" and meta["finish_reason"] == "length"
    assert message.usage_metadata["output_tokens"] == 5
    chunks = list(llm.stream("Hello"))
    assert "".join(c.content for c in chunks) == message.content  # streamed live as content, not reasoning
    assert sum(1 for c in chunks if c.content) >= 2
    assert not any("worker_texts" in c.additional_kwargs for c in chunks)


def test_defaults_give_a_task_to_the_team(tiny_engine):
    llm = ChatHogwild(engine=tiny_engine, max_forwards=3, max_tokens=4, early_exit=False)
    message = llm.invoke("What is 17 + 25? Then add 5.")
    meta = message.response_metadata
    assert meta["collaboration"] is True and [w["name"] for w in meta["workers"]] == ["Alice", "Bob"]
    assert message.additional_kwargs["reasoning_content"].startswith("**Alice [1]:**")


def test_roles_name_the_workers_and_decide_their_number(tiny_engine):
    roles = [
        hogwild_agents.WorkerRole(name="Planner", instructions="Plan the steps."),
        hogwild_agents.WorkerRole(name="Solver", instructions="Do the arithmetic."),
        hogwild_agents.WorkerRole(name="Checker", instructions="Check the result."),
    ]
    llm = ChatHogwild(engine=tiny_engine, roles=roles, max_forwards=2, max_tokens=3, early_exit=False)
    meta = llm.invoke("What is 17 + 25? Then add 5.").response_metadata
    assert [w["name"] for w in meta["workers"]] == ["Planner", "Solver", "Checker"]


def test_the_engine_is_reachable_for_injected_messages(tiny_engine):
    llm = ChatHogwild(engine=tiny_engine)
    stream = llm.get_engine().stream("What is 17 + 25? Then add 5.", max_forwards=4, max_answer_tokens=2)
    kinds = []
    for event in stream:
        kinds.append(type(event).__name__)
        if len(kinds) == 2:
            stream.inject("Use the number 47 in your check.")
    assert kinds[0] == "RunStartedEvent" and "MessageInjectedEvent" in kinds and kinds[-1] == "FinishedEvent"


# ----------------------------------------------------------------- structured output cut by the budget
class _Report(BaseModel):
    title: str
    summary: str
    points: list[str]


def test_structured_output_cut_by_the_budget_is_a_parser_error_not_none(tiny_engine):
    from langchain_core.exceptions import OutputParserException

    llm = ChatHogwild(engine=tiny_engine, max_forwards=2, max_tokens=3, collaboration=True, early_exit=False)
    task = "Write a report on the water cycle."
    for method in ("json_schema", "function_calling"):
        with pytest.raises(OutputParserException, match="cut by the token budget"):
            llm.with_structured_output(_Report, method=method).invoke(task)
        out = llm.with_structured_output(_Report, method=method, include_raw=True).invoke(task)
        assert out["parsed"] is None and isinstance(out["parsing_error"], OutputParserException)
        assert out["raw"].response_metadata["answer_truncated"] is True


@needs_engine_tools
def test_plain_generation_streams_no_call_markup(tiny_engine):
    """Without collaboration the worker's tokens are the answer: a call it writes comes back as a call,
    and the streamed content equals invoke's (no ``<tool_call>`` markup)."""
    plain = ChatHogwild(engine=tiny_engine, max_forwards=300, max_tokens=300, collaboration=False)
    bound = plain.bind_tools([add], tool_choice="add")
    message = bound.invoke("Add 2 and 3.")
    chunks = list(bound.stream("Add 2 and 3."))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert [c["name"] for c in message.tool_calls] == [c["name"] for c in merged.tool_calls] == ["add"]
    assert "<tool_call>" not in merged.content and merged.content == message.content
