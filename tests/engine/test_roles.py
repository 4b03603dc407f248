"""Per-worker roles: instructions in the shared prompt, each worker's own tools and tool_choice."""

from __future__ import annotations

from typing import Literal

import pytest
from greedy_cases import EOS, QUESTION, VOCAB
from scripted import PreferredWriters
from tiny_models import tiny_model

from hogwild_agents import HogwildEngine, InvalidRequestError, Tool
from hogwild_agents.api.config import WorkerRole


def search(query: Literal["rivers", "lakes"]) -> str:
    """Search the notes.

    Args:
        query: what to look for.
    """
    return f"notes about {query}"


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: first.
        b: second.
    """
    return a + b


TOOLS = [Tool.from_function(search), Tool.from_function(add)]
ROLES = [
    WorkerRole(name="Ann", instructions="Look the facts up.", tools=["search"], tool_choice="required"),
    WorkerRole(name="Ben", instructions="Do the arithmetic.", tools=["add"]),
]


def _engine(tokenizer, **cfg) -> HogwildEngine:
    model = tiny_model("qwen2", vocab_size=VOCAB, eos_token_id=EOS)
    return HogwildEngine(model, tokenizer, page_size=8, max_cache_tokens=4096, max_answer_tokens=6, **cfg)


def test_roles_reach_the_prompt_and_name_the_workers(qwen_tokenizer) -> None:
    engine = _engine(qwen_tokenizer)
    run = engine._prepare(QUESTION, TOOLS, {"roles": ROLES, "max_forwards": 4})
    assert [w for w in run.cfg.names] == ["Ann", "Ben"] and run.cfg.workers == 2
    assert "## Roles" in run.texts.prompt
    assert "- Ann (tools: search): Look the facts up." in run.texts.prompt
    assert "- Ben (tools: add): Do the arithmetic." in run.texts.prompt
    result = engine.run(QUESTION, tools=TOOLS, roles=ROLES, max_forwards=4)
    assert [w.name for w in result.workers] == ["Ann", "Ben"]


def test_a_forced_role_calls_only_its_own_tool(qwen_tokenizer) -> None:
    result = _engine(qwen_tokenizer).run(QUESTION, tools=TOOLS, roles=ROLES, max_forwards=90)
    calls = [e for e in result.tool_events if e.worker == "Ann"]
    assert calls and calls[0].name == "search"  # forced by Ann's role, within Ann's tools
    assert all(e.name == "add" for e in result.tool_events if e.worker == "Ben")


@pytest.mark.parametrize("constrained", [True, False])
def test_a_worker_cannot_call_another_workers_tool(qwen_tokenizer, monkeypatch, constrained: bool) -> None:
    call = '<tool_call>\n{"name": "search", "arguments": {"query": "rivers"}}\n</tool_call>'
    PreferredWriters(qwen_tokenizer, {"Ben": f"Let me look. {call}"}).install(monkeypatch)
    roles = [WorkerRole(name="Ann", tools=["search"]), WorkerRole(name="Ben", tools=["add"])]
    result = _engine(qwen_tokenizer, constrain_tool_calls=constrained).run(
        QUESTION, tools=TOOLS, roles=roles, max_forwards=60
    )
    ran = [e for e in result.tool_events if e.worker == "Ben" and e.name == "search" and not e.is_error]
    assert not ran, result.tool_events
    if not constrained:  # parsed from free text: refused as a tool Ben does not have
        refused = [e for e in result.tool_events if e.worker == "Ben" and e.name == "search"]
        assert refused and "unknown tool" in refused[0].content


def test_bad_roles_are_refused_up_front(qwen_tokenizer) -> None:
    engine = _engine(qwen_tokenizer)
    with pytest.raises(InvalidRequestError, match="role 'Ann' names tools \\['web'\\]"):
        engine.run(QUESTION, tools=TOOLS, roles=[WorkerRole(name="Ann", tools=["web"])])
    with pytest.raises(InvalidRequestError, match="role 'Ann'"):
        engine.run(QUESTION, tools=TOOLS, roles=[WorkerRole(name="Ann", tools=["add"], tool_choice="search")])
    with pytest.raises(InvalidRequestError, match="reserved"):
        engine.run(QUESTION, roles=[WorkerRole(name="finisher")])
    with pytest.raises(InvalidRequestError, match="the roles decide the workers"):
        engine.run(QUESTION, roles=ROLES, workers=3)
    assert engine.runner.store.free_pages == engine.runner.store.num_pages


def test_calls_from_two_workers_run_at_the_same_time(qwen_tokenizer) -> None:
    import threading
    import time

    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()

    def slow(city: Literal["Paris", "Rome"]) -> str:
        """Look a city up slowly.

        Args:
            city: the city.
        """
        start = time.perf_counter()
        time.sleep(1.0)
        with lock:
            spans[threading.current_thread().name + city + str(start)] = (start, time.perf_counter())
        return f"{city}: found"

    roles = [
        WorkerRole(name="Ann", tools=["slow"], tool_choice="required"),
        WorkerRole(name="Ben", tools=["slow"], tool_choice="required"),
    ]
    result = _engine(qwen_tokenizer).run(
        QUESTION, tools=[Tool.from_function(slow)], roles=roles, max_forwards=80
    )
    assert {e.worker for e in result.tool_events} == {"Ann", "Ben"}
    (a0, a1), (b0, b1) = sorted(spans.values())[:2]
    assert b0 < a1, "the second call started before the first one ended: they ran concurrently"
