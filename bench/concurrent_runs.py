"""Concurrent requests through the whole engine: one run alone against N runs submitted at once.

Everything a user's ``engine.run`` does is in the timing: prompt prefill, step headers, commits, the
finisher, events, and for N runs the scheduler batching their tokens into shared forwards. Random bf16
weights with a real model's shapes (``bench/e2e.py``'s configs) and the Qwen tokenizer from a directory.

Reported per case: wall time of the slowest run, tokens written by workers and finisher, aggregate tok/s,
forwards per run, how many forwards served several runs, and the speed-up of N runs over one.
Usage: python bench/concurrent_runs.py --tokenizer DIR --model qwen2.5-7b --runs 4 --workers 2
"""

from __future__ import annotations

import argparse
import datetime
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import e2e  # noqa: E402

from hogwild_agents import HogwildEngine, RunResult  # noqa: E402

TOPICS = ["prime numbers", "sorting algorithms", "the water cycle", "binary search", "photosynthesis",
          "hash tables", "plate tectonics", "graph colouring"]  # fmt: skip


def prompt(i: int, tokens: int) -> str:
    filler = f"Background notes on {TOPICS[i % len(TOPICS)]}, paragraph {{}}. "
    words = " ".join(filler.format(k) for k in range(max(1, tokens // 12)))
    return f"{words}\nSummarise the notes on {TOPICS[i % len(TOPICS)]} in three points."


def run_all(engine: HogwildEngine, prompts: list[str], **cfg) -> tuple[float, list[RunResult]]:
    results: list[RunResult | None] = [None] * len(prompts)
    barrier = threading.Barrier(len(prompts) + 1)

    def one(i: int) -> None:
        barrier.wait()
        results[i] = engine.run(prompts[i], **cfg)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, [r for r in results if r is not None]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--model", default="qwen2.5-7b")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--forwards", type=int, default=200)
    p.add_argument("--prompt-tokens", type=int, default=1024)
    p.add_argument("--md", default=None)
    a = p.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    e2e.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    model = e2e.build_model(a.model, a.layers)
    engine = HogwildEngine(
        model, tokenizer, workers=a.workers, max_forwards=a.forwards, max_answer_tokens=32,
        max_cache_tokens=max(16384, 2 * a.runs * (a.prompt_tokens + a.workers * a.forwards)), page_size=64,
    )  # fmt: skip
    run_all(engine, [prompt(0, a.prompt_tokens)], max_forwards=20)  # warm-up: graph capture, kernels
    run_all(engine, [prompt(i, a.prompt_tokens) for i in range(a.runs)], max_forwards=20)
    rows = []
    for n in (1, a.runs):
        before = engine.scheduler.batched_forwards
        wall, results = run_all(engine, [prompt(i, a.prompt_tokens) for i in range(n)])
        tokens = sum(r.usage.generated_tokens + r.usage.answer_tokens for r in results)
        rows.append(
            dict(runs=n, wall=wall, tokens=tokens, tps=tokens / wall,
                 forwards=sum(r.usage.forwards for r in results) / n,
                 batched=engine.scheduler.batched_forwards - before)
        )  # fmt: skip
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    import transformers

    lines = [
        f"concurrent runs {datetime.datetime.now().isoformat(timespec='seconds')} card={card} "
        f"torch={torch.__version__} transformers={transformers.__version__} model={a.model} W={a.workers} "
        f"prompt≈{a.prompt_tokens} tokens, max_forwards={a.forwards}",
        "",
        "| runs at once | wall s | tokens | agg tok/s | forwards per run | batched forwards | vs 1 run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runs']} | {r['wall']:.2f} | {r['tokens']} | {r['tps']:.1f} | {r['forwards']:.0f} | "
            f"{r['batched']} | {r['tps'] / rows[0]['tps']:.2f}× |"
        )
    text = "\n".join(lines)
    print(text)
    if a.md:
        Path(a.md).write_text(text + "\n")


if __name__ == "__main__":
    main()
