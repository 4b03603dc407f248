"""Soak: 200 mixed concurrent requests on one engine; good results equal their solo runs, nothing leaks.

Threads and asyncio tasks send, at the same time, good requests (teams, plain runs, sampled runs, JSON
answers, fast/slow/failing/hanging/async tools), streams that are cancelled at random points (sync and
async) and bad requests. Every good result must equal the same request run alone on the same engine
(tool runs use one plain worker, whose text cannot depend on when a tool returns); afterwards no page
and no thread is left over, and closing the engine ends all of its threads. The wall time is printed.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hardening_helpers import QUESTION, engine_for

from hogwild_agents import InvalidRequestError, Tool

SCHEMA = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"]}
JSON = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}


def _tools() -> dict[str, Tool]:
    def fast(city: str) -> str:
        return f"{city}: 2 million"

    def slow(city: str) -> str:
        time.sleep(0.3)
        return f"{city}: sunny"

    def failing(city: str) -> str:
        raise RuntimeError("backend down " * 50_000)  # a huge message, truncated like a result

    def hanging(city: str) -> str:
        time.sleep(1.0)  # past the run's tool_timeout_s
        return "never seen"

    async def async_tool(city: str) -> str:
        await asyncio.sleep(0.05)
        return f"{city}: async"

    async def async_blocking(city: str) -> str:
        time.sleep(0.2)  # blocks its own loop only
        return f"{city}: blocked"

    funcs = [fast, slow, failing, hanging, async_tool, async_blocking]
    return {
        f.__name__: Tool(name=f.__name__, description="City facts.", parameters=SCHEMA, func=f) for f in funcs
    }


TOOL_RUN = {
    "workers": 1,
    "collaboration": False,
    "tool_choice": "required",
    "max_forwards": 40,
    "tool_timeout_s": 0.5,
    "max_tool_result_tokens": 32,
}
GOOD: dict[str, tuple[Any, str | None, dict[str, Any]]] = {
    "team": (QUESTION, None, {"workers": 2, "max_forwards": 8}),
    "team3": (
        [{"role": "user", "content": "List three primes and add them."}],
        None,
        {"workers": 3, "max_forwards": 6},
    ),
    "plain": (QUESTION, None, {"workers": 1, "collaboration": False, "max_forwards": 10}),
    "sampled0": (QUESTION, None, {"workers": 2, "max_forwards": 6, "temperature": 0.9, "seed": 11}),
    "sampled1": (
        QUESTION,
        None,
        {"workers": 1, "collaboration": False, "max_forwards": 8, "temperature": 0.7, "seed": 5},
    ),
    "json": (
        QUESTION,
        None,
        {"workers": 1, "collaboration": False, "max_forwards": 30, "response_format": JSON},
    ),
    "stops": (
        QUESTION,
        None,
        {"workers": 1, "collaboration": False, "max_forwards": 12, "stop": ["the", "\n"]},
    ),
    **{f"tool_{name}": (QUESTION, name, TOOL_RUN) for name in _tools()},
}
BAD: list[tuple[Any, dict[str, Any]]] = [
    ([{"role": "user", "content": {"a set"}}], {}),
    (QUESTION, {"stop": [""]}),
    (QUESTION, {"seed": 2**70}),
    (QUESTION, {"response_format": {"type": "object", "properties": {"a": {"$ref": "#/$defs/X"}}}}),
    (QUESTION, {"tool_choice": "required"}),
    ([{"role": "user", "content": "\ud800"}], {}),
    (QUESTION, {"system_prompt": "{unknown}"}),
    (QUESTION, {"page_size": 4}),
]


def _key(result) -> tuple:
    return (
        result.answer,
        result.stop_reason,
        result.answer_truncated,
        tuple(w.text for w in result.workers),
        tuple((e.name, e.content, e.is_error) for e in result.tool_events),
    )


def _threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("hogwild"))


def _settle(target: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while _threads() > target and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.1)
    return _threads()


@pytest.mark.slow
def test_soak_200_mixed_requests(qwen_tokenizer) -> None:
    baseline = _settle(_threads())
    engine = engine_for(qwen_tokenizer, workers=2, max_cache_tokens=65536, max_answer_tokens=4)
    store = engine.runner.store
    tools = _tools()

    def request(kind: str) -> tuple[Any, dict[str, Any]]:
        messages, tool, overrides = GOOD[kind]
        return messages, {**overrides, "tools": [tools[tool]] if tool else None}

    solo = {}
    for kind in GOOD:
        messages, kw = request(kind)
        solo[kind] = _key(engine.run(messages, **kw))
    time.sleep(1.2)  # the hanging tools' threads finish and retire
    before = _settle(_threads())

    rng = random.Random(1234)
    plan = []  # (kind, good kind or bad index, cancel point)
    for i in range(200):
        roll = rng.random()
        if roll < 0.15:
            plan.append(("bad", rng.randrange(len(BAD)), 0))
        elif roll < 0.35:
            plan.append(("cancel", rng.choice(list(GOOD)), rng.randrange(1, 40)))
        else:
            plan.append(("good", rng.choice(list(GOOD)), 0))
    threaded, in_loop = plan[::2], plan[1::2]
    outcomes: list[tuple[str, str, Any]] = []
    lock = threading.Lock()

    def record(kind: str, name: Any, value: Any) -> None:
        with lock:
            outcomes.append((kind, name, value))

    def sync_one(item) -> None:
        kind, name, cut = item
        if kind == "bad":
            messages, kw = BAD[name]
            try:
                engine.run(messages, **kw)
                record(kind, name, "accepted")
            except InvalidRequestError:
                record(kind, name, "refused")
            return
        messages, kw = request(name)
        if kind == "cancel":
            stream = engine.stream(messages, **kw)
            for i, _event in enumerate(stream):
                if i >= cut:
                    break
            stream.close()
            record(kind, name, None)
            return
        record(kind, name, _key(engine.run(messages, **kw)))

    async def async_one(item) -> None:
        kind, name, cut = item
        if kind == "bad":
            messages, kw = BAD[name]
            try:
                await engine.arun(messages, **kw)
                record(kind, name, "accepted")
            except InvalidRequestError:
                record(kind, name, "refused")
            return
        messages, kw = request(name)
        if kind == "cancel":
            events = engine.astream(messages, **kw)
            i = 0
            async for _event in events:
                i += 1
                if i >= cut:
                    break
            await events.aclose()
            record(kind, name, None)
            return
        record(kind, name, _key(await engine.arun(messages, **kw)))

    async def loop_side() -> None:
        gate = asyncio.Semaphore(8)

        async def bounded(item) -> None:
            async with gate:
                await async_one(item)

        await asyncio.gather(*(bounded(item) for item in in_loop))

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(sync_one, item) for item in threaded]
        asyncio.run(loop_side())
        for f in futures:
            f.result()
    wall = time.perf_counter() - start

    assert len(outcomes) == 200
    good = [(name, value) for kind, name, value in outcomes if kind == "good"]
    bad = [value for kind, _, value in outcomes if kind == "bad"]
    mismatched = [name for name, value in good if value != solo[name]]
    for name, value in good:
        if value != solo[name]:
            print("MISMATCH", name, "\nsolo:", str(solo[name])[:1500], "\nsoak:", str(value)[:1500])
    assert not mismatched, f"results differ from their solo runs: {mismatched}"
    assert bad and set(bad) == {"refused"}
    assert store.free_pages == store.num_pages, "pages leaked"
    time.sleep(1.2)  # hanging tools still sleeping when their runs ended finish now
    after = _settle(before)
    assert after <= before, f"threads leaked: {before} before, {after} after"
    print(
        f"\nsoak: {len(good)} good (all equal to their solo runs), {len(bad)} refused, "
        f"{sum(k == 'cancel' for k, _, _ in outcomes)} cancelled, 200 requests in {wall:.1f} s; "
        f"{engine.scheduler.batched_forwards} batched forwards; pages free "
        f"{store.free_pages}/{store.num_pages}; hogwild threads {before} -> {after}"
    )
    engine.close()
    assert _settle(baseline) <= baseline, "closing the engine ends its threads"
