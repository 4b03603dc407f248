"""Bad requests get a 4xx OpenAI error naming the problem, and the server goes on serving."""

from __future__ import annotations

import httpx
import pytest
from server_harness import TINY

USER = [{"role": "user", "content": "Hello there, what is 2 + 2?"}]
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
OK = {"model": TINY, "messages": USER, "max_tokens": 2, "hogwild": {"max_forwards": 2, "early_exit": False}}

CASES = {
    "malformed JSON": ('{"messages": [', 400, "not valid JSON"),
    "unknown field": ({**OK, "frobnicate": True}, 400, "frobnicate: unknown field"),
    "unknown hogwild field": ({**OK, "hogwild": {"page_size": 4}}, 400, "hogwild.page_size: unknown field"),
    "wrong type": ({**OK, "temperature": "hot"}, 400, "temperature"),
    "no messages": ({**OK, "messages": []}, 400, "messages"),
    "unknown role": ({**OK, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role"),
    "unknown tool in tool_choice": (
        {**OK, "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        400,
        "'nope', which is not among the request's tools",
    ),
    "required with no tools": ({**OK, "tool_choice": "required"}, 400, "needs at least one tool"),
    "oversized prompt": (
        {**OK, "messages": [{"role": "user", "content": "word " * 6000}]},
        400,
        "context window",
    ),
    "invalid schema": (
        {**OK, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}},
        400,
        "not a valid JSON Schema",
    ),
    "invalid tool schema": (
        {**OK, "tools": [{"type": "function", "function": {"name": "t", "parameters": {"type": 5}}}]},
        400,
        "tool 0 ('t') is invalid",
    ),
    "tool result for no call": (
        {**OK, "messages": [*USER, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
        400,
        "call_x",
    ),
    "n=2": ({**OK, "n": 2}, 400, "n"),
    "too many workers": ({**OK, "hogwild": {"workers": 99}}, 400, "hogwild.workers"),
    "reserved worker name": (
        {**OK, "hogwild": {"workers": 2, "worker_names": ["finisher", "Bob"]}},
        400,
        "reserved",
    ),
    "body too large": (
        {**OK, "messages": [{"role": "user", "content": "x" * (9 * 1024 * 1024)}]},
        413,
        "bytes",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request_is_refused_and_the_next_one_works(server, name: str) -> None:
    body, status, fragment = CASES[name]
    kwargs = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, str)
        else {"json": body}
    )
    reply = httpx.post(f"{server.base_url}/chat/completions", timeout=60, **kwargs)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"], error["message"]
    good = httpx.post(f"{server.base_url}/chat/completions", json=OK, timeout=60)
    assert good.status_code == 200, good.text
    assert server.health()["active_runs"] == 0


def test_unknown_route_and_method_are_openai_errors(server) -> None:
    missing = httpx.get(f"{server.url}/v1/nothing", timeout=10)
    assert missing.status_code == 404 and "message" in missing.json()["error"]
    wrong = httpx.get(f"{server.base_url}/chat/completions", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
