"""The run loop on tiny random models with the real Qwen tokenizer: generation, steps, budgets, errors."""

from __future__ import annotations

import threading

import pytest
import torch
from reference_replay import ReferenceReplayer, ReplayGroup
from scripted import ScriptedWriters
from tiny_models import FAMILIES, tiny_model, twin_with_eager_attention

from hogwild_agents import (
    ContextOverflowError,
    FinishedEvent,
    HogwildEngine,
    InvalidRequestError,
    StepCommittedEvent,
    TokenEvent,
    UnsupportedModelError,
)

VOCAB = 151936
EOS = 151645
QUESTION = [{"role": "user", "content": "Add 2 and 3, then double it."}]


def engine_for(tokenizer, family: str = "qwen2", **cfg) -> HogwildEngine:
    model = tiny_model(family, vocab_size=VOCAB, eos_token_id=EOS)
    cfg = {"page_size": 8, "max_cache_tokens": 4096, "max_answer_tokens": 8, **cfg}
    return HogwildEngine(model, tokenizer, **cfg)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_worker_without_collaboration_matches_generate(qwen_tokenizer, family: str) -> None:
    engine = engine_for(
        qwen_tokenizer, family, workers=1, collaboration=False, max_forwards=64, max_answer_tokens=64
    )
    twin = twin_with_eager_attention(engine.model)
    result = engine.run(QUESTION)
    ids = qwen_tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    expected = twin.generate(
        ids, max_new_tokens=64, do_sample=False, eos_token_id=sorted(engine.eos_token_ids), pad_token_id=EOS
    )[0, ids.shape[1] :].tolist()
    ours = [g.sampled for f in result.trace.forwards for g in f.groups]
    assert ours[: len(expected)] == expected
    assert len(expected) == 64 or expected[-1] in engine.eos_token_ids
    assert result.answer == qwen_tokenizer.decode([t for t in expected if t not in engine.eos_token_ids])


def test_trace_replays_on_plain_reference(qwen_tokenizer) -> None:
    """Each sampled token of a greedy 3-worker run is the argmax of the reference's logits for its writer."""
    engine = engine_for(qwen_tokenizer, workers=3, max_forwards=12, max_answer_tokens=4)
    result = engine.run(QUESTION)
    replay = ReferenceReplayer(twin_with_eager_attention(engine.model))
    checked = 0
    for record in result.trace.forwards:
        logits = replay.forward([ReplayGroup(g.block, g.fed, g.view) for g in record.groups])
        ends = torch.tensor([len(g.fed) for g in record.groups]).cumsum(0) - 1
        for g, row in zip(record.groups, ends.tolist(), strict=True):
            if g.sampled is not None and g.writer != "prompt":
                assert logits[row].max() - logits[row, g.sampled] <= 1e-4, (record.index, g.writer)
                checked += 1
    assert checked >= 3 * 12
    blocks = result.trace.blocks
    assert {blocks[g.block].author for f in result.trace.forwards for g in f.groups} >= {
        "Alice",
        "Bob",
        "Carol",
    }
    # each token's forward index is recorded with its block
    assert all(len(b.token_ids) == len(b.written_at) for b in blocks.values())


def test_steps_headers_self_check_and_final_answer(qwen_tokenizer, monkeypatch) -> None:
    ScriptedWriters(
        qwen_tokenizer,
        {
            "Alice": "I will add the numbers first.\n\nTwo plus three is five.\n\nDoubling gives ten.\n\n",
            "Bob": "I will double the sum when Alice has it.\n\nSo the answer is \\boxed{10}.\n\nDone.\n\n",
        },
        EOS,
    ).install(monkeypatch)
    engine = engine_for(qwen_tokenizer, workers=2, self_check_every=5, max_forwards=200)
    events = list(engine.stream(QUESTION))
    result = events[-1].result
    commits = [e for e in events if isinstance(e, StepCommittedEvent)]
    assert [c.step for c in commits if c.worker == "Alice"][:2] == [1, 2]
    assert commits[0].text.startswith("**") and "[1]:**" in commits[0].text
    alice = result.workers[0].text
    assert "**Alice [1]:** I will add" in alice and "**Alice [2]:** " in alice
    assert "Quick check: am I doing redundant work? (yes/no): " in alice  # self-check after >= 5 tokens
    assert result.stop_reason == "final_answer"
    assert any("\\boxed{10}" in s for s in result.workers[1].steps)
    assert result.usage.answer_tokens >= 1  # the finisher ran


