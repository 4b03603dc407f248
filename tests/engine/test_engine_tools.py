"""Tools inside runs on tiny random models: forced calls, results in all views, failures, resume."""

from __future__ import annotations

import time
from typing import Literal

import pytest
from scripted import ScriptedWriters
from tiny_models import tiny_model

from hogwild_agents import (
    HogwildEngine,
    InvalidRequestError,
    TokenEvent,
    Tool,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
)

VOCAB, EOS = 151936, 151645
ASK = [{"role": "user", "content": "Add 2 and 3."}]


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: first addend.
        b: second addend.
    """
    return a + b


def pick(color: Literal["red", "blue"], twice: bool) -> str:
    """Pick a colour (bounded arguments, so even a random model closes the call quickly).

    Args:
        color: the colour.
        twice: say it twice.
    """
    return f"{color} {color}" if twice else color


def engine_for(tokenizer, **cfg) -> HogwildEngine:
    model = tiny_model("qwen2", vocab_size=VOCAB, eos_token_id=EOS)
    return HogwildEngine(
        model, tokenizer, **{"page_size": 8, "max_cache_tokens": 8192, "max_answer_tokens": 6, **cfg}
    )


def test_forced_call_runs_and_result_is_in_every_view(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=3, max_forwards=60)
    events = list(
        engine.stream(ASK, tools=[Tool.from_function(add), Tool.from_function(pick)], tool_choice="pick")
    )
    result = events[-1].result
    started = [e for e in events if isinstance(e, ToolCallStartedEvent)]
    finished = [e for e in events if isinstance(e, ToolCallFinishedEvent)]
    assert started and started[0].worker == "Alice" and started[0].name == "pick"
    assert finished[0].content == pick(**started[0].arguments) and not finished[0].is_error
    # The result tokens sit in Alice's block; every worker attends to that block in a later forward.
    result_ids = qwen_tokenizer.encode(finished[0].content, add_special_tokens=False)
    trace = result.trace
    holder, at = next(
        (b, i)
        for b in trace.blocks.values()
        if b.author == "Alice"
        for i in range(len(b.token_ids))
        if b.token_ids[i : i + len(result_ids)] == result_ids
    )
    written = holder.written_at[at + len(result_ids) - 1]  # the forward that wrote the result
    for name in ("Alice", "Bob", "Carol"):
        assert any(
            g.writer == name and holder.id in g.view
            for f in trace.forwards
            if f.index > written
            for g in f.groups
        ), name
    # Alice resumed: she generated tokens after the result was written.
    alice_after = [
        e
        for e in events
        if isinstance(e, TokenEvent)
        and e.worker == "Alice"
        and e.generated
        and e.forward > finished[0].forward
    ]
    assert alice_after
    assert result.tool_events[0].name == "pick"


@pytest.mark.parametrize(
    ("call", "expect"),
    [
        ('<tool_call>\n{"name": "boom", "arguments": {}}\n</tool_call>', "Error: RuntimeError: kaboom"),
        ('<tool_call>\n{"name": "hang", "arguments": {}}\n</tool_call>', "timed out after 0.5 s"),
        ('<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>', "unknown tool 'nope'"),
        ('<tool_call>\n{"name": "add", "arguments": {"a": "x"}}\n</tool_call>', "invalid arguments"),
        ('<tool_call>\n{"name": "huge", "arguments": {}}\n</tool_call>', "[truncated:"),
    ],
)
def test_failing_tools_leave_error_text_and_engine_usable(qwen_tokenizer, monkeypatch, call, expect) -> None:
    def boom() -> str:
        """Always fails."""
        raise RuntimeError("kaboom")

    def hang() -> str:
        """Never returns in time."""
        time.sleep(3)
        return "late"

    def huge() -> str:
        """Returns far too much."""
        return "word " * 5000

    tools = [Tool.from_function(f) for f in (add, boom, hang, huge)]
    ScriptedWriters(qwen_tokenizer, {"Alice": call}, EOS).install(monkeypatch)
    engine = engine_for(
        qwen_tokenizer,
        workers=2,
        max_forwards=40,
        tool_timeout_s=0.5,
        max_tool_result_tokens=32,
        constrain_tool_calls=False,
    )  # the scripted calls bypass the sampler's grammar
    result = engine.run(ASK, tools=tools)
    assert expect in result.workers[0].text
    assert result.tool_events and result.tool_events[0].is_error == ("truncated" not in expect)
    monkeypatch.undo()
    assert engine.run(ASK, max_forwards=3).stop_reason == "max_forwards"
    assert engine.runner.store.free_pages == engine.runner.store.num_pages


def test_others_keep_writing_while_a_tool_runs(qwen_tokenizer, monkeypatch) -> None:
    def slow(x: int) -> int:
        """Takes two seconds.

        Args:
            x: echoed back.
        """
        time.sleep(2.0)
        return x

    ScriptedWriters(
        qwen_tokenizer, {"Alice": '<tool_call>\n{"name": "slow", "arguments": {"x": 7}}\n</tool_call>'}, EOS
    ).install(monkeypatch)
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=400, constrain_tool_calls=False)
    start = time.perf_counter()
    bob_during = 0
    started = finished = None
    for e in engine.stream(ASK, tools=[Tool.from_function(slow)]):
        if isinstance(e, ToolCallStartedEvent):
            started = time.perf_counter()
        elif isinstance(e, ToolCallFinishedEvent):
            finished = time.perf_counter()
        elif isinstance(e, TokenEvent) and e.worker == "Bob" and started and not finished:
            bob_during += 1
        if finished and time.perf_counter() - finished > 0.5:
            break
    assert started and finished and finished - started >= 1.9
    assert bob_during >= 5  # Bob kept generating while Alice's tool ran
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0 + (finished - start)  # overlapped, not sequential


def test_return_mode_resume_reencodes_only_the_new_tokens(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=6, max_answer_tokens=64)
    tools = [Tool.from_function(pick)]
    first = engine.run(ASK, tools=tools, tool_mode="return", tool_choice="required")
    assert first.stop_reason in ("max_forwards", "tool_calls") and len(first.tool_calls) == 1
    call = first.tool_calls[0]
    follow_up = [
        *ASK,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "pick", "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "5"},
    ]
    second = engine.run(follow_up, tools=tools, tool_mode="return", tool_choice="auto")
    # Different options: not the same conversation state -> a fresh run.
    assert second.usage.reused_prompt_tokens == 0 and second.usage.prompt_tokens > 0
    first = engine.run(ASK, tools=tools, tool_mode="return", tool_choice="required")
    call = first.tool_calls[0]
    follow_up[1]["tool_calls"][0]["id"] = call.id
    follow_up[2]["tool_call_id"] = call.id
    resumed = engine.run(follow_up, tools=tools, tool_mode="return", tool_choice="required")
    result_tokens = len(
        qwen_tokenizer.encode(
            engine.tool_format.render_result_block(type("O", (), {"content": "5"})()),
            add_special_tokens=False,
        )
    )
    assert resumed.usage.prompt_tokens == 0
    assert resumed.usage.reused_prompt_tokens == sum(len(b.token_ids) for b in first.trace.blocks.values())
    assert resumed.usage.fed_tokens == result_tokens  # only the tool result was encoded
    engine.drop_kept_runs()
    assert engine.runner.store.free_pages == engine.runner.store.num_pages


def test_tool_request_errors(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=2)
    with pytest.raises(InvalidRequestError, match="tool_choice 'mul'"):
        engine.run(ASK, tools=[Tool.from_function(add)], tool_choice="mul")
    with pytest.raises(InvalidRequestError, match="needs callables"):
        engine.run(ASK, tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert engine.run(ASK).stop_reason == "max_forwards"


def test_a_kept_run_does_not_eat_another_runs_context_window(qwen_tokenizer, monkeypatch) -> None:
    """The context check counts the run's own blocks, not everything in the shared store."""
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=12, constrain_tool_calls=False)
    alone = engine.run(ASK)
    used = sum(len(b.token_ids) for b in alone.trace.blocks.values())
    window = used * 3 // 2  # room for one run, not for two
    assert engine.run(ASK, context_window=window).stop_reason == "max_forwards"
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    ScriptedWriters(qwen_tokenizer, {"Alice": call}, EOS).install(monkeypatch)
    kept = engine.run(ASK, tools=[Tool.from_function(add)], tool_mode="return", max_forwards=40)
    assert kept.stop_reason == "tool_calls" and engine._kept  # suspended, its pages kept in the store
    monkeypatch.undo()
    assert engine.run(ASK, context_window=window).stop_reason == "max_forwards"


