"""Before/after comparison of kernel launch variants on the shapes where W=4/W=8 were slow.

Each variant is timed on the same setups, in the same process, with bench/kernel.py's method (CUDA graph
cycling 256+ MiB of distinct per-layer KV, median and p20/p80 of the replays, per layer incl. merge).
``before`` reproduces the launch rule of commit 9033e0a (one tile of up to 64 rows, 4 warps below 64
rows, sin/cos per tile); ``after`` is the current default (16-row tiles up to 48 rows, per-forward table).

Usage: python bench/kernel_variants.py [--reps 20] [--out variants.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel as kb  # noqa: E402  (bench/kernel.py: setups and graph timing shared with the main table)
from hogwild_kernels.triton_attention import LaunchConfig  # noqa: E402

SHAPES = [
    ("qwen2.5-7b", 4096, 4),
    ("qwen2.5-7b", 32768, 1),
    ("qwen2.5-7b", 32768, 4),
    ("qwen2.5-7b", 32768, 8),
    ("qwen2.5-14b", 16384, 4),
    ("qwen2.5-14b", 16384, 8),
    ("llama-3.1-8b", 32768, 8),
]


def block_m(hq: int, hkv: int, workers: int, cap: int = 64) -> int:
    rows = workers * (hq // hkv)
    return cap if rows >= cap else max(16, 1 << (rows - 1).bit_length())


VARIANTS = {  # name: (config for (hq, hkv, W), use the per-forward cos/sin table)
    "before": (lambda hq, hkv, w: LaunchConfig(max_block_m=64), False),
    "warps8": (
        lambda hq, hkv, w: LaunchConfig(max_block_m=64, num_warps=8 if block_m(hq, hkv, w) >= 32 else 4),
        False,
    ),
    "table": (lambda hq, hkv, w: LaunchConfig(max_block_m=64), True),
    "rows16+table": (lambda hq, hkv, w: LaunchConfig(max_block_m=16), True),
    "rows32+table": (lambda hq, hkv, w: LaunchConfig(max_block_m=32), True),
    "after": (lambda hq, hkv, w: LaunchConfig(), True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","))
    p.add_argument("--out", default=None, help="write the markdown table here too")
    args = p.parse_args()
    torch.manual_seed(0)
    results: dict[tuple, dict[str, tuple]] = {}
    for model, length, workers in SHAPES:
        hq, hkv = kb.MODELS[model]
        s = kb.make_setup(hq, hkv, length, workers, 64, 200, 256)
        table = s.meta  # make_setup attaches the per-forward cos/sin table, as the engine does
        plain = dataclasses.replace(table, shift_cos_sin=None)
        cell = results.setdefault((model, length, workers), {"kv_bytes": s.kv_bytes})
        for name in args.variants:
            make_cfg, use_table = VARIANTS[name]
            cfg = make_cfg(hq, hkv, workers)
            s.meta = table if use_table else plain
            try:
                t = kb.time_triton(s, cfg, args.reps)
                err = kb.relative_error(s, cfg)
            except Exception as exc:  # a variant that fails to compile loses, the others still count
                print(f"{model} {length} W={workers} {name}: failed {type(exc).__name__}: {str(exc)[:200]}")
                continue
            cell[name] = t
            print(
                json.dumps(
                    dict(
                        model=model,
                        L=length,
                        W=workers,
                        variant=name,
                        us=t,
                        err=err,
                        cfg=dataclasses.asdict(cfg),
                    )
                ),
                flush=True,
            )
        del s
        torch.cuda.empty_cache()
    head = "| model | L | W | " + " | ".join(f"{v} µs" for v in args.variants) + " | best | before/best |"
    lines = [head, "|" + "---|" * (len(args.variants) + 5)]
    for (model, length, workers), cell in results.items():
        times = {v: cell[v][1] for v in args.variants if v in cell}
        best = min(times, key=times.get) if times else "-"
        ratio = times.get("before", float("nan")) / times[best] if times else float("nan")
        vals = " | ".join(
            f"{cell[v][1]:.1f} ({cell[v][0]:.1f}–{cell[v][2]:.1f})" if v in cell else "fail"
            for v in args.variants
        )
        lines.append(f"| {model} | {length // 1024}k | {workers} | {vals} | {best} | {ratio:.2f} |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