def test_budgets_end_the_run(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=2)
    r = engine.run(QUESTION, max_forwards=5)
    assert r.stop_reason == "max_forwards" and r.usage.worker_forwards == 5
    r = engine.run(QUESTION, max_forwards=100, max_new_tokens=7)
    assert r.stop_reason == "max_new_tokens" and r.usage.generated_tokens in (7, 8)
    r = engine.run(QUESTION, max_forwards=1000, context_window=400)
    assert r.stop_reason == "context_window" and r.answer is not None
    small = engine_for(qwen_tokenizer, workers=2, max_cache_tokens=512, page_size=8)
    r = small.run(QUESTION, max_forwards=1000)
    assert r.stop_reason == "cache_full"
    assert small.runner.store.free_pages == small.runner.store.num_pages


def test_the_engine_names_the_finish_reason_as_openai_clients_read_it(qwen_tokenizer, monkeypatch) -> None:
    """One rule, set by the engine (RunResult.finish_reason), that the server and both front ends report."""
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=3)
    r = engine.run(QUESTION, max_answer_tokens=4)  # random weights: the finisher writes to its budget
    assert r.usage.answer_tokens == 4 and r.finish_reason == "length"
    plain = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    r = plain.run(QUESTION, max_forwards=5)
    assert r.stop_reason == "max_forwards" and r.finish_reason == "length"
    ScriptedWriters(qwen_tokenizer, {"Alice": "alpha beta STOP gamma delta"}, EOS).install(monkeypatch)
    r = plain.run(QUESTION, stop=["STOP"], max_forwards=50)
    assert r.answer == "alpha beta " and r.finish_reason == "stop"


def test_reasoning_tokens_are_the_workers_tokens_that_are_not_the_answer(qwen_tokenizer) -> None:
    """One count, set by the engine, that the server, LangChain and LlamaIndex report as reasoning tokens."""
    team = engine_for(qwen_tokenizer, workers=2, max_forwards=4).run(QUESTION)
    assert team.answer_worker is None and team.usage.generated_tokens == 8
    assert team.usage.reasoning_tokens == 8  # a finisher wrote the answer: every worker token is reasoning
    plain = engine_for(qwen_tokenizer, workers=1, collaboration=False).run(QUESTION, max_forwards=5)
    assert plain.answer_worker == "Alice" and plain.usage.generated_tokens == 5
    assert plain.usage.reasoning_tokens == 0  # the worker's text is the answer
    no_finisher = engine_for(qwen_tokenizer, workers=2, finisher=False).run(QUESTION, max_forwards=3)
    bob = next(w for w in no_finisher.workers if w.name == "Bob")
    assert no_finisher.answer_worker == "Alice" and no_finisher.usage.reasoning_tokens == bob.generated_tokens


def test_stop_strings_end_plain_generation(qwen_tokenizer, monkeypatch) -> None:
    ScriptedWriters(qwen_tokenizer, {"Alice": "alpha beta STOP gamma delta"}, EOS).install(monkeypatch)
    engine = engine_for(qwen_tokenizer, workers=1, collaboration=False)
    r = engine.run(QUESTION, stop=["STOP"])
    assert r.answer == "alpha beta "
    assert r.workers[0].stop_reason == "stop_string"