@pytest.mark.parametrize(
    "call",
    [
        '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
        '```json\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n```',
        '{"name": "add", "arguments": {"a": 2, "b": 3}}',
    ],
    ids=["tagged", "fenced", "bare"],
)
def test_answer_stream_never_carries_call_markup(qwen_tokenizer, monkeypatch, call) -> None:
    """Return mode: the text before a call streams live; the call reaches the caller only as a call."""
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=3, max_answer_tokens=64)
    ScriptedWriters(qwen_tokenizer, {"finisher": f"Let me add them. {call}"}, EOS).install(monkeypatch)
    events = list(engine.stream(ASK, tools=[Tool.from_function(add)], tool_mode="return"))
    streamed = "".join(e.text for e in events if type(e).__name__ == "AnswerEvent")
    result = events[-1].result
    assert [c.name for c in result.tool_calls] == ["add"] and result.tool_calls[0].arguments == {
        "a": 2,
        "b": 3,
    }
    assert streamed.strip() == "Let me add them."
    assert "{" not in streamed and "<tool" not in streamed and "```" not in streamed
    engine.drop_kept_runs()


def test_answer_without_a_call_streams_whole(qwen_tokenizer, monkeypatch) -> None:
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=3, max_answer_tokens=64)
    ScriptedWriters(qwen_tokenizer, {"finisher": "Two and three make five."}, EOS).install(monkeypatch)
    events = list(engine.stream(ASK, tools=[Tool.from_function(add)], tool_mode="return"))
    streamed = "".join(e.text for e in events if type(e).__name__ == "AnswerEvent")
    assert streamed.strip() == events[-1].result.answer == "Two and three make five."


