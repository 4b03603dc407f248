"""Benchmark the Triton RoPE-shifted attention kernel per layer on combined-layout decode metadata.

For each model shape, cache length L and worker count W it times, under CUDA graphs that cycle through
enough layers' distinct KV caches to defeat the 50 MB L2:

- ``triton``: one call for all W workers (KV read once), split kernel + LSE merge;
- ``unbatched``: the same kernel called once per worker (W calls, one group each);
- ``sdpa``: torch SDPA, FLASH_ATTENTION backend, the W·G query rows of one KV head against one sequence
  of length L (Hydragen-style batched emulation; no RoPE shifts, no merge);
- ``reference``: the PyTorch reference (eager, host syncs), at L = 4k only.

It prints a markdown table (median µs per layer with p20-p80, achieved TB/s counting KV bytes once) and
appends it to bench/RESULTS.md with the card, versions, command and commit. ``--tune`` instead runs a
greedy sweep of launch configurations on a few shapes.

Usage: python bench/kernel.py [--models qwen2.5-7b,...] [--lengths 4096,16384,32768] [--workers 1,2,4,8]

W-scaling at large GQA groups (issue 14): ``--models qwen2.5-7b,qwen2.5-14b --workers 1,4,8 --skip-baselines``
prints ×W=1 (the W-ratio) and TB/s per cell and checks the ≤ 1.15 (W=4) / ≤ 1.35 (W=8) targets at 16k+.
``--page-size N`` benchmarks another page size (every size 1..1024 is served).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "kernels"))  # the tests' metadata factory: bench and tests agree
sys.path.insert(0, str(ROOT / "kernels"))

from hogwild_kernels import ShiftedAttentionMetadata, shifted_attention_reference  # noqa: E402
from hogwild_kernels.launch import plan_launch  # noqa: E402
from hogwild_kernels.metadata import with_shift_table  # noqa: E402
from hogwild_kernels.triton_attention import (  # noqa: E402
    AttentionWorkspace,
    LaunchConfig,
    shifted_attention_triton,
)
from metadata_factory import build_metadata, combined_layout_views, default_inv_freq  # noqa: E402

MODELS = {  # name: (query heads, KV heads); head_dim 128
    "qwen2.5-7b": (28, 4),
    "llama-3.1-8b": (32, 8),
    "qwq-32b": (40, 8),
    "qwen2.5-14b": (40, 8),
}
HEAD_DIM = 128
DEVICE = "cuda"  # --smoke-cpu switches to the CPU (Triton interpreter, eager timing) to check the script
HEADER, OWN_HEADER = 12, 6


@dataclasses.dataclass
class Setup:
    meta: ShiftedAttentionMetadata
    query: torch.Tensor  # [W, Hq, D]
    keys: list[torch.Tensor]  # per cycled layer [P, page, Hkv, D]
    values: list[torch.Tensor]
    inv_freq: torch.Tensor
    kv_bytes: int  # one layer's KV bytes, each visible page counted once
    workers: int


def make_setup(hq, hkv, length, workers, page_size, step_len, min_cycle_mib, seed=0) -> Setup:
    """Combined layout: one history block, a header, W current steps, W own headers; L tokens in all."""
    kinds, views = combined_layout_views(workers)
    history = length - workers * (step_len + OWN_HEADER) - HEADER
    lens = {"history": history, "header": HEADER, "step": step_len, "own_header": OWN_HEADER}
    gen = torch.Generator().manual_seed(seed)
    meta, _, num_pages = build_metadata(
        [lens[k] for k in kinds], views, [1] * workers, page_size, generator=gen, spare_pages=0
    )
    inv_freq = default_inv_freq(HEAD_DIM, base=1e6).to(DEVICE)
    meta = with_shift_table(meta.to(DEVICE), inv_freq)  # as the engine plans it: once per forward
    seen = (meta.entry_pos >= 0).any(0)
    tokens = int(meta.page_len[seen].sum())
    kv_bytes = tokens * hkv * HEAD_DIM * 2 * 2
    layers = max(2, math.ceil(min_cycle_mib * 2**20 / kv_bytes))
    shape = (num_pages, page_size, hkv, HEAD_DIM)
    keys = [torch.randn(shape, device=DEVICE, dtype=torch.bfloat16) for _ in range(layers)]
    values = [torch.randn(shape, device=DEVICE, dtype=torch.bfloat16) for _ in range(layers)]
    query = torch.randn(workers, hq, HEAD_DIM, device=DEVICE, dtype=torch.bfloat16)
    return Setup(meta, query, keys, values, inv_freq, kv_bytes, workers)


def per_worker_meta(meta: ShiftedAttentionMetadata, w: int) -> ShiftedAttentionMetadata:
    """Group ``w`` alone (the unbatched path: one call per worker)."""
    return ShiftedAttentionMetadata(
        page_ids=meta.page_ids,
        page_len=meta.page_len,
        entry_pos=meta.entry_pos[w : w + 1].contiguous(),
        entry_shift=meta.entry_shift[w : w + 1].contiguous(),
        query_group=torch.zeros(1, dtype=torch.int32, device=DEVICE),
        query_pos=meta.query_pos[w : w + 1].contiguous(),
        group_query_start=torch.tensor([0, 1], dtype=torch.int32, device=DEVICE),
        max_queries_per_group=1,
        shift_cos_sin=None if meta.shift_cos_sin is None else meta.shift_cos_sin[w : w + 1].contiguous(),
    )


def time_graph(step, layers: int, reps: int) -> tuple[float, float, float]:
    """Capture ``step`` (all cycled layers) in a CUDA graph; return per-layer µs (p20, median, p80)."""
    if DEVICE == "cpu":  # smoke mode: one eager run, the numbers mean nothing
        t0 = time.perf_counter()
        step()
        t = (time.perf_counter() - t0) * 1e6 / layers
        return (t, t, t)
    step()  # compile and warm up outside the capture
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for _ in range(3):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000 / layers)
    del graph
    t = torch.tensor(times)
    return tuple(float(t.quantile(q)) for q in (0.2, 0.5, 0.8))


def time_triton(s: Setup, cfg: LaunchConfig | None, reps: int):
    ws = AttentionWorkspace()
    scale = HEAD_DIM**-0.5

    def step():
        for k, v in zip(s.keys, s.values, strict=True):
            shifted_attention_triton(s.query, k, v, s.meta, s.inv_freq, scale, workspace=ws, config=cfg)

    return time_graph(step, len(s.keys), reps)


def time_unbatched(s: Setup, cfg: LaunchConfig | None, reps: int):
    ws = AttentionWorkspace()
    scale = HEAD_DIM**-0.5
    metas = [per_worker_meta(s.meta, w) for w in range(s.workers)]
    queries = [s.query[w : w + 1] for w in range(s.workers)]

    def step():
        for k, v in zip(s.keys, s.values, strict=True):
            for q, m in zip(queries, metas, strict=True):
                shifted_attention_triton(q, k, v, m, s.inv_freq, scale, workspace=ws, config=cfg)

    return time_graph(step, len(s.keys), reps)


def time_sdpa(hq, hkv, length, workers, layers, reps):
    if DEVICE == "cpu":
        return (1.0, 1.0, 1.0)
    gqa = hq // hkv
    q = torch.randn(1, hkv, workers * gqa, HEAD_DIM, device=DEVICE, dtype=torch.bfloat16)
    shape = (2, 1, hkv, length, HEAD_DIM)
    kv = [torch.randn(shape, device=DEVICE, dtype=torch.bfloat16) for _ in range(layers)]
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def step():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            for x in kv:
                F.scaled_dot_product_attention(q, x[0], x[1])

    return time_graph(step, layers, reps)


def time_reference(s: Setup, reps: int = 3) -> float:
    if DEVICE == "cpu":
        return float("nan")
    args = (s.query, s.keys[0], s.values[0], s.meta, s.inv_freq, HEAD_DIM**-0.5)
    shifted_attention_reference(*args)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        shifted_attention_reference(*args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000)
    return sorted(times)[len(times) // 2]


def relative_error(s: Setup, cfg: LaunchConfig | None) -> float:
    """||triton - reference|| / ||reference|| on layer 0 (a sanity check of the launch config used)."""
    args = (s.query, s.keys[0], s.values[0], s.meta, s.inv_freq, HEAD_DIM**-0.5)
    out = shifted_attention_triton(*args, config=cfg).float()
    ref = shifted_attention_reference(*args).float()
    return float((out - ref).norm() / ref.norm())


def describe_launch(s: Setup, hq: int, hkv: int, page_size: int, cfg: LaunchConfig | None) -> str:
    """The launch the kernel takes for this setup, e.g. ``M32x1 S66 w4 st5`` (rows per tile x row tiles,
    splits, warps, stages)."""
    sms = 4 if DEVICE == "cpu" else torch.cuda.get_device_properties(0).multi_processor_count
    rows = s.workers * (hq // hkv)
    p = plan_launch(page_size, s.meta.num_entries, rows, hkv, sms, cfg or LaunchConfig())
    return f"M{p.block_m}x{p.m_tiles} S{p.splits} w{p.num_warps} st{p.num_stages}"


def fmt(t):
    return f"{t[1]:.1f} ({t[0]:.1f}–{t[2]:.1f})"


def measure_cell(args, cfg, model, length, workers, base_w1) -> dict:
    hq, hkv = MODELS[model]
    s = make_setup(hq, hkv, length, workers, args.page_size, args.step_len, args.min_cycle_mib)
    layers = len(s.keys)
    tri = time_triton(s, cfg, args.reps)
    row = dict(model=model, L=length, W=workers, kv_mib=s.kv_bytes / 2**20, layers=layers, triton=tri)
    row["launch"] = describe_launch(s, hq, hkv, args.page_size, cfg)
    row["tbps"] = s.kv_bytes / (tri[1] * 1e-6) / 1e12
    row["ratio_w1"] = tri[1] / (base_w1 or tri[1])
    if not args.skip_baselines:
        row["unbatched"] = time_unbatched(s, cfg, args.reps) if workers > 1 else tri
        row["sdpa"] = time_sdpa(hq, hkv, length, workers, layers, args.reps)
        row["sdpa_tbps"] = s.kv_bytes / (row["sdpa"][1] * 1e-6) / 1e12
        if length <= 4096:
            row["reference"] = time_reference(s)
            row["rel_err"] = relative_error(s, cfg)
    return row


def run_matrix(args, cfg: LaunchConfig | None) -> tuple[list[dict], str]:
    rows = []
    for model in args.models:
        for length in args.lengths:
            base_w1 = None
            for workers in args.workers:
                try:
                    row = measure_cell(args, cfg, model, length, workers, base_w1)
                except Exception as exc:  # one failing cell must not lose the others' numbers
                    print(
                        f"cell {model} {length} W={workers} failed: {type(exc).__name__}: {exc}", flush=True
                    )
                    continue
                if workers == 1:
                    base_w1 = row["triton"][1]
                    row["ratio_w1"] = 1.0
                rows.append(row)
                print(json.dumps(row), flush=True)
                torch.cuda.empty_cache()
    return rows, render(rows, args.skip_baselines)


def render(rows, skip_baselines) -> str:
    head = "| model | L | W | KV MiB/layer | launch | triton µs (p20–p80) | TB/s | ×W=1 |"
    sep = "|---|---|---|---|---|---|---|---|"
    if not skip_baselines:
        head += (
            " unbatched µs | unbatched/batched | SDPA flash µs | SDPA TB/s | reference µs (triton rel. err) |"
        )
        sep += "---|---|---|---|---|"
    lines = [head, sep]
    for r in rows:
        line = (
            f"| {r['model']} | {r['L'] // 1024}k | {r['W']} | {r['kv_mib']:.1f} | {r['launch']} | "
            f"{fmt(r['triton'])} | {r['tbps']:.2f} | {r['ratio_w1']:.2f} |"
        )
        if not skip_baselines:
            ref = f"{r['reference']:.0f} (err {r['rel_err']:.1e})" if "reference" in r else "–"
            line += (
                f" {fmt(r['unbatched'])} | {r['unbatched'][1] / r['triton'][1]:.2f} | {fmt(r['sdpa'])} | "
                f"{r['sdpa_tbps']:.2f} | {ref} |"
            )
        lines.append(line)
    return "\n".join(lines)


def targets(rows) -> str:
    """Check the issue's targets on the measured rows; one line each, met or missed with the numbers."""
    out = []

    def check(name, items, ok):
        if items:
            worst = ", ".join(items)
            out.append(f"- {name}: {'met' if ok else 'MISSED'} ({worst})")

    big = [r for r in rows if r["kv_mib"] >= 64]
    check(
        "≥2.4 TB/s at KV ≥ 64 MiB/layer",
        [f"{r['model']} {r['L'] // 1024}k W={r['W']}: {r['tbps']:.2f}" for r in big],
        all(r["tbps"] >= 2.4 for r in big),
    )
    mid = [r for r in rows if 16 <= r["kv_mib"] < 64]
    check(
        "≥2.0 TB/s at 16–32 MiB/layer",
        [f"{r['model']} {r['L'] // 1024}k W={r['W']}: {r['tbps']:.2f}" for r in mid],
        all(r["tbps"] >= 2.0 for r in mid),
    )
    short = [r for r in rows if r["model"] == "qwen2.5-7b" and r["L"] == 4096]
    check(
        "≤8 µs/layer incl. merge, Qwen2.5-7B 4k",
        [f"W={r['W']}: {r['triton'][1]:.1f}" for r in short],
        all(r["triton"][1] <= 8 for r in short),
    )
    long = [r for r in rows if r["L"] >= 16384 and r["W"] in (4, 8)]
    check(
        "time(W=4)/time(W=1) ≤ 1.15 and W=8 ≤ 1.35 at L ≥ 16k (issue 14)",
        [f"{r['model']} {r['L'] // 1024}k W={r['W']}: {r['ratio_w1']:.2f}" for r in long],
        all(r["ratio_w1"] <= (1.15 if r["W"] == 4 else 1.35) for r in long),
    )
    w8 = [r for r in rows if r["L"] >= 32768 and r["W"] == 8 and "unbatched" in r]
    check(
        "W=8 at 32k ≥ 3.5× faster than unbatched",
        [f"{r['model']}: {r['unbatched'][1] / r['triton'][1]:.2f}×" for r in w8],
        all(r["unbatched"][1] / r["triton"][1] >= 3.5 for r in w8),
    )
    orig = [r for r in rows if r["model"] == "qwen2.5-14b" and r["L"] == 16384 and r["W"] == 4]
    check(
        "Qwen2.5-14B 16k W=4 ≤ 50 µs (original CUDA kernel: 100 µs)",
        [f"{r['triton'][1]:.1f} µs" for r in orig],
        all(r["triton"][1] <= 50 for r in orig),
    )
    return "\n".join(out)


