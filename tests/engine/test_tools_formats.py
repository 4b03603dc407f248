"""ToolFormat derived from chat templates: the real Qwen template, and a minimal ChatML one without tools."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from hogwild_agents.tools import (
    GENERIC_FORMAT,
    ChatTemplateError,
    Tool,
    ToolCall,
    ToolFormat,
    ToolOutcome,
    render_prompt_with_tools,
)

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: First.
        b: Second.
    """
    return a + b


@pytest.fixture
def chatml_tokenizer():
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tok.chat_template = CHATML
    return tok


def test_qwen_wrappers_reproduce_the_template(qwen_tokenizer):
    fmt = ToolFormat.from_tokenizer(qwen_tokenizer)
    tool = Tool.from_function(add)
    messages = [{"role": "user", "content": "What is 2+3?"}]
    call = ToolCall("add", {"a": 2, "b": 3})
    outcome = ToolOutcome(call, "5")
    rendered = qwen_tokenizer.apply_chat_template(
        [
            *messages,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}
                ],
            },
            {"role": "tool", "name": "add", "content": "5"},
        ],
        tools=[tool.to_openai_schema()],
        tokenize=False,
        add_generation_prompt=True,
    )
    prompt = render_prompt_with_tools(qwen_tokenizer, messages, [tool])
    assert rendered == prompt + fmt.render_call_text(call) + fmt.render_result_block(outcome)
    assert fmt.native


def test_qwen_wrapper_values(qwen_tokenizer):
    fmt = ToolFormat.from_tokenizer(qwen_tokenizer)
    assert (fmt.call_prefix, fmt.call_suffix) == ("<tool_call>\n", "\n</tool_call>")
    assert fmt.result_prefix == "<|im_end|>\n<|im_start|>user\n<tool_response>\n"
    assert fmt.result_suffix == "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    assert (
        fmt.inline_result_text(ToolOutcome(ToolCall("add", {}), "5"))
        == "<tool_response>\n5\n</tool_response>\n\n"
    )


def test_qwen_prompt_lists_tools(qwen_tokenizer):
    prompt = render_prompt_with_tools(
        qwen_tokenizer, [{"role": "user", "content": "hi"}], [Tool.from_function(add)]
    )
    assert "<tools>" in prompt and '"name": "add"' in prompt and "Add two integers." in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_template_without_tools_falls_back(chatml_tokenizer):
    fmt = ToolFormat.from_tokenizer(chatml_tokenizer)
    assert fmt is GENERIC_FORMAT and not fmt.native
    prompt = render_prompt_with_tools(
        chatml_tokenizer, [{"role": "user", "content": "hi"}], [Tool.from_function(add)]
    )
    assert prompt.startswith("<|im_start|>system\nYou may call one or more functions")
    assert '"name": "add"' in prompt and "<tool_call>" in prompt
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    outcome = ToolOutcome(ToolCall("add", {"a": 1, "b": 2}), "3")
    assert (
        fmt.render_call_text(outcome.call)
        == '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    )
    assert fmt.render_result_block(outcome) == "\n<tool_response>\n3\n</tool_response>\n"


def test_fallback_keeps_existing_system_message(chatml_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    prompt = render_prompt_with_tools(chatml_tokenizer, messages, [Tool.from_function(add)])
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\nYou may call") and prompt.count("system") == 1


def test_no_template_is_an_error(chatml_tokenizer):
    chatml_tokenizer.chat_template = None
    with pytest.raises(ChatTemplateError, match="no chat template"):
        ToolFormat.from_tokenizer(chatml_tokenizer)


def test_finisher_is_told_a_call_is_a_valid_reply_only_when_calls_are_returned(qwen_tokenizer):
    from hogwild_agents.engine.engine import HogwildEngine
    from hogwild_agents.text.prompts import render_prompt

    tools = [Tool.from_function(add).to_openai_schema()]
    msgs = [{"role": "user", "content": "Add 2 and 3."}]
    for collaboration in (True, False):
        plain = render_prompt(
            qwen_tokenizer, msgs, names=["A", "B"], collaboration=collaboration, tools=tools
        )
        calls = render_prompt(
            qwen_tokenizer,
            msgs,
            names=["A", "B"],
            collaboration=collaboration,
            tools=tools,
            finisher_may_call=True,
        )
        assert "reply with just that call" in calls.finisher and "reply with just" not in plain.finisher
        assert calls.prompt == plain.prompt
    # The engine asks for it exactly in return mode with tools that may be called.
    from tiny_models import tiny_model

    engine = HogwildEngine(tiny_model("qwen2", vocab_size=151936, eos_token_id=151645), qwen_tokenizer)
    for mode, choice, expect in (
        ("return", "auto", True),
        ("execute", "auto", False),
        ("return", "none", False),
    ):
        run = engine._prepare(msgs, [Tool.from_function(add)], {"tool_mode": mode, "tool_choice": choice})
        assert ("reply with just that call" in run.texts.finisher) is expect, (mode, choice)
