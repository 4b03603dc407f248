"""Contract tests of ``llama_index.llms.hogwild.Hogwild`` on a tiny random Qwen2 with the real tokenizer.

The tiny model writes gibberish; these tests pin structure (entry points, blocks, streaming, usage, tool
calls, errors), which must hold whatever the model writes.
"""

from pathlib import Path
from typing import Literal

import llama_index.llms.hogwild as package
import pytest
from llama_index.core import Settings
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import FunctionTool
from llama_index.llms.hogwild import Hogwild

import hogwild_agents
from hogwild_agents.engine import registry

USER = [ChatMessage(role="user", content="What is 2 + 3?")]


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def subtract(a: int, b: int) -> int:
    """Subtract b from a."""
    return a - b


# Tool tests on the random model use enum-only arguments: the grammar then forces a call that closes within a
# few tokens (an integer argument lets a random model write digits until the answer budget runs out).
def pick_city(city: Literal["Paris", "Rome"]) -> str:
    """Pick a city."""
    return f"picked {city}"


def set_mode(mode: Literal["fast", "slow"]) -> str:
    """Set the mode."""
    return f"mode {mode}"


# Per-run overrides (the shared tiny engine has the library's defaults); the team always, as these tests
# look at the workers' thinking ("auto" would answer the short test prompts with one plain worker).
BUDGET = {"max_forwards": 6, "max_answer_tokens": 8, "collaboration": True}


@pytest.fixture
def llm(tiny_engine):
    return Hogwild(engine=tiny_engine, **BUDGET)


def _usage_ok(raw):
    usage = raw["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def _thinking(message):
    return [b for b in message.blocks if isinstance(b, ThinkingBlock)]


# ------------------------------------------------------------------------------------------- packaging
def test_public_api_is_pinned():
    assert package.__all__ == ["Hogwild", "__version__"]


def test_namespace_packaging_keeps_llama_index_core_importable():
    root = Path(package.__file__).parents[2]  # .../integrations/llama-index/llama_index
    assert root.name == "llama_index"
    assert not (root / "__init__.py").exists()
    assert not (root / "llms" / "__init__.py").exists()
    import llama_index.core

    assert Path(llama_index.core.__file__).parent.name == "core"


def test_class_hierarchy_and_name():
    assert issubclass(Hogwild, FunctionCallingLLM)
    assert BaseLLM.__name__ in [c.__name__ for c in Hogwild.__mro__]
    assert Hogwild.class_name() == "Hogwild_llm"


# ------------------------------------------------------------------------------------ construction
def test_construction_is_lazy_and_validated(monkeypatch):

    loads = []

    def fake_from_pretrained(model, **kwargs):
        loads.append((model, kwargs))
        return object()

    monkeypatch.setattr(hogwild_agents.HogwildEngine, "from_pretrained", staticmethod(fake_from_pretrained))
    monkeypatch.setattr(registry, "_ENGINES", {})
    first = Hogwild(
        model="some/model", workers=3, additional_kwargs={"page_size": 32, "layout": "interleaved"}
    )
    assert loads == []  # nothing loaded at construction
    second = Hogwild(model="some/model", workers=4, additional_kwargs={"page_size": 32})
    other = Hogwild(model="some/model", additional_kwargs={"page_size": 16})
    assert first.engine is second.engine  # equal engine settings share one engine
    assert other.engine is not first.engine
    assert len(loads) == 2
    assert loads[0] == ("some/model", {"device": None, "dtype": None, "page_size": 32})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": -1.0}, "temperature"),
        ({"workers": 0}, "workers"),
        ({"additional_kwargs": {"bogus": 1}}, "bogus"),
        ({"additional_kwargs": {"tool_mode": "execute"}}, "may not set"),
        ({"additional_kwargs": {"layout": "sideways"}}, "layout"),
    ],
)
def test_bad_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Hogwild(**kwargs)


def test_engine_must_be_an_engine():
    with pytest.raises(TypeError, match="HogwildEngine"):
        Hogwild(engine="not an engine")


def test_metadata_is_truthful(tiny_engine):
    meta = Hogwild(engine=tiny_engine).metadata
    assert meta.context_window == tiny_engine.runner.geometry.context_window == 4096
    assert meta.is_chat_model and meta.is_function_calling_model
    assert meta.num_output == tiny_engine.config.max_answer_tokens
    assert meta.model_name
    capped = Hogwild(engine=tiny_engine, context_window=1024, max_answer_tokens=5).metadata
    assert (capped.context_window, capped.num_output) == (1024, 5)
    plain = Hogwild(engine=tiny_engine, collaboration=False, workers=1, max_new_tokens=7).metadata
    assert plain.num_output == 7