def test_seeded_sampling_is_reproducible(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=10, temperature=1.0, top_p=0.9, top_k=50)
    a = engine.run(QUESTION, seed=3)
    b = engine.run(QUESTION, seed=3)
    c = engine.run(QUESTION, seed=4)
    texts = lambda r: [w.text for w in r.workers]  # noqa: E731
    assert texts(a) == texts(b) and a.answer == b.answer
    assert texts(a) != texts(c)


def test_bad_requests_raise_clearly_and_engine_stays_usable(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=4)
    good = engine.run(QUESTION)
    with pytest.raises(InvalidRequestError, match="empty"):
        engine.run("   ")
    with pytest.raises(InvalidRequestError, match="non-empty"):
        engine.run([])
    with pytest.raises(InvalidRequestError, match="role 'robot'"):
        engine.run([{"role": "robot", "content": "hi"}])
    with pytest.raises(ContextOverflowError, match="context window"):
        engine.run("word " * 5000)
    with pytest.raises(InvalidRequestError, match="unknown option"):
        engine.run(QUESTION, wokers=3)
    with pytest.raises(InvalidRequestError, match="greater than or equal to 1"):
        engine.run(QUESTION, workers=0)
    again = engine.run(QUESTION)
    assert [w.text for w in again.workers] == [w.text for w in good.workers]
    assert engine.runner.store.free_pages == engine.runner.store.num_pages


def test_unsupported_models_are_refused_with_the_reason(qwen_tokenizer) -> None:
    with pytest.raises(UnsupportedModelError, match="sliding-window"):
        HogwildEngine(tiny_model("mistral", sliding_window=16), qwen_tokenizer)
    with pytest.raises(UnsupportedModelError, match="dynamic"):
        HogwildEngine(
            tiny_model("llama", rope_scaling={"rope_type": "dynamic", "factor": 2.0}), qwen_tokenizer
        )
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(UnsupportedModelError, match="gpt2"):
        HogwildEngine(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)), qwen_tokenizer)
    with pytest.raises(ValueError, match="workers"):
        engine_for(qwen_tokenizer, workers=0)


def test_cancelled_stream_frees_the_cache(qwen_tokenizer) -> None:
    engine = engine_for(qwen_tokenizer, workers=3, max_forwards=50)
    stream = engine.stream(QUESTION)
    for i, event in enumerate(stream):
        if isinstance(event, TokenEvent) and i > 10:
            break
    stream.close()
    assert engine.runner.store.free_pages == engine.runner.store.num_pages
    assert isinstance(list(engine.stream(QUESTION, max_forwards=3))[-1], FinishedEvent)


def test_concurrent_threads_and_asyncio_are_safe(qwen_tokenizer) -> None:
    import asyncio

    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=6)
    expected = engine.run(QUESTION)
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine.run(QUESTION))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def both():
        return await asyncio.gather(engine.arun(QUESTION), engine.arun(QUESTION))

    results += asyncio.run(both())
    assert len(results) == 5
    assert all([w.text for w in r.workers] == [w.text for w in expected.workers] for r in results)


@pytest.mark.parametrize("stop", [["STOP"], ["ST", "xyz"], ["never there"]])
def test_answer_stream_never_shows_a_stop_string(qwen_tokenizer, monkeypatch, stop: list[str]) -> None:
    """Answer deltas hold back a tail that may begin a stop string, and join to exactly the final answer."""
    from hogwild_agents import AnswerEvent

    script = "The answer is 42. STOP and more"
    ScriptedWriters(qwen_tokenizer, {"finisher": script}, EOS).install(monkeypatch)
    engine = engine_for(qwen_tokenizer, workers=2, max_forwards=4, max_answer_tokens=32)
    events = list(engine.stream(QUESTION, stop=stop))
    streamed = "".join(e.text for e in events if isinstance(e, AnswerEvent))
    answer = events[-1].result.answer
    assert streamed.strip() == answer
    assert not any(s in streamed for s in stop)
    expected = script.split(stop[0], 1)[0].strip() if stop[0] in script else script
    assert answer == expected
