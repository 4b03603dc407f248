"""The real server driven by the official ``openai`` client: sync, async, streaming, tools, JSON."""

from __future__ import annotations

import asyncio
import json

import httpx
import jsonschema
import openai
import pytest
from server_harness import TINY, solo

QUESTION = "Tom has 15 apples and buys 27 more. How many apples does he have now? Show the steps."
BUDGET = {"collaboration": True, "early_exit": False, "max_forwards": 6}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def _body(**extra) -> dict:
    return {"model": TINY, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, **extra}


def test_health_and_models(server, client) -> None:
    health = server.health()
    assert health["status"] == "ok" and health["pages_total"] > 0 and health["active_runs"] == 0
    assert [m.id for m in client.models.list().data] == [TINY]


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 7}])
def test_completion_equals_the_engines_own_result(client, engine, sampling) -> None:
    body = _body(hogwild=BUDGET, **sampling)
    reply = client.chat.completions.create(
        **{k: v for k, v in body.items() if k != "hogwild"}, extra_body={"hogwild": BUDGET}
    )
    expected = solo(engine, body)
    assert isinstance(reply, openai.types.chat.ChatCompletion)
    message = reply.choices[0].message
    assert message.content == expected.answer
    workers = reply.model_extra["hogwild"]["workers"]
    assert [w["text"] for w in workers] == [w.text for w in expected.workers]
    assert [w["name"] for w in workers] == ["Alice", "Bob"]
    assert message.model_extra["reasoning_content"].startswith("**Alice [1]:**")
    assert reply.usage.completion_tokens == expected.usage.generated_tokens + expected.usage.answer_tokens
    assert reply.usage.completion_tokens_details.reasoning_tokens == expected.usage.generated_tokens
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_async_clients_at_once_each_get_their_own_result(server, engine) -> None:
    questions = [f"{QUESTION} Also add {k}." for k in range(3)]

    async def ask_all() -> list:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=TINY,
                        messages=[{"role": "user", "content": q}],
                        max_tokens=6,
                        temperature=0,
                        extra_body={"hogwild": BUDGET},
                    )
                    for q in questions
                )
            )

    replies = asyncio.run(ask_all())
    for q, reply in zip(questions, replies, strict=True):
        body = {
            "messages": [{"role": "user", "content": q}],
            "max_tokens": 6,
            "temperature": 0,
            "hogwild": BUDGET,
        }
        expected = solo(engine, body)
        assert reply.choices[0].message.content == expected.answer
        texts = [w["text"] for w in reply.model_extra["hogwild"]["workers"]]
        assert texts == [w.text for w in expected.workers]


def test_streaming_with_usage_matches_the_complete_reply(client, engine) -> None:
    chunks = list(
        client.chat.completions.create(
            model=TINY,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=8,
            temperature=1.0,
            seed=3,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"hogwild": BUDGET},
        )
    )
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    expected = solo(engine, _body(temperature=1.0, seed=3, hogwild=BUDGET))
    per_worker: dict[str, str] = {}
    content = ""
    for c in chunks[:-1]:
        delta = c.choices[0].delta
        extra = delta.model_extra or {}
        if "reasoning_content" in extra:
            worker = extra["hogwild"]["worker"]
            per_worker[worker] = per_worker.get(worker, "") + extra["reasoning_content"]
        content += delta.content or ""
    assert per_worker == {w.name: w.text for w in expected.workers}
    assert content == expected.answer.lstrip()
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == expected.usage.generated_tokens + expected.usage.answer_tokens


def weather_turn(client, messages: list):
    """One request of the weather round trip; both turns send the same options, so the run is kept."""
    return client.chat.completions.create(
        model=TINY,
        messages=messages,
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=24,
        extra_body={"hogwild": {"max_forwards": 24, "early_exit": False}},
    )


def test_tool_round_trip_with_tool_choice_required(client) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    first = weather_turn(client, messages)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER["function"]["parameters"])
    messages += [
        choice.message.model_dump(include={"role", "content", "tool_calls"}, exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
    ]
    # The same options as the first request: the engine continues the run it kept (pages and all).
    second = weather_turn(client, messages)
    assert second.choices[0].finish_reason in ("stop", "length", "tool_calls")
    reused = second.usage.prompt_tokens_details.cached_tokens
    assert reused > 0, "the follow-up should continue the kept run, not re-encode the conversation"


def test_streamed_named_tool_call(client) -> None:
    chunks = list(
        client.chat.completions.create(
            model=TINY,
            messages=[{"role": "user", "content": "Weather in Rome?"}],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=24,
            stream=True,
            extra_body={"hogwild": {"max_forwards": 24, "early_exit": False}},
        )
    )
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or []) if c.choices]
    assert calls and calls[0].function.name == "get_weather"
    jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER["function"]["parameters"])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_structured_output_follows_the_schema(client) -> None:
    schema = {
        "type": "object",
        "properties": {"verdict": {"type": "string", "enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
        "required": ["verdict", "sure"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=TINY,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=48,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}},
        extra_body={"hogwild": BUDGET},
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


def test_stop_strings_and_max_completion_tokens(client, engine) -> None:
    body = _body(temperature=1.0, seed=5, stop=["\n"], hogwild=BUDGET)
    body.pop("max_tokens")
    body["max_completion_tokens"] = 6
    reply = client.chat.completions.create(
        **{k: v for k, v in body.items() if k != "hogwild"}, extra_body={"hogwild": BUDGET}
    )
    expected = solo(engine, body)
    assert reply.choices[0].message.content == expected.answer and "\n" not in expected.answer
    assert expected.usage.answer_tokens <= 6


def test_plain_http_client_works_too(server) -> None:
    reply = httpx.post(f"{server.base_url}/chat/completions", json=_body(hogwild=BUDGET), timeout=60)
    assert reply.status_code == 200 and reply.headers["x-hogwild-pid"] == str(server.health()["pid"])
    assert reply.json()["object"] == "chat.completion"


def test_max_tokens_bounds_a_plain_answer(client) -> None:
    # A short greeting: collaboration="auto" gives one plain worker, whose text is the answer.
    reply = client.chat.completions.create(
        model=TINY,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
        temperature=1.0,
        seed=2,
        extra_body={"hogwild": {"early_exit": False}},
    )
    assert reply.model_extra["hogwild"]["collaboration"] is False
    assert reply.usage.completion_tokens <= 3
    assert reply.choices[0].finish_reason == ("length" if reply.usage.completion_tokens == 3 else "stop")
