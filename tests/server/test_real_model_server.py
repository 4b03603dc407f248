"""End to end on the real Qwen2.5-Coder-0.5B-Instruct: a tool-call round trip through the protocol."""

from __future__ import annotations

import json

import openai
import pytest
from server_harness import start_server, stop_server

pytestmark = pytest.mark.real_model

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "e.g. 2 * (3 + 4)"}},
            "required": ["expression"],
        },
    },
}


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    from hogwild_agents.models.store import DEFAULT_MODEL, cache_root

    if not (cache_root() / "models" / DEFAULT_MODEL / "hogwild-model.json").is_file():
        reason = "the default model is not converted yet (run scripts/setup.sh)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    server = start_server(
        tmp_path_factory.mktemp("real"), "--dtype", "float32", "--device", "cpu", timeout_s=180
    )
    yield server
    stop_server(server)


def test_tool_round_trip_on_the_real_model(real_server) -> None:
    client = openai.OpenAI(base_url=real_server.base_url, api_key="unused", max_retries=0, timeout=300)
    options = {
        "tools": [CALCULATOR],
        "tool_choice": "required",
        "max_tokens": 24,
        "extra_body": {"hogwild": {"max_forwards": 8, "early_exit": False}},
    }
    messages = [{"role": "user", "content": "Use the calculator to compute 1234 + 4321."}]
    first = client.chat.completions.create(model="qwen", messages=messages, **options)
    assert first.choices[0].finish_reason == "tool_calls", first
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "calculator"
    expression = json.loads(call.function.arguments)["expression"]
    assert "1234" in expression and "4321" in expression, expression
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "5555"},
    ]
    # As agent loops do after a call: tool_choice back to auto, so the model answers from the result.
    second = client.chat.completions.create(
        model="qwen",
        messages=messages,
        tools=[CALCULATOR],
        tool_choice="auto",
        max_tokens=24,
        extra_body={"hogwild": {"max_forwards": 4, "early_exit": False}},
    )
    answer = second.choices[0].message.content or ""
    print("CALL:", call.function.arguments, "| ANSWER:", repr(answer), second.choices[0].finish_reason)
    assert second.choices[0].finish_reason in ("stop", "length")
    assert "5555" in answer.replace(",", ""), answer
