"""Fixtures of tests/server: the real server (a subprocess, tiny model) and the same engine in-process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server_harness import TINY, Server, start_server, stop_server, tokenizer_or_skip  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tokenizer_or_skip()
    srv = start_server(tmp_path_factory.mktemp("server"), "--model", TINY, "--workers", "2")
    yield srv
    stop_server(srv)
    assert srv.proc.returncode is not None


@pytest.fixture(scope="session")
def engine():
    """The server's engine, built in this process (same seed, same config)."""
    tokenizer_or_skip()
    from hogwild_agents.server import load_engine

    eng = load_engine(TINY, workers=2)
    yield eng
    eng.close()
