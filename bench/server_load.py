"""Load on ``hogwild serve``: concurrent streaming clients, some of which disconnect midway.

Every client streams its own request (``stream_options.include_usage``); ``--disconnect`` more clients
leave after a few chunks. Meanwhile ``/health`` is polled. Checks, then prints:

- every completed stream equals its solo result (the same request sent alone afterwards, not streamed):
  the answer and each worker's text, token for token;
- no pages leaked: once idle, ``/health``'s ``pages_free`` is what it was before the load;
- ``/health`` answered 200 throughout;
- numbers: requests, p50/p95 latency of a whole stream, time to first worker token, completion tok/s,
  and the solo requests' latency (what the same requests cost one after the other).

Usage::

    python bench/server_load.py --start            # starts a tiny-model server on a free port
    python bench/server_load.py --url http://127.0.0.1:8000 --clients 32 --disconnect 8

``--temperature 0`` (default) is greedy; with ``--temperature 1`` each client samples with its own seed,
which is just as reproducible and makes the comparison bite on the tiny random model (whose greedy text is
mostly whitespace).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai

TINY = "hogwild-test:tiny-random-qwen2"


def _request(i: int, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": args.model,
        "messages": [{"role": "user", "content": f"Request {i}: add {i} and {3 * i + 1}, then double it."}],
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": 1000 + i,
        "extra_body": {
            "hogwild": {"collaboration": True, "early_exit": False, "max_forwards": args.max_forwards}
        },
    }


async def _stream(
    client: openai.AsyncOpenAI, body: dict[str, Any], leave_after: int | None
) -> dict[str, Any]:
    start = time.perf_counter()
    first: float | None = None
    workers: dict[str, str] = {}
    content, usage, chunks = "", None, 0
    stream = await client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            if "reasoning_content" in extra:
                first = first or time.perf_counter()
                name = extra["hogwild"]["worker"]
                workers[name] = workers.get(name, "") + extra["reasoning_content"]
            content += choice.delta.content or ""
        if leave_after is not None and chunks >= leave_after:
            await stream.close()  # hang up mid-run: the server must cancel the run and free its pages
            return {"left": True}
    end = time.perf_counter()
    return {
        "left": False,
        "latency": end - start,
        "first_token": (first or end) - start,
        "content": content,
        "workers": workers,
        "completion_tokens": usage.completion_tokens if usage else 0,
    }


async def _poll_health(url: str, stop: asyncio.Event, record: list[tuple[int, float]]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                status = (await http.get(f"{url}/health")).status_code
            except httpx.HTTPError:
                status = 0
            record.append((status, time.perf_counter() - t))
            await asyncio.sleep(0.2)


async def _idle_health(url: str, timeout_s: float = 60.0) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        deadline = time.monotonic() + timeout_s
        while True:
            health = (await http.get(f"{url}/health")).json()
            if health["active_runs"] == 0 or time.monotonic() > deadline:
                return health
            await asyncio.sleep(0.1)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the load against the server at ``url``; return the numbers and the checks' outcomes."""
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
    before = await _idle_health(url)
    stop, health = asyncio.Event(), []
    poller = asyncio.create_task(_poll_health(url, stop, health))
    jobs = [_stream(client, _request(i, args), None) for i in range(args.clients)]
    jobs += [_stream(client, _request(args.clients + j, args), 3 + j) for j in range(args.disconnect)]
    t0 = time.perf_counter()
    outcomes = await asyncio.gather(*jobs)
    wall = time.perf_counter() - t0
    after = await _idle_health(url)
    stop.set()
    await poller
    done = [o for o in outcomes if not o["left"]]
    mismatches, solo_times = [], []
    for i, got in enumerate(done):  # the same request alone, not streamed
        body = _request(i, args)
        t = time.perf_counter()
        solo = await client.chat.completions.create(**body)
        solo_times.append(time.perf_counter() - t)
        want_workers = {w["name"]: w["text"] for w in solo.model_extra["hogwild"]["workers"]}
        if (
            got["content"] != (solo.choices[0].message.content or "").lstrip()
            or got["workers"] != want_workers
        ):
            mismatches.append(i)
    await client.close()
    latencies = [o["latency"] for o in done]
    tokens = sum(o["completion_tokens"] for o in done)
    return {
        "requests": len(outcomes),
        "completed": len(done),
        "disconnected": sum(o["left"] for o in outcomes),
        "mismatches": mismatches,
        "wall_s": round(wall, 2),
        "latency_p50_s": round(_pct(latencies, 0.5), 2),
        "latency_p95_s": round(_pct(latencies, 0.95), 2),
        "first_token_p50_s": round(statistics.median(o["first_token"] for o in done), 2),
        "solo_latency_p50_s": round(statistics.median(solo_times), 2),
        "solo_sequential_s": round(sum(solo_times), 2),
        "completion_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "pages_free_before": before["pages_free"],
        "pages_free_after": after["pages_free"],
        "pages_total": after["pages_total"],
        "active_runs_after": after["active_runs"],
        "health_polls": len(health),
        "health_failures": sum(1 for s, _ in health if s != 200),
        "health_max_s": round(max((t for _, t in health), default=0.0), 3),
    }


def check(numbers: dict[str, Any]) -> list[str]:
    """The load's failed checks (empty when all hold)."""
    problems = []
    if numbers["mismatches"]:
        problems.append(f"streams differ from their solo results: clients {numbers['mismatches']}")
    if numbers["pages_free_after"] != numbers["pages_free_before"] or numbers["active_runs_after"]:
        problems.append(
            f"pages leaked: {numbers['pages_free_before']} free before, {numbers['pages_free_after']} after, "
            f"{numbers['active_runs_after']} runs still active"
        )
    if numbers["health_failures"] or not numbers["health_polls"]:
        problems.append(f"/health failed {numbers['health_failures']} of {numbers['health_polls']} polls")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server (default: start a tiny-model one with --start)")
    parser.add_argument("--start", action="store_true", help="start `hogwild serve` with the tiny model")
    parser.add_argument("--model", default=TINY)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--disconnect", type=int, default=8)
    parser.add_argument("--max-forwards", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()
    server = None
    if args.start or not args.url:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "server"))
        import tempfile

        from server_harness import start_server

        server = start_server(Path(tempfile.mkdtemp()), "--model", args.model)
        url = server.url
    else:
        url = args.url.rstrip("/")
    try:
        numbers = asyncio.run(run_load(url, args))
    finally:
        if server is not None:
            server.proc.terminate()
            server.proc.wait(timeout=15)
    print(json.dumps({"settings": vars(args), **numbers}, indent=2))
    problems = check(numbers)
    for p in problems:
        print("FAIL:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
