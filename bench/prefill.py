"""Time to the first answer token through ``engine.run`` against one Hugging Face forward over the prompt.

For each prompt length L: ``engine.run(prompt, max_forwards=1, max_answer_tokens=1)`` with two
collaborating workers (the default prompt machinery) is prefill + one worker forward + a one-token
finisher, i.e. what a user waits for before anything is written. The prompt block goes through SDPA's
fused kernels (``ForwardPlan.dense_queries``); ``kernel path`` is the same run with that switched off
(the shifted-attention kernel's chunk path over the prompt, as before). The baseline is one forward of the
same model (a copy: the engine fuses its model's ops) with transformers' ``sdpa`` attention over as many
tokens as the engine's prompt holds (template and instructions included), logits at the last position only.
Random bf16 weights of a real shape (``bench/e2e.py``), median of repeats after a warm-up.

Usage: python bench/prefill.py --tokenizer DIR [--model qwen2.5-7b] [--lengths 1024,4096,16384,32000]
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

import decode_profile  # noqa: E402
import e2e  # noqa: E402

from hogwild_agents import HogwildEngine  # noqa: E402
from hogwild_agents.cache import plan as plan_module  # noqa: E402


def prompt_of(tokenizer, tokens: int) -> str:
    unit = "Background note on the water cycle, its stages and their order. "
    per = len(tokenizer.encode(unit))
    return unit * max(1, (tokens - 60) // per) + "\nSummarise the notes in three points."


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--model", default="qwen2.5-7b")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument(
        "--lengths", default="1024,4096,16384,32000", type=lambda s: [int(x) for x in s.split(",")]
    )
    p.add_argument("--kernel-path-up-to", type=int, default=16384, help="also time the old path up to here")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--md", default=None)
    p.add_argument(
        "--profile",
        default="",
        type=lambda s: [int(x) for x in s.split(",") if x],
        help="lengths to profile (kernel time by category, engine.run and the HF forward)",
    )
    a = p.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    e2e.DEVICE = "cuda"
    model = e2e.build_model(a.model, a.layers)
    # The baseline runs on a model of its own: the engine switches its model's attention and fuses its ops.
    plain = e2e.build_model(a.model, a.layers)
    plain.set_attn_implementation("sdpa")
    plain_bytes = sum(p.nbytes for p in plain.parameters())
    rows = []
    for length in a.lengths:
        text = prompt_of(tokenizer, length)
        engine = HogwildEngine(
            model, tokenizer, workers=2, max_forwards=1, max_answer_tokens=1, page_size=64,
            max_cache_tokens=length + 4096,
        )  # fmt: skip
        n_prompt = engine.run(text).usage.prompt_tokens  # warm-up
        ours = timed(lambda: engine.run(text), a.repeats)
        kernel_path = float("nan")
        if length <= a.kernel_path_up_to:
            original = plan_module.is_dense_prefix
            plan_module.is_dense_prefix = lambda group: False
            try:
                engine.run(text)
                kernel_path = timed(lambda: engine.run(text), a.repeats)
            finally:
                plan_module.is_dense_prefix = original
        peak = (torch.cuda.max_memory_allocated() - plain_bytes) / 2**30  # the engine's, not the baseline's
        # The baseline reads as many tokens as the engine's prompt (the chat template and the workers'
        # instructions included): the same work, so the ratio is the engine's own cost.
        ids = torch.randint(0, 1000, (1, n_prompt), device="cuda")
        with torch.no_grad():
            plain(ids, logits_to_keep=1)
            hf = timed(lambda: plain(ids, logits_to_keep=1), a.repeats)
        if length in a.profile:
            runs = {
                "engine.run": lambda: engine.run(text),
                "HF forward": lambda: plain(ids, logits_to_keep=1),
            }
            for what, fn in runs.items():
                with torch.no_grad():
                    per_cat, per_kernel = decode_profile.kernels_of(fn, 1)
                ms = sum(per_cat.values()) / 1e3
                print(f"\n### prefill profile: {what}, {ids.shape[1]} tokens: {ms:.1f} ms of kernels\n")
                decode_profile.report(per_cat, per_kernel, print, top=15)
        engine.close()
        n_text = len(tokenizer.encode(text))
        rows.append(dict(L=length, text=n_text, prompt=n_prompt, ours=ours, kernel=kernel_path, hf=hf,
                         ratio=ours / hf, peak=peak))  # fmt: skip
        print(rows[-1], flush=True)
        torch.cuda.empty_cache()
    import transformers

    lines = [
        f"prefill {datetime.datetime.now().isoformat(timespec='seconds')} "
        f"card={torch.cuda.get_device_name()} "
        f"torch={torch.__version__} transformers={transformers.__version__} model={a.model} W=2 "
        "(engine.run: prefill + 1 worker forward + 1 finisher token)",
        "",
        "| text tokens | prompt tokens | engine.run ms | kernel path ms | HF sdpa forward ms | engine / HF "
        "| peak GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['text']} | {r['prompt']} | {r['ours']:.1f} | {r['kernel']:.1f} | {r['hf']:.1f} | "
            f"{r['ratio']:.2f} | {r['peak']:.1f} |"
        )
    out = "\n".join(lines)
    print(out)
    if a.md:
        Path(a.md).write_text(out + "\n")


if __name__ == "__main__":
    main()
