"""A schema-constrained answer cut by the token budget is never silently nothing: complete, or marked.

Whatever the budget, a run with ``response_format`` (or a forced call) either returns an answer that parses
and validates, or says ``answer_truncated=True`` (front ends turn that into their parser error).
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from hardening_helpers import QUESTION, engine_for

from hogwild_agents import InvalidRequestError

SMALL = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}
LONG = {"type": "array", "items": {"enum": [1, 2]}, "minItems": 400}  # more tokens than any budget here


def _complete_or_marked(result, schema: dict) -> bool:
    """True when the answer is complete and valid; False when it is marked truncated; fails otherwise."""
    if result.answer_truncated:
        return False
    jsonschema.validate(json.loads(result.answer), schema)
    return True


@pytest.mark.parametrize("max_answer_tokens", [1, 4, 64])
def test_the_finisher_answer_is_complete_or_marked(qwen_tokenizer, max_answer_tokens: int) -> None:
    engine = engine_for(qwen_tokenizer, workers=2, max_answer_tokens=max_answer_tokens)
    small = engine.run(QUESTION, response_format=SMALL, max_forwards=6)
    assert _complete_or_marked(small, SMALL), "a short schema closes within the reserved room"
    long = engine.run(QUESTION, response_format=LONG, max_forwards=6)
    assert long.answer_truncated and not _complete_or_marked(long, LONG)


@pytest.mark.parametrize("max_forwards", [1, 3, 8, 40])
def test_plain_generation_enforces_and_marks_the_schema(qwen_tokenizer, max_forwards: int) -> None:
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    small = engine.run(QUESTION, response_format=SMALL, max_forwards=max_forwards)
    assert small.trace.forwards[0].samples[0].grammar is not None, "the schema applies from the first token"
    complete = _complete_or_marked(small, SMALL)  # short budgets may or may not close it: never invalid
    if max_forwards >= 40:
        assert complete
    long = engine.run(QUESTION, response_format=LONG, max_forwards=max_forwards)
    assert long.answer_truncated


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampled_runs_are_complete_or_marked(qwen_tokenizer, seed: int) -> None:
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False, temperature=1.0, seed=seed)
    for budget in (2, 6, 30):
        _complete_or_marked(engine.run(QUESTION, response_format=SMALL, max_forwards=budget), SMALL)


def test_a_forced_call_cut_by_the_budget_is_marked(qwen_tokenizer) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    cut = engine.run(QUESTION, tools=[tool], tool_mode="return", tool_choice="required", max_forwards=3)
    assert not cut.tool_calls and cut.answer_truncated
    whole = engine.run(QUESTION, tools=[tool], tool_mode="return", tool_choice="required", max_forwards=80)
    assert whole.tool_calls and not whole.answer_truncated
    engine.drop_kept_runs()


def test_unconstrained_answers_are_never_marked(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=2, max_answer_tokens=2)
    assert not engine.run(QUESTION, max_forwards=4).answer_truncated


def test_response_format_with_tools_in_plain_generation_is_refused(qwen_tokenizer) -> None:
    tool = {"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    with pytest.raises(InvalidRequestError, match="needs the finisher"):
        engine.run(QUESTION, tools=[tool], tool_mode="return", response_format=SMALL)
