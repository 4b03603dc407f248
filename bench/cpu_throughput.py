"""Aggregate decode throughput of the engine on the default real model, W = 1, 2, 4 (CPU or GPU).

Usage: python bench/cpu_throughput.py [--dtype float32] [--forwards 48] [--append bench/RESULTS.md]

Each configuration first runs a warm-up request; then the timed run decodes ``--forwards`` sequential
forward passes (collaboration on, greedy, finisher off so only worker decoding is timed). Tokens/s counts
the tokens sampled by all workers divided by the wall time of the decode loop (prefill excluded).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import time

import torch
import transformers

from hogwild_agents import FinishedEvent, HogwildEngine, TokenEvent

PROMPT = "Tom has 15 apples and buys 27 more. Then he gives away 12. How many apples does he have at the end?"


def measure(engine: HogwildEngine, workers: int, forwards: int) -> tuple[float, float]:
    """Return (aggregate generated tokens/s, seconds per forward) over the decode loop."""
    first = None
    tokens = 0
    for event in engine.stream(
        PROMPT, workers=workers, max_forwards=forwards, finisher=False, stop_on_final_answer=False
    ):
        if isinstance(event, TokenEvent) and event.generated:
            first = first or time.perf_counter()
            tokens += 1
        if isinstance(event, FinishedEvent):
            end = time.perf_counter()
            result = event.result
    elapsed = end - (first or end)
    return tokens / elapsed, elapsed / max(1, result.usage.worker_forwards - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--forwards", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--append", default=None, help="markdown file to append the table to")
    args = parser.parse_args()
    engine = HogwildEngine.from_pretrained(None, dtype=args.dtype, max_answer_tokens=8)
    engine.run("hi", max_forwards=2)
    rows = []
    for workers in (1, 2, 4):
        runs = [measure(engine, workers, args.forwards) for _ in range(args.repeats)]
        tps = statistics.median(r[0] for r in runs)
        spf = statistics.median(r[1] for r in runs)
        rows.append(f"| {workers} | {tps:.2f} | {spf * 1000:.0f} |")
        print(rows[-1], flush=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    table = "\n".join(
        [
            f"\n## Engine throughput on Qwen2.5-Coder-0.5B-Instruct — {datetime.date.today()}\n",
            f"- device: {device}; torch {torch.__version__}; transformers {transformers.__version__}; "
            f"dtype {args.dtype}",
            f"- command: `python bench/cpu_throughput.py --dtype {args.dtype} --forwards {args.forwards}`; "
            f"commit {commit}",
            f"- median of {args.repeats} runs of {args.forwards} forward passes after a warm-up; "
            "prefill excluded",
            "",
            "| workers | aggregate tok/s | ms per forward |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
    print(table)
    if args.append:
        with open(args.append, "a") as f:
            f.write(table)


if __name__ == "__main__":
    main()
