"""Host work of a prefill through ``engine.run``, apart from the model: what no GPU speeds up.

``engine.run(prompt, max_forwards=1, max_answer_tokens=1)`` with two workers (prefill, one worker
forward, a one-token finisher) on the tiny random Qwen2 model with the real tokenizer, so the model's
forwards cost little and are timed apart (a wrapper around ``model.forward``); the rest of the wall time is
the host's: rendering, tokenizing, planning, sampling, events. Tokenizing the prompt alone is timed
beside it, with the ``tokenizers`` backend called directly as well as through transformers. The tiny
model's context window (4096) bounds the lengths.

Usage: python bench/prefill_host.py [--lengths 1024,2048,4096] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tokenizers import Tokenizer

from hogwild_agents import HogwildEngine
from hogwild_agents.models.testing import tiny_random_qwen2


def prompt_of(tokenizer, tokens: int) -> str:
    """A prompt of about ``tokens`` tokens (the text bench/prefill.py uses on the GPU)."""
    unit = "Background note on the water cycle, its stages and their order. "
    per = len(tokenizer.encode(unit))
    return unit * max(1, (tokens - 60) // per) + "\nSummarise the notes in three points."


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="1024,2048,4096", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    model, tokenizer = tiny_random_qwen2()
    plain_backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    plain_backend.encode_special_tokens = True  # what split_special_tokens=True asks of transformers
    forward_s: list[float] = []
    original = model.forward

    def timed_forward(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        forward_s.append(time.perf_counter() - t0)
        return out

    model.forward = timed_forward
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tiny random Qwen2, real tokenizer")
    print(
        "| text tokens | prompt tokens | engine.run ms | model forwards ms | host ms | tokenize (HF) ms "
        "| tokenize (backend) ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for length in a.lengths:
        text = prompt_of(tokenizer, length)
        engine = HogwildEngine(
            model,
            tokenizer,
            workers=2,
            max_forwards=1,
            max_answer_tokens=1,
            page_size=64,
            max_cache_tokens=length + 4096,
        )
        prompt_tokens = engine.run(text).usage.prompt_tokens
        rows = []
        for _ in range(a.repeats):
            forward_s.clear()
            t0 = time.perf_counter()
            engine.run(text)
            rows.append(((time.perf_counter() - t0) * 1e3, sum(forward_s) * 1e3))
        wall, model_ms = sorted(rows)[len(rows) // 2]
        hf = median_ms(
            lambda: tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True), a.repeats
        )
        backend = median_ms(lambda: plain_backend.encode(text, add_special_tokens=False).ids, a.repeats)
        n_text = len(tokenizer.encode(text, add_special_tokens=False))
        print(
            f"| {n_text} | {prompt_tokens} | {wall:.1f} | {model_ms:.1f} | {wall - model_ms:.1f} | {hf:.1f} "
            f"| {backend:.1f} |"
        )
        engine.close()


if __name__ == "__main__":
    main()
