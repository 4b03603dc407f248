"""Ray Serve: ``hogwild serve --ray --replicas 2`` on a local Ray instance; both replicas answer."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import time

import httpx
import pytest
from server_harness import TINY, start_server, stop_server, tokenizer_or_skip

BODY = {
    "model": TINY,
    "messages": [{"role": "user", "content": "What is 2 + 2? Say it with numbers."}],
    "max_tokens": 4,
    "temperature": 0,
    "hogwild": {"max_forwards": 3, "early_exit": False, "collaboration": True},
}


def test_two_replicas_answer_concurrent_requests(tmp_path) -> None:
    tokenizer_or_skip()
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        reason = "Ray Serve is not installed (pip install 'hogwild-agents[serve-ray]')"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    try:
        server = start_server(tmp_path, "--ray", "--replicas", "2", "--model", TINY, timeout_s=240)
    except RuntimeError as e:
        if "ray" in str(e).lower() and ("failed to start" in str(e).lower() or "raylet" in str(e).lower()):
            reason = f"Ray could not start on this machine: {str(e).splitlines()[0]}"
            print(f"SKIP: {reason}")
            pytest.skip(reason)
        raise
    try:
        pids: dict[str, list[str]] = {}
        answers = set()
        deadline = time.monotonic() + 120  # the second replica may still be loading its engine
        with httpx.Client(timeout=120) as http, concurrent.futures.ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                replies = list(
                    pool.map(lambda _: http.post(f"{server.base_url}/chat/completions", json=BODY), range(8))
                )
                for r in replies:
                    assert r.status_code == 200, r.text
                    pids.setdefault(r.headers["x-hogwild-pid"], []).append(
                        r.json()["choices"][0]["message"]["content"]
                    )
                    answers.add(r.json()["choices"][0]["message"]["content"])
        assert len(pids) == 2, f"only replica(s) {sorted(pids)} answered:\n{server.log_text()}"
        assert len(answers) == 1, "both replicas hold the same engine: the same greedy answer"
    finally:
        stop_server(server)