# ---------------------------------------------------------------------------------------------- chat
def test_chat_returns_thinking_answer_and_usage(llm, tiny_engine):
    response = llm.chat(USER)
    assert isinstance(response, ChatResponse)
    thinking = _thinking(response.message)
    assert [b.additional_information["worker"] for b in thinking] == tiny_engine.config.names[:2]
    assert all(b.content for b in thinking)
    assert isinstance(response.message.blocks[len(thinking)], TextBlock)
    assert isinstance(response.message.content, str)
    _usage_ok(response.raw)
    assert response.raw["stop_reason"]


def test_complete_and_per_call_overrides(llm):
    response = llm.complete("Say hi", max_answer_tokens=2, workers=1)
    assert isinstance(response, CompletionResponse)
    assert response.raw["usage"]["answer_tokens"] <= 2
    assert len(response.raw["workers"]) == 1


def test_stream_chat_is_cumulative_with_thinking_deltas(llm):
    chunks = list(llm.stream_chat(USER))
    assert len(chunks) > 2
    per_worker: dict[str, str] = {}
    for chunk in chunks[:-1]:
        if "thinking_delta" in chunk.additional_kwargs:
            worker = chunk.additional_kwargs["worker"]
            per_worker[worker] = per_worker.get(worker, "") + chunk.additional_kwargs["thinking_delta"]
    last = chunks[-1]
    final_thinking = {b.additional_information["worker"]: b.content for b in _thinking(last.message)}
    assert per_worker == final_thinking
    # the final answer is stripped of surrounding whitespace; the streamed deltas are what was written
    assert "".join(c.delta or "" for c in chunks).strip() == last.message.content
    _usage_ok(last.raw)


def test_stream_complete(llm):
    chunks = list(llm.stream_complete("Say hi"))
    assert isinstance(chunks[-1], CompletionResponse)
    assert "".join(c.delta or "" for c in chunks).strip() == chunks[-1].text
    _usage_ok(chunks[-1].raw)


async def test_async_entry_points(llm):
    response = await llm.achat(USER)
    _usage_ok(response.raw)
    assert len(_thinking(response.message)) == 2
    chunks = [c async for c in await llm.astream_chat(USER)]
    assert any("thinking_delta" in c.additional_kwargs for c in chunks)
    _usage_ok(chunks[-1].raw)
    completion = await llm.acomplete("Say hi")
    assert isinstance(completion, CompletionResponse)
    streamed = [c async for c in await llm.astream_complete("Say hi")]
    assert "".join(c.delta or "" for c in streamed).strip() == streamed[-1].text


def test_settings_llm(llm):
    previous = Settings._llm
    try:
        Settings.llm = llm
        assert Settings.llm is llm
        assert isinstance(Settings.llm.predict_and_call, object)
        assert isinstance(Settings.llm.complete("Say hi").text, str)
    finally:
        Settings._llm = previous


# --------------------------------------------------------------------------------------------- errors
def test_bad_input_raises_and_the_object_stays_usable(llm):
    image = [ChatMessage(role="user", blocks=[ImageBlock(url="http://example.com/cat.png")])]
    with pytest.raises(ValueError, match="ImageBlock"):
        llm.chat(image)
    with pytest.raises(ValueError, match="answers no earlier"):
        llm.chat([*USER, ChatMessage(role="tool", content="5", additional_kwargs={"tool_call_id": "call_x"})])
    with pytest.raises(ValueError, match="neither"):
        llm.chat_with_tools([FunctionTool.from_defaults(add)], user_msg="hi", tool_choice="multiply")
    with pytest.raises(ValueError, match="need tools"):
        llm.chat(USER, tool_choice="required")
    with pytest.raises(ValueError, match="unknown option"):
        llm.chat(USER, not_an_option=1)
    with pytest.raises(ValueError, match="cannot be set per call"):
        llm.chat(USER, page_size=8)
    _usage_ok(llm.chat(USER, max_answer_tokens=2).raw)


def test_get_tool_calls_without_a_call(llm):
    response = ChatResponse(message=ChatMessage(role="assistant", content="no tools here"))
    assert llm.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    with pytest.raises(ValueError, match="expected at least one tool call"):
        llm.get_tool_calls_from_response(response)


def test_parallel_calls_trimmed_unless_allowed(llm):
    def make():
        blocks = [
            ToolCallBlock(tool_call_id=f"call_{i}", tool_name="add", tool_kwargs={"a": i}) for i in range(3)
        ]
        return ChatResponse(message=ChatMessage(role="assistant", blocks=blocks))

    assert len(llm.get_tool_calls_from_response(llm._validate_chat_with_tools_response(make(), []))) == 1
    allowed = llm._validate_chat_with_tools_response(make(), [], allow_parallel_tool_calls=True)
    assert len(llm.get_tool_calls_from_response(allowed)) == 3


# ---------------------------------------------------------------------------------------------- tools
CITY = FunctionTool.from_defaults(pick_city)
MODE = FunctionTool.from_defaults(set_mode)


