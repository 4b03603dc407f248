"""Markup guards: no worker writes a step header or the '<...>' marker; the finisher writes no markup."""

from __future__ import annotations

import re

import pytest
from greedy_cases import EOS, QUESTION, VOCAB
from scripted import PreferredWriters
from tiny_models import tiny_model

from hogwild_agents import HogwildEngine
from hogwild_agents.text.markup import MarkupGuard, TokenTexts


@pytest.fixture(scope="module")
def texts(qwen_tokenizer) -> TokenTexts:
    return TokenTexts(qwen_tokenizer, VOCAB)


def _writes(guard: MarkupGuard, tokenizer, text: str) -> str:
    """Write ``text`` token by token, each banned token replaced by a space (as a sampler would skip it)."""
    out = ""
    for token in tokenizer.encode(text, add_special_tokens=False):
        piece = tokenizer.decode([token])
        if token in set(guard.banned()):
            piece = " "
        out += piece
        guard.feed(piece)
    return out


@pytest.mark.parametrize(
    "attempt",
    ["Then **Bob [2]:** says hi.", "Look <...> here", "**Alice [1]:**", "x<answer>42</answer>", "<...><...>"],
)
def test_a_guarded_writer_never_completes_a_pattern(qwen_tokenizer, texts, attempt: str) -> None:
    patterns = ["**Alice [", "**Bob [", "<...>", "<answer>", "</answer>"]
    written = _writes(MarkupGuard(patterns, texts), qwen_tokenizer, attempt)
    assert not any(p in written for p in patterns), written


def test_the_guard_bans_only_completions(qwen_tokenizer, texts) -> None:
    guard = MarkupGuard(["<...>"], texts)
    holding = {i for i, t in enumerate(texts.texts) if "<...>" in t} - texts.special
    assert set(guard.banned()) == holding
    guard.feed("a <..")
    completing = {i for i, t in enumerate(texts.texts) if t.startswith(".>")} - texts.special
    assert set(guard.banned()) == holding | completing
    dot = qwen_tokenizer.encode(".", add_special_tokens=False)[0]
    assert dot not in guard.banned()  # "." alone does not complete it
    guard.feed(".")
    assert ">" in {texts.texts[i] for i in guard.banned()}


def test_guards_over_the_same_patterns_share_their_tables_not_their_position(texts) -> None:
    a, b = MarkupGuard(["<...>", "**Bob"], texts), MarkupGuard(["**Bob", "<...>", ""], texts)
    assert a._tables is b._tables  # built once: every run makes a guard per writer
    a.feed("x **Bo")
    assert b.state == 0 and a.state != 0
    assert "b" in {texts.texts[i] for i in a.banned()}  # each answers from its own position
    assert "b" not in {texts.texts[i] for i in b.banned()}
    assert MarkupGuard(["<...>"], texts)._tables is not a._tables


def _engine(tokenizer, **cfg) -> HogwildEngine:
    model = tiny_model("qwen2", vocab_size=VOCAB, eos_token_id=EOS)
    return HogwildEngine(model, tokenizer, page_size=8, max_cache_tokens=4096, **cfg)


def test_the_finisher_answers_without_the_workspace_markup(qwen_tokenizer, monkeypatch) -> None:
    script = "Done. <...> **Alice [1]:** Quick check: am I doing redundant work? <answer>42</answer>"
    PreferredWriters(qwen_tokenizer, {"finisher": script}, EOS).install(monkeypatch)
    engine = _engine(qwen_tokenizer, workers=2, max_forwards=6, max_answer_tokens=48)
    answer = engine.run(QUESTION).answer
    for markup in ("<...>", "**Alice [", "am I doing redundant work?", "<answer>", "</answer>"):
        assert markup not in answer, answer
    assert "42" in answer and "Done." in answer
    # the same script with the guard off writes the markup: the test can fail
    monkeypatch.undo()
    PreferredWriters(qwen_tokenizer, {"finisher": script}, EOS).install(monkeypatch)
    raw = engine.run(QUESTION, guard_markup=False).answer
    assert "<answer>" in raw and "<...>" in raw


def test_workers_cannot_write_each_others_headers(qwen_tokenizer, monkeypatch) -> None:
    imitation = "I agree.\\n\\n**Alice [2]:** and <...> then **Bob [3]:** again."
    PreferredWriters(qwen_tokenizer, {"Bob": imitation.replace("\\\\n", "\\n")}).install(monkeypatch)
    result = _engine(qwen_tokenizer, workers=2, max_forwards=30).run(QUESTION)
    bob = result.workers[1]
    generated = bob.text.replace("**Bob [1]:** ", "").replace("**Bob [2]:** ", "")
    assert "**Alice [" not in generated and "<...>" not in generated


@pytest.mark.parametrize(
    ("variant", "banned"),
    [
        ("**Alice (2):** hi", "**Alice ("),
        ("**Alice:** hi", "**Alice:"),
        ("**Alice** says hi", "**Alice**"),
        ("**Alice[2]", "**Alice["),
        ("**Alice] next", "**Alice]"),
        ("**Bab [1]:** made up", "]:**"),
        ("*Eve (2):** made up", "):**"),
    ],
)
def test_workers_cannot_write_the_header_variants_small_models_write(
    qwen_tokenizer, monkeypatch, variant: str, banned: str
) -> None:
    """With ``**Alice [`` banned, the 0.5B wrote ``**Bob (1):** 83810205``, ``**Bob]``, ``**Bab [1]:**``."""
    script = {"Bob": f"I agree. {variant} again."}
    PreferredWriters(qwen_tokenizer, script).install(monkeypatch)
    bob = _engine(qwen_tokenizer, workers=2, max_forwards=30).run(QUESTION).workers[1]
    generated = re.sub(r"\*\*Bob \[\d+\]:\*\* ", "", bob.text)  # the headers the engine wrote
    assert "I agree." in generated and banned not in generated
    # the guard off lets the same script write it: the test can fail
    monkeypatch.undo()
    PreferredWriters(qwen_tokenizer, script).install(monkeypatch)
    raw = _engine(qwen_tokenizer, workers=2, max_forwards=30, guard_markup=False).run(QUESTION).workers[1]
    assert variant in raw.text


def test_the_finisher_of_an_execute_mode_run_writes_no_tool_markup(qwen_tokenizer, monkeypatch) -> None:
    from hogwild_agents.tools.builtins import calculator_tool

    script = 'It is <tool_call>\n{"name": "calculator"}\n</tool_call> <tool_response>\n5\n</tool_response> 5.'
    PreferredWriters(qwen_tokenizer, {"finisher": script}, EOS).install(monkeypatch)
    engine = _engine(qwen_tokenizer, workers=2, max_forwards=6, max_answer_tokens=48)
    answer = engine.run(QUESTION, tools=[calculator_tool()]).answer  # execute mode: the workers call
    for markup in ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"):
        assert markup not in answer, answer
    assert "5" in answer
