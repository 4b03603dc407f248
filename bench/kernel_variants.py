"""Launch variants of the Triton kernel side by side: W = 1 / 4 / 8 at large GQA groups (issue 14).

Each variant is timed on the same setups, in the same process, with bench/kernel.py's method (CUDA graph
cycling 256+ MiB of distinct per-layer KV, median and p20/p80 of the replays, per layer incl. merge; bf16;
page 64; combined layout; the per-forward cos/sin table as the engine plans it). For every model and cache
length it prints, per variant, the W=1/4/8 times, the W-ratios (time(W) / time(W=1) of that variant) and
the achieved KV bandwidth, then checks the targets (W=4 ≤ 1.15, W=8 ≤ 1.35 at L ≥ 16k).

Variants (all on the current kernel code; the true "before" numbers are in bench/RESULTS.md, H200,
2026-11-26, or from bench/kernel.py at commit 2b358bf):

- ``old-rule``: the previous launch rule: 16-row tiles up to 48 rows (several programs re-read each KV
  tile), one 64-row tile above; rotation every tile; splits ``ceil(2 x SMs / programs)``; 5 stages;
- ``default``: the current defaults (one program per KV head up to 64 rows; rotation only where a row's
  shift changes; splits at or under 2 x SMs, bounded by partial traffic; constexpr pool strides);
- ``every-tile``: the defaults with the rotation recomputed every tile;
- ``warps8``: 8 warps for 32-row tiles too; ``rows16``: at most 16 rows per program (re-reads);
- ``stages4`` / ``stages3``: pipelining depth 4 / 3 (default 5); ``no-partial-bound``: splits from the SM
  count alone.

Usage: python bench/kernel_variants.py [--variants default,old-rule,...] [--models qwen2.5-7b,qwen2.5-14b]
       [--lengths 4096,16384,32768] [--workers 1,4,8] [--reps 20] [--out variants.md]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel as kb  # noqa: E402  (bench/kernel.py: setups and graph timing shared with the main table)
from hogwild_kernels.launch import LaunchConfig  # noqa: E402

PAGE_SIZE = 64


def _old_rule(hq: int, hkv: int, workers: int, entries: int, sms: int) -> LaunchConfig:
    rows = workers * (hq // hkv)
    cap = 64 if rows > 48 else 16
    block_m = cap if rows >= cap else max(16, 1 << (rows - 1).bit_length())
    programs = hkv * -(-rows // block_m)
    splits = max(1, math.ceil(2.0 * sms / programs))
    return LaunchConfig(
        max_block_m=cap, rotate_on_change=False, num_stages=5, max_partial_ratio=None, num_splits=splits
    )


def _rows(hq: int, hkv: int, workers: int) -> int:
    return workers * (hq // hkv)


VARIANTS = {  # name: (hq, hkv, W, entries, SMs) -> LaunchConfig
    "old-rule": _old_rule,
    "default": lambda hq, hkv, w, e, sms: LaunchConfig(),
    "every-tile": lambda hq, hkv, w, e, sms: LaunchConfig(rotate_on_change=False),
    "warps8": lambda hq, hkv, w, e, sms: LaunchConfig(num_warps=8 if _rows(hq, hkv, w) > 16 else None),
    "rows16": lambda hq, hkv, w, e, sms: LaunchConfig(max_block_m=16),
    "stages4": lambda hq, hkv, w, e, sms: LaunchConfig(num_stages=4),
    "stages3": lambda hq, hkv, w, e, sms: LaunchConfig(num_stages=3),
    "no-partial-bound": lambda hq, hkv, w, e, sms: LaunchConfig(max_partial_ratio=None),
}


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","))
    p.add_argument("--models", default="qwen2.5-7b,qwen2.5-14b", type=lambda s: s.split(","))
    p.add_argument("--lengths", default="4096,16384,32768", type=_ints)
    p.add_argument("--workers", default="1,4,8", type=_ints)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", default=None, help="write the markdown tables here too")
    args = p.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    torch.manual_seed(0)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    # times[(model, L)][variant][W] = (p20, median, p80); tbps likewise
    times: dict[tuple[str, int], dict[str, dict[int, tuple]]] = {}
    tbps: dict[tuple[str, int], dict[str, dict[int, float]]] = {}
    for model in args.models:
        hq, hkv = kb.MODELS[model]
        for length in args.lengths:
            cell_t = times.setdefault((model, length), {})
            cell_b = tbps.setdefault((model, length), {})
            for workers in args.workers:
                s = kb.make_setup(hq, hkv, length, workers, PAGE_SIZE, 200, 256)
                for name in args.variants:
                    cfg = VARIANTS[name](hq, hkv, workers, s.meta.num_entries, sms)
                    try:
                        t = kb.time_triton(s, cfg, args.reps)
                        err = kb.relative_error(s, cfg)
                    except Exception as exc:  # a variant that fails to compile loses, the others count
                        print(
                            f"{model} {length} W={workers} {name}: failed {type(exc).__name__}: {exc}"[:300]
                        )
                        continue
                    cell_t.setdefault(name, {})[workers] = t
                    cell_b.setdefault(name, {})[workers] = s.kv_bytes / (t[1] * 1e-6) / 1e12
                    launch = kb.describe_launch(s, hq, hkv, PAGE_SIZE, cfg)
                    row = dict(model=model, L=length, W=workers, variant=name, us=t, err=err, launch=launch)
                    print(json.dumps(row), flush=True)
                del s
                torch.cuda.empty_cache()
    text = render(times, tbps, args.variants, args.workers)
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def render(times, tbps, variants, workers) -> str:
    """One table per (model, L): a row per variant with the times, W-ratios and TB/s; then the targets."""
    blocks, misses, met = [], [], []
    w_cols = " | ".join(f"W={w} µs (TB/s)" for w in workers)
    r_cols = " | ".join(f"W={w}/W=1" for w in workers if w != 1)
    for (model, length), cell in times.items():
        lines = [f"**{model}, {length // 1024}k**", "", f"| variant | {w_cols} | {r_cols} |"]
        lines.append("|---|" + "---|" * (len(workers) + len([w for w in workers if w != 1])))
        for name in variants:
            if name not in cell:
                continue
            t, b = cell[name], tbps[(model, length)][name]
            vals = " | ".join(
                f"{t[w][1]:.1f} ({t[w][0]:.1f}–{t[w][2]:.1f}) ({b[w]:.2f})" if w in t else "fail"
                for w in workers
            )
            ratios = []
            for w in workers:
                if w == 1:
                    continue
                if w in t and 1 in t:
                    ratio = t[w][1] / t[1][1]
                    ratios.append(f"{ratio:.2f}")
                    if length >= 16384 and name == "default" and w in (4, 8):
                        goal = 1.15 if w == 4 else 1.35
                        (met if ratio <= goal else misses).append(
                            f"{model} {length // 1024}k W={w}: {ratio:.2f}"
                        )
                else:
                    ratios.append("–")
            lines.append(f"| {name} | {vals} | {' | '.join(ratios)} |")
        blocks.append("\n".join(lines))
    summary = (
        f"Targets (default variant, L ≥ 16k: W=4 ≤ 1.15, W=8 ≤ 1.35): {'met' if not misses else 'MISSED'}"
        f" — met: {', '.join(met) or 'none'}; missed: {', '.join(misses) or 'none'}"
    )
    return "\n\n".join(blocks) + "\n\n" + summary


if __name__ == "__main__":
    main()
