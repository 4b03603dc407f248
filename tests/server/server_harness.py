"""Helpers of tests/server: the real server as a subprocess (tiny random model), the engine in-process.

``server`` starts ``python -m hogwild_agents serve --model hogwild-test:tiny-random-qwen2`` on a free port
and waits for ``/health``; ``engine`` is the identical tiny engine in the test process, so a greedy reply of
the server can be compared with the engine's own result for the same request.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

TINY = "hogwild-test:tiny-random-qwen2"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tokenizer_or_skip() -> None:
    from hogwild_agents.models.store import DEFAULT_MODEL, MARKER_FILE, cache_root

    if not (cache_root() / "models" / DEFAULT_MODEL / MARKER_FILE).is_file():
        reason = "the tiny test model borrows the default model's tokenizer, which is not converted yet"
        print(f"SKIP: {reason}")
        pytest.skip(reason)


class Server:
    """A running ``hogwild serve`` subprocess."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(tmp: Path, *args: str, timeout_s: float = 120.0) -> Server:
    """Start the server and wait until ``/health`` says ok (the log is in ``tmp``)."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    paths = [str(ROOT), str(ROOT / "kernels"), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    cmd = [sys.executable, "-m", "hogwild_agents", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    server = Server(proc, port, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the server did not become healthy in {timeout_s} s:\n{server.log_text()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def solo(engine, body: dict):
    """The engine's in-process result for the request ``body`` (translated exactly as the server does)."""
    from hogwild_agents.server.convert import engine_request
    from hogwild_agents.server.schemas import ChatCompletionRequest

    req = engine_request(ChatCompletionRequest.model_validate(body), TINY)
    return engine.run(req.messages, tools=req.tools, **req.overrides)