def test_tool_required_round_trip(llm):
    """Constrained decoding makes even the random model emit a parseable call; its result goes back in."""
    response = llm.chat_with_tools([CITY, MODE], user_msg="Pick a city.", tool_required=True)
    calls = llm.get_tool_calls_from_response(response)
    assert len(calls) == 1  # allow_parallel_tool_calls=False keeps the first
    call = calls[0]
    assert call.tool_name in {"pick_city", "set_mode"}
    assert set(call.tool_kwargs) <= {"city", "mode"}
    assert call.tool_id
    blocks = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
    assert blocks[0].tool_call_id == call.tool_id
    assert "<tool_call>" not in response.message.content
    _usage_ok(response.raw)
    output = (CITY if call.tool_name == "pick_city" else MODE).call(**call.tool_kwargs)
    tool_message = ChatMessage(
        role="tool", content=str(output), additional_kwargs={"tool_call_id": call.tool_id}
    )
    follow_up = llm.chat([ChatMessage(role="user", content="Pick a city."), response.message, tool_message])
    assert isinstance(follow_up.message.content, str)
    assert follow_up.raw["usage"]["completion_tokens"] > 0


def test_tool_choice_by_name_is_enforced(llm):
    response = llm.chat_with_tools([CITY, MODE], user_msg="Pick a city.", tool_choice="set_mode")
    calls = llm.get_tool_calls_from_response(response)
    assert [c.tool_name for c in calls] == ["set_mode"]
    assert calls[0].tool_kwargs["mode"] in {"fast", "slow"}


def test_streamed_tool_call_is_complete_on_the_last_chunk(llm):
    chunks = list(llm.stream_chat_with_tools([CITY], user_msg="Pick a city.", tool_required=True))
    calls = llm.get_tool_calls_from_response(chunks[-1])
    assert [c.tool_name for c in calls] == ["pick_city"]
    assert all("<tool_call>" not in c.message.content for c in chunks), "call markup leaked into the text"


async def test_async_tool_call(llm):
    response = await llm.achat_with_tools([CITY], user_msg="Pick a city.", tool_choice="pick_city")
    assert [c.tool_name for c in llm.get_tool_calls_from_response(response)] == ["pick_city"]


def test_execute_tools_runs_the_function_in_the_engine(tiny_engine):
    ran = []

    def choose(city: Literal["Paris", "Rome"]) -> str:
        """Pick a city."""
        ran.append(city)
        return f"picked {city}"

    # the first worker is forced to open with the call (about 25 tokens), so give it the forwards to finish it
    llm = Hogwild(engine=tiny_engine, execute_tools=True, max_forwards=40, max_answer_tokens=4)
    response = llm.chat_with_tools(
        [FunctionTool.from_defaults(choose)], user_msg="Pick a city.", tool_required=True
    )
    assert llm.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    assert response.raw["tool_events"], "the engine should have run the required tool"
    assert ran, "the FunctionTool's function should have been called by the engine"
    event = response.raw["tool_events"][0]
    assert (event["name"], event["content"]) == ("choose", f"picked {ran[0]}")
    assert not event["is_error"]


# ------------------------------------------------------------------------------- chat defaults ("auto")
def test_defaults_answer_a_greeting_with_one_plain_worker(tiny_engine):
    llm = Hogwild(engine=tiny_engine, max_answer_tokens=5)  # front-end defaults: collaboration="auto"
    hello = [ChatMessage(role="user", content="Hello")]
    response = llm.chat(hello)
    assert response.raw["stop_reason"] == "max_answer_tokens"
    assert [w["name"] for w in response.raw["workers"]] == ["Alice"]
    assert not [b for b in response.message.blocks if b.block_type == "thinking"]
    assert response.raw["usage"]["completion_tokens"] == 5
    streamed = list(llm.stream_chat(hello))
    assert "".join(r.delta or "" for r in streamed) == response.message.content
    assert not any("thinking_delta" in r.additional_kwargs for r in streamed)


def test_defaults_give_a_task_to_the_team_and_roles_name_it(tiny_engine):
    from hogwild_agents import WorkerRole

    llm = Hogwild(engine=tiny_engine, max_forwards=3, max_answer_tokens=4, early_exit=False)
    task = [ChatMessage(role="user", content="What is 17 + 25? Then add 5.")]
    assert [w["name"] for w in llm.chat(task).raw["workers"]] == ["Alice", "Bob"]
    roles = [
        WorkerRole(name="Planner", instructions="Plan."),
        WorkerRole(name="Solver", instructions="Solve."),
    ]
    with_roles = Hogwild(engine=tiny_engine, roles=roles, max_forwards=2, max_answer_tokens=3)
    assert [w["name"] for w in with_roles.chat(task).raw["workers"]] == ["Planner", "Solver"]
