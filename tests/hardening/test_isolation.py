"""One request must not harm others: tool failures, blocking async tools, cancellation, timeouts, threads."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest
from hardening_helpers import QUESTION, engine_for

from hogwild_agents import FinishedEvent, Tool, ToolCallStartedEvent
from hogwild_agents.tools import ToolCall, ToolExecutor
from hogwild_agents.tools.executor import tokenizer_counters

SCHEMA = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"]}


def _tool(func, name: str = "lookup", **kw) -> Tool:
    return Tool(name=name, description="Look a city up.", parameters=SCHEMA, func=func, **kw)


def _call(name: str = "lookup") -> ToolCall:
    return ToolCall(name=name, arguments={"city": "Paris"})


# --- error texts
@pytest.mark.parametrize(
    "error",
    [
        ValueError("x" * 3_000_000),
        RuntimeError("<|im_end|>\n" * 200_000),
        KeyError("k" * 2_000_000),
    ],
)
def test_huge_tool_error_texts_are_truncated_like_results(qwen_tokenizer, error: BaseException) -> None:
    def boom(city: str) -> str:
        raise error

    count, truncate = tokenizer_counters(qwen_tokenizer)
    with ToolExecutor(max_workers=2) as executor:
        start = time.perf_counter()
        outcome = executor.submit(
            _call(), _tool(boom), max_result_tokens=64, count_tokens=count, truncate=truncate
        ).result(timeout=30)
    assert outcome.is_error and outcome.truncated
    assert outcome.content.startswith(f"Error: {type(error).__name__}: ")
    assert count(outcome.content) < 64 + 40
    assert time.perf_counter() - start < 5, "a multi-MB message must not be encoded whole"


def test_huge_results_and_unprintable_errors_stay_bounded(qwen_tokenizer) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    def unprintable(city: str) -> str:
        raise Unprintable()

    count, truncate = tokenizer_counters(qwen_tokenizer)
    with ToolExecutor(max_workers=2) as executor:
        big = executor.submit(
            _call(),
            _tool(lambda city: "word " * 1_000_000),
            max_result_tokens=32,
            count_tokens=count,
            truncate=truncate,
        ).result(timeout=30)
        odd = executor.submit(_call(), _tool(unprintable)).result(timeout=10)
    assert big.truncated and count(big.content) < 80
    assert odd.is_error and "Unprintable" in odd.content


# --- async tools
@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError])
def test_an_async_tool_raising_base_exceptions_harms_no_later_call(kind: type[BaseException]) -> None:
    async def bad(city: str) -> str:
        raise kind()

    async def good(city: str) -> str:
        await asyncio.sleep(0.01)
        return f"fine {city}"

    with ToolExecutor(max_workers=2) as executor:
        first = executor.submit(_call(), _tool(bad), timeout_s=5).result(timeout=10)
        assert first.is_error and kind.__name__ in first.content
        later = [executor.submit(_call(), _tool(good), timeout_s=5) for _ in range(4)]
        assert [f.result(timeout=10).content for f in later] == ["fine Paris"] * 4


def test_a_blocking_async_tool_delays_no_other_call() -> None:
    async def blocks(city: str) -> str:
        time.sleep(1.5)  # blocks its event loop: only its own call may wait for it
        return "late"

    async def quick(city: str) -> str:
        await asyncio.sleep(0)
        return "quick"

    with ToolExecutor(max_workers=4) as executor:
        slow = executor.submit(_call(), _tool(blocks), timeout_s=10)
        time.sleep(0.05)
        start = time.perf_counter()
        fast = [executor.submit(_call(), _tool(quick), timeout_s=10) for _ in range(3)]
        assert [f.result(timeout=10).content for f in fast] == ["quick"] * 3
        assert time.perf_counter() - start < 0.5
        assert slow.result(timeout=10).content == "late"


def test_a_timed_out_async_tool_is_cancelled_and_its_thread_returns() -> None:
    cancelled = threading.Event()

    async def hangs(city: str) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    with ToolExecutor(max_workers=1) as executor:
        outcome = executor.submit(_call(), _tool(hangs), timeout_s=0.2).result(timeout=10)
        assert outcome.is_error and "timed out" in outcome.content
        assert cancelled.wait(5)
        assert (
            executor.submit(_call(), _tool(lambda city: "next"), timeout_s=5).result(timeout=5).content
            == "next"
        )


# --- timeouts
@pytest.mark.parametrize("where", ["executor", "tool", "engine"])
def test_an_infinite_timeout_means_no_limit(qwen_tokenizer, where: str) -> None:
    if where == "engine":
        engine = engine_for(qwen_tokenizer, workers=1, collaboration=False, tool_timeout_s=float("inf"))
        result = engine.run(
            QUESTION, tools=[_tool(lambda city: "sunny")], tool_choice="required", max_forwards=60
        )
        assert [e.content for e in result.tool_events][:1] == ["sunny"]
        engine.close()
        return
    tool = _tool(lambda city: "sunny", timeout_s=float("inf") if where == "tool" else None)
    with ToolExecutor(max_workers=1) as executor:
        limit = float("inf") if where == "executor" else None
        assert executor.submit(_call(), tool, timeout_s=limit).result(timeout=5).content == "sunny"


def test_nan_or_negative_timeouts_are_refused(qwen_tokenizer) -> None:
    from hogwild_agents import InvalidRequestError

    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    for bad in (float("nan"), -1.0, 0.0):
        with pytest.raises(InvalidRequestError, match="tool_timeout_s"):
            engine.run(QUESTION, tool_timeout_s=bad)


# --- cancellation
def test_cancelling_an_astream_while_its_tool_runs_frees_the_pages_at_once(qwen_tokenizer) -> None:
    release = threading.Event()

    def sleeps(city: str) -> str:
        release.wait(30)
        return "done"

    engine = engine_for(qwen_tokenizer, workers=2, tool_timeout_s=30)
    store = engine.runner.store

    async def go() -> float:
        agen = engine.astream(QUESTION, tools=[_tool(sleeps)], tool_choice="required", max_forwards=80)
        async for event in agen:
            if isinstance(event, ToolCallStartedEvent):
                break
        await asyncio.sleep(0.1)  # the tool is running now
        assert store.free_pages < store.num_pages
        start = time.perf_counter()
        await agen.aclose()
        while store.free_pages != store.num_pages and time.perf_counter() - start < 5:
            await asyncio.sleep(0.01)
        return time.perf_counter() - start

    freed_after = asyncio.run(go())
    assert not release.is_set()  # the tool still sleeps
    assert store.free_pages == store.num_pages and freed_after < 1.0
    release.set()
    # The engine serves the next request normally.
    assert isinstance(list(engine.stream(QUESTION, max_forwards=3))[-1], FinishedEvent)
    engine.close()


# --- threads
def _hogwild_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("hogwild")]


def _settle(before: set[threading.Thread], timeout: float = 10.0) -> list[str]:
    """Wait until no hogwild thread is alive that was not alive at ``before``; return those still alive.

    Threads of earlier tests' engines may end meanwhile (idle schedulers exit): only new ones count.
    """
    deadline = time.monotonic() + timeout
    while True:
        extra = [t.name for t in _hogwild_threads() if t not in before]
        if not extra or time.monotonic() >= deadline:
            return extra
        gc.collect()
        time.sleep(0.05)


def _use_tools(engine) -> None:
    async def async_tool(city: str) -> str:
        return "async"

    for tool in (_tool(lambda city: "sync"), _tool(async_tool)):
        result = engine.run(QUESTION, tools=[tool], tool_choice="required", max_forwards=60)
        assert result.tool_events and not result.tool_events[0].is_error


def test_close_frees_the_tool_pool_and_scheduler_threads(qwen_tokenizer) -> None:
    before = set(_hogwild_threads())
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    _use_tools(engine)
    assert set(_hogwild_threads()) - before  # the engine started threads
    engine.close()
    assert _settle(before) == []


def test_garbage_collection_frees_an_engines_threads(qwen_tokenizer) -> None:
    before = set(_hogwild_threads())
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    _use_tools(engine)
    assert set(_hogwild_threads()) - before
    del engine
    assert _settle(before, timeout=15) == []


# --- stop strings: bounded up front, checked incrementally
def test_the_largest_stop_strings_cost_constant_work_per_token() -> None:
    """16 stop strings of 512 characters (the limit): feeding 4000 pieces stays linear in the text."""
    from hogwild_agents.text.stops import StopMatcher

    stops = [("ab" * 256)[:511] + chr(ord("A") + i) for i in range(16)]
    matcher = StopMatcher(stops)
    start = time.perf_counter()
    for _ in range(4000):
        matcher.feed("ab")  # always a prefix of every stop string: the worst case for naive checks
    elapsed = time.perf_counter() - start
    assert matcher.cut is None and elapsed < 1.0, f"{elapsed:.2f} s for 4000 pieces"
    assert matcher.held <= 512  # what a stream holds back is bounded by the longest stop string


def test_stop_strings_past_the_limits_are_refused(qwen_tokenizer) -> None:
    from hogwild_agents import InvalidRequestError

    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    for stop in (["x" * 513], [f"s{i}" for i in range(17)], [""], ["ok", ""]):
        with pytest.raises(InvalidRequestError, match="stop"):
            engine.run(QUESTION, stop=stop)
    engine.close()
