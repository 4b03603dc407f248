"""Overlapping host work with the GPU (engine.pipeline) changes when the host plans, never what it plans.

Each run below is made twice, with ``overlap_host_work`` on and off, and must give the same trace (every
forward's groups, views, fed and sampled tokens), blocks, texts and answer; with it on, steps really were
overlapped. Concurrent runs, sampling, the finisher, budgets ending mid-way and cancellation are covered.
"""

from __future__ import annotations

import threading

import pytest
from greedy_cases import EOS, QUESTION, VOCAB, summarize
from tiny_models import tiny_model

from hogwild_agents import HogwildEngine, TokenEvent


def engines(tokenizer, **cfg):
    model = tiny_model("qwen2", vocab_size=VOCAB, eos_token_id=EOS)
    common = {"page_size": 8, "max_cache_tokens": 4096, "max_answer_tokens": 12, **cfg}
    return (
        HogwildEngine(model, tokenizer, overlap_host_work=True, **common),
        HogwildEngine(model, tokenizer, overlap_host_work=False, **common),
    )


@pytest.mark.parametrize(
    "options",
    [
        {"workers": 1, "collaboration": False, "max_forwards": 40},
        {"workers": 3, "max_forwards": 40},
        {"workers": 2, "layout": "interleaved", "max_forwards": 30, "max_new_tokens": 37},
        {"workers": 4, "max_forwards": 25, "temperature": 0.9, "top_p": 0.9, "top_k": 50, "seed": 5},
        {"workers": 2, "layout": "contiguous", "max_forwards": 30, "context_window": 330},
    ],
)
def test_overlap_gives_the_same_run(qwen_tokenizer, options) -> None:
    on, off = engines(qwen_tokenizer)
    a, b = on.run(QUESTION, **options), off.run(QUESTION, **options)
    assert summarize(a) == summarize(b)
    assert on.scheduler.overlapped_steps > 0 and off.scheduler.overlapped_steps == 0
    scratch = 1 if on.runner.graphs is not None else 0
    assert on.runner.store.free_pages + scratch == on.runner.store.num_pages


def test_overlap_with_concurrent_runs(qwen_tokenizer) -> None:
    on, off = engines(qwen_tokenizer, workers=2, max_forwards=30)
    prompts = [QUESTION, "Name three colours.", "Count to five."]
    solo = [summarize(off.run(p)) for p in prompts]
    out: list = [None] * len(prompts)

    def one(i: int) -> None:
        out[i] = summarize(on.run(prompts[i]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == solo
    assert on.scheduler.overlapped_steps > 0 and on.scheduler.batched_forwards > 0


def test_cancelling_mid_overlap_frees_everything(qwen_tokenizer) -> None:
    on, _ = engines(qwen_tokenizer, workers=3, max_forwards=200)
    stream = on.stream(QUESTION)
    for i, event in enumerate(stream):
        if isinstance(event, TokenEvent) and i > 40:
            break
    stream.close()
    store = on.runner.store
    left = [(b.id, b.author, b.kind, b.length, len(b.pages)) for b in store.blocks.values()]
    scratch = 1 if on.runner.graphs is not None else 0  # the graphs' scratch page never returns
    assert store.free_pages + scratch == store.num_pages, left
    assert on.run(QUESTION, max_forwards=5).usage.worker_forwards == 5


def test_closing_a_stream_that_was_never_read_cancels_its_run(qwen_tokenizer) -> None:
    on, _ = engines(qwen_tokenizer, workers=2, max_forwards=400)
    stream = on.stream(QUESTION)
    stream.close()  # returns once the run is cancelled and its pages are free
    store = on.runner.store
    scratch = 1 if on.runner.graphs is not None else 0
    assert not store.blocks and store.free_pages + scratch == store.num_pages
