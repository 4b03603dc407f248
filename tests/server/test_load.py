"""A fast version of bench/server_load.py: 8 streaming clients and 2 that hang up, against the real server."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from pathlib import Path

from server_harness import TINY

BENCH = Path(__file__).resolve().parents[2] / "bench" / "server_load.py"


def _bench():
    spec = importlib.util.spec_from_file_location("server_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_concurrent_streams_equal_their_solo_results_and_free_their_pages(server) -> None:
    bench = _bench()
    args = argparse.Namespace(
        model=TINY, clients=8, disconnect=2, max_forwards=6, max_tokens=6, temperature=1.0
    )
    numbers = asyncio.run(bench.run_load(server.url, args))
    print(numbers)
    assert numbers["completed"] == 8 and numbers["disconnected"] == 2
    assert bench.check(numbers) == []
    assert numbers["completion_tokens"] > 0


def test_a_client_that_hangs_up_cancels_its_run(server) -> None:
    import time

    import httpx

    body = {
        "messages": [{"role": "user", "content": "Write a very long story about apples, step by step."}],
        "max_tokens": 512,
        "stream": True,
        "hogwild": {"collaboration": True, "early_exit": False, "max_forwards": 4000},
    }
    before = server.health()["pages_free"]
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=60) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()
        seen = 0
        while seen < 4:  # a few chunks of worker text, then hang up
            seen += next(lines).startswith("data:")
        assert server.health()["active_runs"] == 1
    deadline = time.monotonic() + 20  # 4000 forwards would take minutes: only a cancel ends it this soon
    while (health := server.health())["active_runs"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health["active_runs"] == 0 and health["pages_free"] == before