def test_next_forward_landing_gives_the_same_run_however_long_the_tool_takes(qwen_tokenizer, monkeypatch):
    """tool_landing='next_forward': the result lands at the forward after the call closed, and the run's
    forwards, tokens and answer do not depend on the tool's speed (greedy, random weights)."""
    delay = {"s": 0.0}

    def slow(x: int) -> int:
        """Echo after a delay.

        Args:
            x: echoed back.
        """
        time.sleep(delay["s"])
        return x

    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=40, constrain_tool_calls=False)
    call = '<tool_call>\n{"name": "slow", "arguments": {"x": 7}}\n</tool_call>'

    def run(seconds: float) -> tuple[list, list, str, list]:
        delay["s"] = seconds
        monkeypatch.undo()  # a fresh script for each run
        ScriptedWriters(qwen_tokenizer, {"Alice": call}, EOS).install(monkeypatch)
        events = list(engine.stream(ASK, tools=[Tool.from_function(slow)], tool_landing="next_forward"))
        result = events[-1].result
        calls = [
            (e.forward, type(e).__name__)
            for e in events
            if isinstance(e, (ToolCallStartedEvent, ToolCallFinishedEvent))
        ]
        fed = [[(g.writer, g.fed, g.sampled) for g in f.groups] for f in result.trace.forwards]
        return (
            calls,
            fed,
            result.answer,
            [e.forward for e in events if isinstance(e, TokenEvent) and e.worker == "Bob"],
        )

    fast_calls, fast_fed, fast_answer, _ = run(0.0)
    slow_calls, slow_fed, slow_answer, bob = run(0.8)
    assert [kind for _, kind in slow_calls] == ["ToolCallStartedEvent", "ToolCallFinishedEvent"]
    started, finished = slow_calls[0][0], slow_calls[1][0]
    assert finished == started + 1  # the forward right after the call closed, though the tool took 0.8 s
    assert (slow_calls, slow_fed, slow_answer) == (fast_calls, fast_fed, fast_answer)
    assert not [f for f in bob if started < f < finished]  # the run paused: Bob wrote nothing meanwhile
