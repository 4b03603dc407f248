"""Early exit: the yes/no probe ends a run whose answer is known and leaves the others going."""

from __future__ import annotations

from greedy_cases import EOS, QUESTION, VOCAB
from scripted import PreferredWriters
from tiny_models import tiny_model

from hogwild_agents import HogwildEngine


def _engine(tokenizer, **cfg) -> HogwildEngine:
    model = tiny_model("qwen2", vocab_size=VOCAB, eos_token_id=EOS)
    return HogwildEngine(model, tokenizer, page_size=8, max_cache_tokens=4096, max_answer_tokens=6, **cfg)


def _worker_tokens(result, upto: int) -> list:
    return [
        [(g.writer, g.fed, g.sampled) for g in f.groups if g.writer not in ("probe",)]
        for f in result.trace.forwards[:upto]
    ]


def test_a_yes_ends_generation_and_changes_no_worker_token(qwen_tokenizer, monkeypatch) -> None:
    engine = _engine(qwen_tokenizer, workers=2, max_forwards=40)
    plain = engine.run(QUESTION)
    # probes at worker forwards 0, 4, 8: the third one says yes
    PreferredWriters(qwen_tokenizer, {"probe": "no no yes"}).install(monkeypatch)
    early = engine.run(QUESTION, early_exit=True, probe_every=4)
    assert early.stop_reason == "answer_ready" and early.usage.probes == 3
    assert early.usage.worker_forwards == 9  # the forward that carried the "yes" probe is the last
    probe_forwards = [f.index for f in early.trace.forwards if any(g.writer == "probe" for g in f.groups)]
    assert len(probe_forwards) == 3
    n = probe_forwards[-1] + 1  # every worker token up to the "yes" equals the run without probes
    assert _worker_tokens(early, n) == _worker_tokens(plain, n)
    assert early.answer and early.usage.answer_tokens >= 1  # the finisher answered
    assert engine.runner.store.free_pages == engine.runner.store.num_pages  # probe blocks freed
    probe_blocks = [b for b in early.trace.blocks.values() if b.kind == "probe"]
    assert len(probe_blocks) == 3 and all(b.token_ids for b in probe_blocks)  # recorded for replay


def test_no_leaves_the_run_going(qwen_tokenizer, monkeypatch) -> None:
    PreferredWriters(qwen_tokenizer, {"probe": "no " * 20}).install(monkeypatch)
    result = _engine(qwen_tokenizer, workers=2, max_forwards=30).run(QUESTION, early_exit=True, probe_every=5)
    assert result.stop_reason == "max_forwards" and result.usage.probes == 6
    assert all(
        s.token in (0,) or s.greedy for f in result.trace.forwards for s in f.samples if s.writer == "probe"
    )


def test_the_probe_only_answers_yes_or_no(qwen_tokenizer) -> None:
    result = _engine(qwen_tokenizer, workers=2, max_forwards=12).run(QUESTION, early_exit=True, probe_every=3)
    answers = {
        qwen_tokenizer.decode([s.token]).strip().lower()
        for f in result.trace.forwards
        for s in f.samples
        if s.writer == "probe"
    }
    assert answers and answers <= {"yes", "no"}
    if result.stop_reason == "answer_ready":
        assert "yes" in answers


def test_auto_collaboration_answers_chat_plainly_and_tasks_with_the_team(qwen_tokenizer) -> None:
    from hogwild_agents.text.router import needs_team

    engine = _engine(qwen_tokenizer, workers=2, max_forwards=8)
    hello = engine.run("Hello", collaboration="auto")
    assert not hello.collaboration and len(hello.workers) == 1
    task = engine.run(QUESTION, collaboration="auto")  # "Add 2 and 3, then double it." has numbers
    assert task.collaboration and len(task.workers) == 2
    assert not needs_team([{"role": "user", "content": "How are you today?"}], has_tools=False)
    assert needs_team([{"role": "user", "content": "How are you today?"}], has_tools=True)
    long = "Please compare the climates of the two regions and explain which one suits apple trees better."
    assert needs_team([{"role": "user", "content": long}], has_tools=False)


def test_probe_min_steps_waits_for_every_worker_to_commit(qwen_tokenizer, monkeypatch) -> None:
    engine = _engine(qwen_tokenizer, workers=2, max_forwards=40)
    scripts = {
        "probe": "yes " * 20,
        "Alice": "Two plus three is five.\n\n",  # commits after a few tokens
        "Bob": "I will double the sum of two and three once it is known, then check it.\n\n",
    }
    PreferredWriters(qwen_tokenizer, scripts).install(monkeypatch)
    eager = engine.run(QUESTION, early_exit=True, probe_every=2)
    assert eager.stop_reason == "answer_ready" and eager.usage.worker_forwards == 1  # the very first probe
    PreferredWriters(qwen_tokenizer, scripts).install(monkeypatch)
    gated = engine.run(QUESTION, early_exit=True, probe_every=2, probe_min_steps=1)
    assert gated.stop_reason == "answer_ready"
    first = next(f.index for f in gated.trace.forwards if any(g.writer == "probe" for g in f.groups))
    steps = {w.name: len(w.steps) for w in gated.workers}
    assert steps["Alice"] >= 1 and steps["Bob"] >= 1, steps
    bob_tokens = len(qwen_tokenizer.encode(scripts["Bob"], add_special_tokens=False))
    assert first >= bob_tokens  # no probe before Bob's whole first step was written
    assert gated.usage.worker_forwards > 12  # Bob's sentence alone is longer than that
    assert engine.runner.store.free_pages == engine.runner.store.num_pages