def tune(args) -> LaunchConfig:
    """Greedy coordinate sweep of launch knobs; objective: geometric mean of per-layer time over shapes."""
    shapes = [(m, int(n), int(w)) for m, n, w in (x.split(":") for x in args.tune_shapes.split(","))]
    setups = []
    for model, length, workers in shapes:
        hq, hkv = MODELS[model]
        setups.append(make_setup(hq, hkv, length, workers, args.page_size, args.step_len, args.min_cycle_mib))
    knobs = {
        "max_block_m": [None, 32, 16],
        "num_stages": [None, 3, 4],
        "num_warps": [None, 4, 8],
        "waves": [2.0, 1.0, 4.0],
        "rotate_on_change": [True, False],
        "max_partial_ratio": [0.5, 0.25, None],
        "min_tiles_per_split": [1, 2],
    }
    best = LaunchConfig()
    cache = {}

    def score(cfg):
        if cfg in cache:
            return cache[cfg]
        try:
            times = [time_triton(s, cfg, 10)[1] for s in setups]
        except Exception as exc:  # a config that fails to compile (e.g. out of shared memory) loses
            print(f"tune: {cfg} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            times = [float("inf")] * len(setups)
        geo = math.exp(sum(math.log(t) for t in times) / len(times))
        print(f"tune: {cfg} -> " + " ".join(f"{t:.1f}" for t in times) + f" | geo {geo:.2f} µs", flush=True)
        cache[cfg] = geo
        return geo

    for knob, values in knobs.items():
        scored = [(score(dataclasses.replace(best, **{knob: v})), v) for v in values]
        best = dataclasses.replace(best, **{knob: min(scored, key=lambda x: x[0])[1]})
        print(f"tune: best after {knob}: {best}", flush=True)
    print("tune: per-shape detail for the best config:", flush=True)
    for (model, length, workers), s in zip(shapes, setups, strict=True):
        t = time_triton(s, best, args.reps)
        tbps = s.kv_bytes / t[1] / 1e6
        print(f"tune:   {model} {length // 1024}k W={workers}: {fmt(t)} µs, {tbps:.2f} TB/s", flush=True)
    return best


def profile(args, cfg: LaunchConfig | None) -> None:
    """Eager calls of one shape (for ncu) and the compiled kernels' resources and pipelining markers."""
    model, length, workers = args.profile.split(":")
    hq, hkv = MODELS[model]
    s = make_setup(hq, hkv, int(length), int(workers), args.page_size, args.step_len, 0)
    args_ = (s.query, s.keys[0], s.values[0], s.meta, s.inv_freq, HEAD_DIM**-0.5)
    for _ in range(5):
        shifted_attention_triton(*args_, config=cfg)
    torch.cuda.synchronize()
    from hogwild_kernels import triton_attention as ta

    for fn in (ta._shifted_attention_split_kernel, ta._merge_splits_kernel):
        try:
            for cache in fn.device_caches.values():
                for compiled in cache[0].values():
                    ttgir = compiled.asm.get("ttgir", "")
                    names = ("async_copy", "warp_group_dot", "ttg.async_wait", "scf.if")
                    markers = {m: ttgir.count(m) for m in names}
                    print(
                        f"profile: {fn.fn.__name__} regs={compiled.n_regs} spills={compiled.n_spills} "
                        f"shared={compiled.metadata.shared} warps={compiled.metadata.num_warps} "
                        f"stages={compiled.metadata.num_stages} markers={markers}",
                        flush=True,
                    )
                    if args.dump:
                        name = f"{fn.fn.__name__}_{compiled.metadata.num_warps}w.ttgir"
                        Path(args.dump, name).write_text(ttgir)
        except Exception as exc:  # introspection is best effort across Triton versions
            print(f"profile: no compiled-kernel info ({type(exc).__name__}: {exc})")


def git_commit() -> str:
    try:
        cmd = ["git", "rev-parse", "--short", "HEAD"]
        sha = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        return sha.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS), type=lambda s: s.split(","))
    p.add_argument("--lengths", default="4096,16384,32768", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--workers", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--page-size", type=int, default=64)
    p.add_argument("--step-len", type=int, default=200, help="tokens in each worker's current step")
    p.add_argument("--reps", type=int, default=30, help="timed graph replays per measurement")
    p.add_argument("--min-cycle-mib", type=float, default=256, help="KV MiB cycled per replay (vs 50 MB L2)")
    p.add_argument("--config", default="{}", help='LaunchConfig overrides as JSON, e.g. {"num_warps": 8}')
    p.add_argument("--tune", action="store_true", help="sweep launch configs, then bench with the best")
    p.add_argument(
        "--tune-shapes",
        default="qwen2.5-7b:4096:1,qwen2.5-7b:32768:8,qwen2.5-14b:16384:4,llama-3.1-8b:32768:1",
        help="model:L:W list the tuner optimises (geometric mean)",
    )
    p.add_argument("--save-config", default=None, help="with --tune: write the chosen config as JSON here")
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS.md"))
    p.add_argument("--no-append", action="store_true")
    p.add_argument("--commit", default=None, help="git commit to record (default: git rev-parse HEAD)")
    p.add_argument("--profile", default=None, help="model:L:W: eager calls of one shape (run under ncu)")
    p.add_argument("--dump", default=None, help="folder for the compiled kernels' TTGIR (with --profile)")
    p.add_argument("--smoke-cpu", action="store_true", help="check the script on CPU (interpreter)")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.smoke_cpu:
        global DEVICE
        DEVICE = "cpu"

    overrides = json.loads(args.config)
    cfg = LaunchConfig(**overrides) if overrides else None
    if args.profile:
        profile(args, cfg)
        return
    if args.tune:
        cfg = tune(args)
        if args.save_config:
            fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
            Path(args.save_config).write_text(json.dumps(fields))
    rows, table = run_matrix(args, cfg)
    summary = targets(rows)
    print("\n" + table + "\n\n" + summary)
    if args.no_append:
        return
    import triton

    card = "CPU (smoke)" if DEVICE == "cpu" else torch.cuda.get_device_name()
    sms = 0 if DEVICE == "cpu" else torch.cuda.get_device_properties(0).multi_processor_count

    command = "python bench/kernel.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    block = (
        f"\n## Kernel: shifted attention per layer — {datetime.date.today().isoformat()}\n\n"
        f"- card: {card} ({sms} SMs)"
        f"; torch {torch.__version__}; triton {triton.__version__}\n"
        f"- command: `{command}`\n- commit: {args.commit or git_commit()}\n"
        f"- launch config: {cfg or LaunchConfig()} (None fields: chosen per shape)\n"
        f"- method: CUDA graph cycling {args.min_cycle_mib:.0f}+ MiB of distinct per-layer KV (cold L2), "
        f"median (p20–p80) of {args.reps} replays, per layer incl. merge; bf16; page {args.page_size}; "
        f"combined layout (history + header + W steps of {args.step_len} + W own headers); "
        "TB/s counts each visible KV byte once; cos/sin of the shifts from the per-forward table; "
        "SDPA = flash backend, W·G query rows vs one length-L sequence\n\n"
        f"{table}\n\nTargets:\n{summary}\n"
    )
    with open(args.results, "a") as f:
        f.write(block)
    print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
