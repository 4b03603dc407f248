"""Forced tool calls hold in every mode; templates without a system role; sliding windows; calculator."""

from __future__ import annotations

import copy

import pytest
from hardening_helpers import EOS, QUESTION, VOCAB, engine_for, prompt_ids
from tiny_models import tiny_model

from hogwild_agents import HogwildEngine, Tool, UnsupportedModelError
from hogwild_agents.tools.builtins import calculator

SCHEMA = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"]}


def _tools(log: list[str]) -> list[Tool]:
    def lookup(city: str) -> str:
        log.append(city)
        return "2 million"

    def weather(city: str) -> str:
        log.append("weather")
        return "sunny"

    return [
        Tool(name="lookup", description="Population of a city.", parameters=SCHEMA, func=lookup),
        Tool(name="weather", description="Weather in a city.", parameters=SCHEMA, func=weather),
    ]


# --- forcing
@pytest.mark.parametrize("choice", ["required", "any", "lookup", "weather"])
def test_a_forced_call_runs_without_collaboration(qwen_tokenizer, choice: str) -> None:
    log: list[str] = []
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    result = engine.run(QUESTION, tools=_tools(log), tool_choice=choice, max_forwards=60)
    first = result.trace.forwards[0].samples[0]
    assert first.grammar is not None, "the grammar applies from the first token"
    assert result.tool_events and log, "the call was detected and ran"
    if choice in ("lookup", "weather"):
        assert result.tool_events[0].name == choice


@pytest.mark.parametrize("choice", ["required", "lookup", "weather"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_forced_call_is_returned_without_collaboration(qwen_tokenizer, choice: str, workers: int) -> None:
    engine = engine_for(qwen_tokenizer, workers=workers, collaboration=False)
    result = engine.run(QUESTION, tools=_tools([]), tool_mode="return", tool_choice=choice, max_forwards=60)
    assert result.stop_reason == "tool_calls" and result.tool_calls
    if choice != "required":
        assert {c.name for c in result.tool_calls} == {choice}
    assert result.trace.forwards[0].samples[0].grammar is not None
    engine.drop_kept_runs()
    assert engine.runner.store.free_pages == engine.runner.store.num_pages


def test_auto_is_not_forced_without_collaboration(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False, constrain_tool_calls=False)
    result = engine.run(QUESTION, tools=_tools([]), tool_mode="return", max_forwards=8)
    assert result.trace.forwards[0].samples[0].grammar is None


# --- no system role
NO_SYSTEM_TEMPLATE = (
    "{%- for m in messages %}{%- if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
    "{%- endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)


@pytest.fixture
def no_system_tokenizer(qwen_tokenizer):
    tokenizer = copy.deepcopy(qwen_tokenizer)
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    return tokenizer


@pytest.mark.parametrize(
    "messages",
    [
        QUESTION,
        [{"role": "system", "content": "Answer in French."}, *QUESTION],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, *QUESTION],
    ],
)
def test_rules_fold_into_the_first_user_turn_without_a_system_role(no_system_tokenizer, messages) -> None:
    engine = engine_for(no_system_tokenizer, workers=2)
    result = engine.run(messages, max_forwards=4)
    text = no_system_tokenizer.decode(prompt_ids(result))
    assert "<|im_start|>system" not in text
    first_user = text.split("<|im_start|>user\n", 1)[1]
    assert first_user.startswith("# Collaborative reasoning")
    if messages[0]["role"] == "system":
        assert "Answer in French." in first_user.split("<|im_end|>")[0]
    plain = engine_for(no_system_tokenizer, workers=1, collaboration=False).run(messages, max_forwards=2)
    assert "<|im_start|>system" not in no_system_tokenizer.decode(prompt_ids(plain))


# --- sliding window
@pytest.mark.parametrize(
    "family,overrides",
    [
        ("mistral", {"sliding_window": 16}),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 64, "max_window_layers": 0}),
        ("qwen3", {"use_sliding_window": True, "sliding_window": 64, "max_window_layers": 0}),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 64, "max_window_layers": 1}),
        ("mistral", {"sliding_window": 2048}),  # the cache (4096 tokens) outgrows it
    ],
)
def test_sliding_windows_a_view_can_outgrow_are_refused(qwen_tokenizer, family: str, overrides: dict) -> None:
    model = tiny_model(family, vocab_size=VOCAB, eos_token_id=EOS, **overrides)
    with pytest.raises(UnsupportedModelError, match="sliding-window"):
        HogwildEngine(model, qwen_tokenizer, page_size=8, max_cache_tokens=4096)


@pytest.mark.parametrize(
    "family,overrides",
    [
        ("mistral", {"sliding_window": 8192}),  # never slides within 4096 cached tokens
        ("qwen2", {"use_sliding_window": False, "sliding_window": 16}),  # configured but off
        ("qwen3", {"use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 0}),
        ("llama", {}),
    ],
)
def test_windows_that_never_slide_are_served(qwen_tokenizer, family: str, overrides: dict) -> None:
    model = tiny_model(family, vocab_size=VOCAB, eos_token_id=EOS, **overrides)
    engine = HogwildEngine(model, qwen_tokenizer, page_size=8, max_cache_tokens=4096, max_answer_tokens=4)
    assert engine.run(QUESTION, max_forwards=3).answer is not None


# --- calculator
@pytest.mark.parametrize(
    "expression",
    ["2**10**400", "(2**10**400)", "3 * 2**10**400", "-2**10**400", "2.0**10**400", "1e400", "-1e999 + 1"],
)
def test_calculator_towers_get_a_clear_error(expression: str) -> None:
    with pytest.raises(ValueError, match="too large|not a finite number"):
        calculator(expression)


def test_calculator_overflow_through_the_executor_is_an_error_text() -> None:
    from hogwild_agents.tools import ToolCall, ToolExecutor
    from hogwild_agents.tools.builtins import calculator_tool

    with ToolExecutor(max_workers=1) as executor:
        call = ToolCall(name="calculator", arguments={"expression": "2**10**400"})
        outcome = executor.submit(call, calculator_tool(), timeout_s=5).result(timeout=10)
    assert outcome.is_error and outcome.content.startswith("Error: ValueError: the numbers")
