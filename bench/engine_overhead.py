"""What the engine loop costs on top of the bare CUDA-graph decode step, per worker count.

For each W: ``engine.run`` on a ~1.3k-token prompt with collaboration on and the default prompt machinery
(headers, self-checks, the step rule, events, trace), random bf16 weights of a real model's shape
(``bench/e2e.py``'s configs) and the Qwen tokenizer. The marginal time per forward is the difference
between a long and a short run divided by the difference in forwards, so prefill, graph capture and the
finisher cancel out. Beside it, in the same process: the bare step, i.e. the replay of the decode graph
the runs used (GPU time between events), and a host-time profile of the scheduler's three calls per step.

Usage: python bench/engine_overhead.py --tokenizer DIR [--model qwen2.5-7b] [--workers 1,2,4,8] [--md FILE]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import e2e  # noqa: E402

from hogwild_agents import HogwildEngine  # noqa: E402
from hogwild_agents.engine import scheduler as scheduler_module  # noqa: E402


def prompt(tokens: int) -> str:
    words = " ".join(f"Background note {k} on the water cycle and its stages." for k in range(tokens // 11))
    return f"{words}\nSummarise the notes in three points."


class StepProfile:
    """Host seconds spent in Scheduler.schedule / forward / postprocess (wrapped while a run is timed)."""

    def __init__(self) -> None:
        self.seconds = {"schedule": 0.0, "forward": 0.0, "postprocess": 0.0}
        self._originals = {}

    def __enter__(self) -> StepProfile:
        for name in self.seconds:
            original = getattr(scheduler_module.Scheduler, name)
            self._originals[name] = original

            def timed(self_, *args, _original=original, _name=name):
                t0 = time.perf_counter()
                out = _original(self_, *args)
                self.seconds[_name] += time.perf_counter() - t0
                return out

            setattr(scheduler_module.Scheduler, name, timed)
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._originals.items():
            setattr(scheduler_module.Scheduler, name, original)


def timed_run(engine: HogwildEngine, text: str, forwards: int) -> tuple[float, int]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = engine.run(text, max_forwards=forwards)
    torch.cuda.synchronize()
    return time.perf_counter() - t0, result.usage.forwards


def bare_replay_ms(engine: HogwildEngine, workers: int) -> float:
    """GPU time of one replay of the largest greedy decode graph captured for ``workers`` groups."""
    graphs = engine.runner.graphs
    assert graphs is not None
    bucket = max(1, 1 << (workers - 1).bit_length())
    key = max((k for k in graphs._steps if k[0] == k[1] == bucket and not k[3]), key=lambda k: k[2])
    graph = graphs._steps[key].graph
    assert graph is not None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(30):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--model", default="qwen2.5-7b")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--workers", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--prompt-tokens", type=int, default=1300)
    p.add_argument("--short", type=int, default=32)
    p.add_argument("--long", type=int, default=288)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--md", default=None)
    a = p.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    e2e.DEVICE = "cuda"
    model = e2e.build_model(a.model, a.layers)
    text = prompt(a.prompt_tokens)
    rows = []
    for workers in a.workers:
        engine = HogwildEngine(
            model, tokenizer, workers=workers, max_answer_tokens=1, page_size=64,
            max_cache_tokens=a.prompt_tokens + workers * (a.long + 256) * 2 + 4096,
        )  # fmt: skip
        timed_run(engine, text, a.short)  # warm-up: graph capture, Triton compile
        timed_run(engine, text, a.long)
        for overlap in (True, False):
            engine.scheduler.overlap = overlap
            short = min(timed_run(engine, text, a.short) for _ in range(a.repeats))
            runner, sched = engine.runner, engine.scheduler
            eager0, overlapped0, steps0 = runner.eager_forwards, sched.overlapped_steps, sched.steps
            with StepProfile() as profile:
                long_runs = [timed_run(engine, text, a.long) for _ in range(a.repeats)]
            long = min(long_runs)
            per_forward = (long[0] - short[0]) / (long[1] - short[1]) * 1e3
            steps = sched.steps - steps0
            host = {k: v / steps * 1e3 for k, v in profile.seconds.items()}
            bare = bare_replay_ms(engine, workers)
            rows.append(
                dict(W=workers, overlap=overlap, per_forward=per_forward, bare=bare, ratio=per_forward / bare,
                     tok_s=workers / per_forward * 1e3, bare_tok_s=workers / bare * 1e3, **host,
                     eager=(runner.eager_forwards - eager0) / a.repeats,
                     overlapped=(sched.overlapped_steps - overlapped0) / max(1, steps),
                     prompt=len(tokenizer.encode(text)))
            )  # fmt: skip
            print(rows[-1], flush=True)
        engine.close()
    import transformers

    lines = [
        f"engine overhead {datetime.datetime.now().isoformat(timespec='seconds')} "
        f"card={torch.cuda.get_device_name()} torch={torch.__version__} "
        f"transformers={transformers.__version__} model={a.model} prompt={rows[0]['prompt']} tokens "
        f"forwards {a.short}->{a.long}",
        "",
        "| W | overlap | engine.run ms/forward | bare graph step ms | ratio | engine tok/s | bare tok/s | "
        "schedule ms | launch ms | postprocess ms | eager forwards per run | steps overlapped |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['W']} | {'on' if r['overlap'] else 'off'} | {r['per_forward']:.2f} | {r['bare']:.2f} | "
            f"{r['ratio']:.3f} | {r['tok_s']:.1f} | {r['bare_tok_s']:.1f} | {r['schedule']:.3f} | "
            f"{r['forward']:.3f} | {r['postprocess']:.3f} | {r['eager']:.0f} | {r['overlapped']:.0%} |"
        )
    out = "\n".join(lines)
    print(out)
    if a.md:
        Path(a.md).write_text(out + "\n")


if __name__ == "__main__":
    main()
