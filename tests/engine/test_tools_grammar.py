"""Constrained decoding: seeded random logits decoded under xgrammar masks must give valid output."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import jsonschema
import pytest
import torch
from pydantic import Field

from hogwild_agents.tools import (
    GrammarFactory,
    GrammarRejectedTokenError,
    Tool,
    ToolFormat,
    apply_constraints,
    parse_tool_calls,
)

VOCAB = 151936  # Qwen2.5 logits width


def get_weather(
    city: Annotated[str, Field(max_length=12)],
    unit: Literal["celsius", "fahrenheit"] = "celsius",
    days: Annotated[int, Field(ge=1, le=7)] = 1,
) -> str:
    """Weather forecast."""
    return "sunny"


def add(a: Annotated[int, Field(ge=0, le=99)], b: Annotated[int, Field(ge=0, le=99)]) -> int:
    """Add."""
    return a + b


TOOLS = [Tool.from_function(get_weather), Tool.from_function(add)]


@pytest.fixture(scope="module")
def factory(qwen_tokenizer):
    return GrammarFactory(qwen_tokenizer, VOCAB)


@pytest.fixture(scope="module")
def fmt(qwen_tokenizer):
    return ToolFormat.from_tokenizer(qwen_tokenizer)


def _random_decode(constraint, seed, max_steps=800):
    """Greedy decoding of seeded random logits under the constraint, until the grammar is complete."""
    gen = torch.Generator().manual_seed(seed)
    ids = []
    for _ in range(max_steps):
        logits = torch.randn(VOCAB, generator=gen)
        constraint.apply(logits)
        token = int(torch.argmax(logits))
        constraint.accept(token)
        ids.append(token)
        if constraint.is_completed:
            return ids
    raise AssertionError(f"grammar not complete after {max_steps} tokens")


def _allowed(constraint):
    logits = torch.zeros(VOCAB)
    constraint.apply(logits)
    return torch.isfinite(logits).nonzero().flatten().tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("choice", ["required", "add"])
def test_random_logits_under_tool_grammar_give_a_valid_call(factory, fmt, qwen_tokenizer, seed, choice):
    constraint = factory.constraint(factory.tool_calls(TOOLS, choice, fmt))
    text = qwen_tokenizer.decode(_random_decode(constraint, seed))
    assert text.startswith(fmt.call_prefix) and text.endswith(fmt.call_suffix)
    (call,) = parse_tool_calls(text, TOOLS, fmt)  # raises if the name or arguments are invalid
    assert choice == "required" or call.name == "add"


@pytest.mark.parametrize("seed", [0, 1])
def test_random_logits_under_json_schema_give_valid_json(factory, qwen_tokenizer, seed):
    schema = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "tag": {"enum": ["a", "b", "c"]},
            "items": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 9},
                "maxItems": 3,
            },
        },
        "required": ["ok", "tag", "items"],
        "additionalProperties": False,
    }
    constraint = factory.constraint(factory.json_schema(schema))
    value = json.loads(qwen_tokenizer.decode(_random_decode(constraint, seed)))
    jsonschema.validate(value, schema)


def test_unconstrained_logits_would_not_be_valid(qwen_tokenizer):
    gen = torch.Generator().manual_seed(0)
    text = qwen_tokenizer.decode([int(torch.argmax(torch.randn(VOCAB, generator=gen))) for _ in range(20)])
    assert not text.startswith("<tool_call>")  # so the masked runs above prove the masking works


def test_auto_is_free_until_a_trigger(factory, fmt, qwen_tokenizer):
    constraint = factory.constraint(factory.tool_calls(TOOLS, "auto", fmt))
    n_text = len(qwen_tokenizer)
    assert len(_allowed(constraint)) > 0.99 * n_text
    for token in qwen_tokenizer.encode("Let me think about {this} first.\n\n", add_special_tokens=False):
        constraint.accept(token)
    assert len(_allowed(constraint)) > 0.99 * n_text
    constraint.accept(qwen_tokenizer.convert_tokens_to_ids("<tool_call>"))
    assert len(_allowed(constraint)) < 50  # only the newline of the template's call prefix may follow
    body = '\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    for token in qwen_tokenizer.encode(body, add_special_tokens=False):
        constraint.accept(token)
    assert len(_allowed(constraint)) > 0.99 * n_text  # free again after the call
    for token in qwen_tokenizer.encode('{"name": "', add_special_tokens=False):
        constraint.accept(token)
    allowed = [qwen_tokenizer.decode([t]) for t in _allowed(constraint)]
    assert allowed and all("get_weather".startswith(a) or "add".startswith(a) for a in allowed)
    with pytest.raises(GrammarRejectedTokenError, match="not allowed"):
        constraint.accept(qwen_tokenizer.encode("x", add_special_tokens=False)[0])


def test_none_choice_and_bad_choice(factory, fmt):
    assert factory.tool_calls(TOOLS, "none", fmt) is None
    with pytest.raises(ValueError, match="'launch' is not 'auto'"):
        factory.tool_calls(TOOLS, "launch", fmt)


def test_batched_apply_matches_single_rows(factory, fmt):
    grammar = factory.tool_calls(TOOLS, "required", fmt)
    a, b = factory.constraint(grammar), factory.constraint(factory.json_schema({"type": "integer"}))
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(0))
    expected = logits.clone()
    a.apply(expected[0])
    b.apply(expected[2])
    apply_constraints(logits, [a, None, b])
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    assert torch.isfinite(logits[1]).all()
