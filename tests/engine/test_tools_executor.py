"""ToolExecutor: errors, timeouts, async tools, truncation, unknown tools and concurrency."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import BaseModel

from hogwild_agents.tools import Tool, ToolCall, ToolExecutor


@pytest.fixture
def executor():
    ex = ToolExecutor(max_workers=4)
    yield ex
    ex.shutdown()


def _run(executor, fn, args=None, **kwargs):
    tool = Tool.from_function(fn)
    return executor.submit(ToolCall(tool.name, args or {}), tool, **kwargs).result(timeout=5)


def test_sync_result(executor):
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    outcome = _run(executor, add, {"a": 2, "b": 3})
    assert (outcome.content, outcome.is_error, outcome.truncated) == ("5", False, False)
    assert outcome.call.name == "add" and outcome.duration_s >= 0


def test_raising_tool_becomes_error_text(executor):
    def boom(x: int) -> str:
        """Fail."""
        raise KeyError(f"no item {x}")

    outcome = _run(executor, boom, {"x": 7})
    assert outcome.is_error and outcome.content == "Error: KeyError: 'no item 7'"


def test_hanging_tool_times_out_and_pool_keeps_working(executor):
    def hang() -> str:
        """Hang."""
        time.sleep(3)
        return "late"

    def quick() -> str:
        """Quick."""
        return "ok"

    start = time.perf_counter()
    outcomes = [_run(executor, hang, timeout_s=0.5) for _ in range(4)]  # every pool thread hangs
    assert all(o.is_error and o.content == "Error: tool 'hang' timed out after 0.5 s" for o in outcomes)
    assert time.perf_counter() - start < 2.6
    assert _run(executor, quick).content == "ok"  # replacements serve new calls at once


def test_tool_level_timeout_is_used(executor):
    def slow() -> str:
        """Slow."""
        time.sleep(2)
        return "late"

    tool = Tool.from_function(slow, timeout_s=0.2)
    outcome = executor.submit(ToolCall("slow", {}), tool).result(timeout=5)
    assert outcome.content == "Error: tool 'slow' timed out after 0.2 s"


def test_async_tool_and_async_timeout(executor):
    async def fetch(url: str) -> dict:
        """Fetch."""
        await asyncio.sleep(0.05)
        return {"url": url, "status": 200}

    async def stuck() -> str:
        """Never returns."""
        await asyncio.sleep(30)
        return "late"

    outcome = _run(executor, fetch, {"url": "http://x"})
    assert outcome.content == '{"url":"http://x","status":200}' and not outcome.is_error
    outcome = _run(executor, stuck, timeout_s=0.5)
    assert outcome.content == "Error: tool 'stuck' timed out after 0.5 s"


def test_async_tool_raising(executor):
    async def bad() -> str:
        """Bad."""
        raise RuntimeError("nope")

    assert _run(executor, bad).content == "Error: RuntimeError: nope"


def test_huge_result_is_truncated_with_marker(executor):
    def dump() -> str:
        """Dump."""
        return "word " * 1000

    count = lambda s: len(s.split())  # noqa: E731
    cut = lambda s, n: " ".join(s.split()[:n])  # noqa: E731
    outcome = _run(executor, dump, max_result_tokens=10, count_tokens=count, truncate=cut)
    assert outcome.truncated and not outcome.is_error
    assert outcome.content == " ".join(["word"] * 10) + "\n… [truncated: 10 of 1000 tokens shown]"


def test_unknown_tool_and_bad_arguments_do_not_run(executor):
    ran = []

    def add(a: int, b: int) -> int:
        """Add."""
        ran.append(1)
        return a + b

    outcome = executor.submit(ToolCall("launch", {}), None).result(timeout=1)
    assert outcome.is_error and outcome.content == "Error: unknown tool 'launch'"
    tool = Tool.from_function(add)
    outcome = executor.submit(ToolCall("add", {"a": 1}), tool).result(timeout=1)
    assert outcome.is_error and "field '$.b'" in outcome.content and "required" in outcome.content
    outcome = executor.submit(ToolCall("add", {}, error="could not parse tool call JSON: x"), tool).result(1)
    assert outcome.content == "Error: could not parse tool call JSON: x"
    assert ran == []


def test_non_string_results_are_serialised(executor):
    class Point(BaseModel):
        x: int
        y: int

    def point() -> Point:
        """Point."""
        return Point(x=1, y=2)

    def junk() -> object:
        """Junk."""
        return object()

    assert _run(executor, point).content == '{"x":1,"y":2}'
    outcome = _run(executor, junk)
    assert outcome.is_error and outcome.content.startswith(
        "Error: tool 'junk' returned a object that is not JSON"
    )
    assert "<object object at" in outcome.content


def test_two_tools_run_in_parallel(executor):
    def nap(s: float) -> str:
        """Sleep."""
        time.sleep(s)
        return "done"

    tool = Tool.from_function(nap)
    start = time.perf_counter()
    futures = [executor.submit(ToolCall("nap", {"s": 0.5}), tool) for _ in range(2)]
    assert [f.result(timeout=5).content for f in futures] == ["done", "done"]
    assert time.perf_counter() - start < 0.9


def test_submit_after_shutdown_is_an_error():
    ex = ToolExecutor(max_workers=1)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(ToolCall("x", {}), None)
