"""Where a decode step's GPU time goes, and what the weights' matrix-vector products can reach.

1. ``profile``: the engine's decode step (the CUDA graph the runner replays, Qwen2.5-7B shape at ~L
   tokens, W workers) under ``torch.profiler``; every kernel is put in a category (matrix products,
   our attention, norms, RoPE, SwiGLU, copies and index writes, other elementwise, sampling) and the
   per-step time of each category is printed with the top kernels by name.
2. ``gemv``: each projection of the model on its own, M = W rows against the real weights of all layers
   in turn (so the weights come from HBM, not L2, as in a step), in a CUDA graph: µs per call and the
   bandwidth reached, beside the same products with the projections merged (q|k|v, gate|up), which is
   what :mod:`hogwild_agents.runner.merged` runs.

Usage: python bench/decode_profile.py --model qwen2.5-7b --length 4096 --workers 1,8 --fused-ops liger
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "kernels"))
sys.path.insert(0, str(ROOT))

import e2e  # noqa: E402

from hogwild_agents.runner.runner import ModelRunner  # noqa: E402

CATEGORIES = (  # first match wins; cuBLAS names its Hopper GEMV/GEMM kernels nvjet_*, sm90_xmma_*, gemv*
    ("matmul", ("gemm", "gemv", "nvjet", "xmma", "cutlass", "cublas", "splitk")),
    ("inductor reduction", ("triton_red_", "triton_per_")),  # fused_ops="compile": one-row products, norms
    ("inductor pointwise", ("triton_poi_",)),
    ("attention", ("shifted", "attn", "merge_partial", "hogwild")),
    ("norm", ("rms", "norm")),
    ("rope", ("rope", "rotary")),
    ("swiglu", ("swiglu", "silu")),
    ("copy/index", ("index", "copy", "scatter", "gather", "cat_", "catarray")),
    ("sampling", ("argmax", "gumbel", "sample", "topk", "sort")),
    ("elementwise", ("elementwise", "vectorized", "unrolled", "reduce")),
)


def category(name: str) -> str:
    low = name.lower()
    for cat, keys in CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "other"


def profile(model, name: str, length: int, workers: int, steps: int, fused: str, log) -> None:
    cap = length + workers * 512 + 8 * e2e.PAGE
    runner = ModelRunner(model, page_size=e2e.PAGE, max_cache_tokens=cap, attention_backend="triton",
                         fused_ops=fused)  # fmt: skip
    runner.store.key_pages.normal_()
    runner.store.value_pages.normal_()
    history = length - e2e.HEADER - workers * (e2e.STEP0 + e2e.OWN + e2e.SEP)
    cell = e2e.EngineCell(runner, history, workers)
    for _ in range(5):
        cell.step_greedy()
    torch.cuda.synchronize()
    per_cat, per_kernel = kernels_of(cell.step_greedy, steps)
    how = "graph replay"
    if not per_cat:  # a profiler that does not see inside graph replays: the same step, eager
        runner.graphs = None
        per_cat, per_kernel = kernels_of(cell.step_logits, steps)
        how = "eager (the profiler saw no kernels inside the graph)"
    total = sum(per_cat.values())
    wall, gpu, back_to_back = step_times(cell, runner)
    log(f"\n### profile {name} L={length} W={workers} fused={runner.fused_ops}, {how}: {total / 1e3:.3f} ms "
        f"of kernels per step ({cell.view_length()} view tokens); step wall {wall:.3f} ms, one replay "
        f"{gpu:.3f} ms GPU, back-to-back replays {back_to_back:.3f} ms each\n")  # fmt: skip
    report(per_cat, per_kernel, log)
    del runner, cell


def step_times(cell, runner, reps: int = 30) -> tuple[float, float, float]:
    """Median wall ms of a whole decode step, GPU ms of one replay, and ms per replay when 20 run back to
    back (no host work between them: what the graph costs when the host never makes the GPU wait)."""
    wall = statistics.median(e2e.time_steps(cell.step_greedy, reps))
    graph = e2e.decode_step(runner, len(cell.names)).graph
    one = e2e.replay_ms(graph, reps)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        graph.replay()
    end.record()
    end.synchronize()
    return wall, one, start.elapsed_time(end) / 20


def report(per_cat: dict[str, float], per_kernel: dict[str, list[float]], log, top: int = 25) -> None:
    """Markdown tables: µs per category, then the top kernels by time."""
    total = sum(per_cat.values())
    log("| category | µs per step | share |\n|---|---|---|")
    for cat, us in sorted(per_cat.items(), key=lambda kv: -kv[1]):
        log(f"| {cat} | {us:.0f} | {us / max(total, 1e-9):.0%} |")
    log("\n| kernel | calls per step | µs per step |\n|---|---|---|")
    for kname, (us, calls) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:top]:
        log(f"| `{kname[:90]}` | {calls:.0f} | {us:.0f} |")


def kernels_of(step, steps: int):
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    per_cat: dict[str, float] = collections.defaultdict(float)
    per_kernel: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = ev.device_time if hasattr(ev, "device_time") else ev.cuda_time
        if not us or "memcpy" in ev.name.lower() or "memset" in ev.name.lower():
            continue
        per_cat[category(ev.name)] += us / steps
        per_kernel[ev.name][0] += us / steps
        per_kernel[ev.name][1] += 1 / steps
    return per_cat, per_kernel


def _graph_time(fn, reps: int = 20) -> float:
    """Median ms of one replay of a CUDA graph of ``fn``."""
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(3):  # warm-up replays
        graph.replay()
    return e2e.replay_ms(graph, reps)


def gemv(model, workers: list[int], log) -> None:
    layers = model.model.layers
    n = len(layers)
    hidden = model.config.hidden_size
    projections = {
        "q": [layer.self_attn.q_proj for layer in layers],
        "k": [layer.self_attn.k_proj for layer in layers],
        "v": [layer.self_attn.v_proj for layer in layers],
        "o": [layer.self_attn.o_proj for layer in layers],
        "gate": [layer.mlp.gate_proj for layer in layers],
        "up": [layer.mlp.up_proj for layer in layers],
        "down": [layer.mlp.down_proj for layer in layers],
    }
    merged = {
        "q|k|v": [
            (torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
             None if a.q_proj.bias is None else torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            for a in (layer.self_attn for layer in layers)
        ],
        "gate|up": [(torch.cat([m.gate_proj.weight, m.up_proj.weight]), None)
                    for m in (layer.mlp for layer in layers)],
    }  # fmt: skip
    lib = torch.backends.cuda.preferred_blas_library()
    log(f"\n### weight products, all layers in turn (HBM-cold), one CUDA graph; BLAS library {lib}\n")
    log("| projection | rows M | weight MiB | µs per call | TB/s |\n|---|---|---|---|---|")
    totals: dict[int, dict[str, float]] = {}
    for m in workers:
        totals[m] = {"separate": 0.0, "merged": 0.0}
        for pname, mods in projections.items():
            x = torch.randn(m, mods[0].in_features, device="cuda", dtype=torch.bfloat16)

            def run(mods=mods, x=x):
                for mod in mods:
                    torch.nn.functional.linear(x, mod.weight, mod.bias)

            ms = _graph_time(run) / n
            nbytes = mods[0].weight.nbytes
            totals[m]["separate"] += ms
            if pname in ("o", "down"):
                totals[m]["merged"] += ms
            log(f"| {pname} | {m} | {nbytes / 2**20:.1f} | {ms * 1e3:.1f} | {nbytes / ms / 1e9:.2f} |")
        for pname, pairs in merged.items():
            x = torch.randn(m, hidden, device="cuda", dtype=torch.bfloat16)

            def run(pairs=pairs, x=x):
                for w, b in pairs:
                    torch.nn.functional.linear(x, w, b)

            ms = _graph_time(run) / n
            nbytes = pairs[0][0].nbytes
            totals[m]["merged"] += ms
            mib, us, tbs = nbytes / 2**20, ms * 1e3, nbytes / ms / 1e9
            log(f"| {pname} (merged) | {m} | {mib:.1f} | {us:.1f} | {tbs:.2f} |")
        head = model.get_output_embeddings()
        x = torch.randn(m, hidden, device="cuda", dtype=torch.bfloat16)
        ms = _graph_time(lambda: torch.nn.functional.linear(x, head.weight))
        log(f"| lm_head | {m} | {head.weight.nbytes / 2**20:.1f} | {ms * 1e3:.1f} | "
            f"{head.weight.nbytes / ms / 1e9:.2f} |")  # fmt: skip
        for key in ("separate", "merged"):
            totals[m][key] = totals[m][key] * n + ms
    del merged
    torch.cuda.empty_cache()
    for m, t in totals.items():
        log(f"\nM={m}: every weight product of a step, separate {t['separate']:.3f} ms, "
            f"q|k|v and gate|up merged {t['merged']:.3f} ms")  # fmt: skip


def sdpa_gqa(model, lengths: list[int], log) -> None:
    """Causal SDPA over a prompt with GQA: K/V heads repeated (as transformers does) vs ``enable_gqa``."""
    cfg = model.config
    hq, hkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    log("\n### prompt attention (causal SDPA, one layer), K/V repeated vs enable_gqa\n")
    log("| tokens | repeat ms | enable_gqa ms | ratio |\n|---|---|---|---|")
    for n in lengths:
        q = torch.randn(1, hq, n, d, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(1, hkv, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        sdpa = torch.nn.functional.scaled_dot_product_attention
        g = hq // hkv

        def repeat():
            sdpa(q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1), is_causal=True)

        a = _graph_time(repeat, reps=10)
        b = _graph_time(lambda: sdpa(q, k, v, is_causal=True, enable_gqa=True), reps=10)
        log(f"| {n} | {a:.3f} | {b:.3f} | {b / a:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-7b")
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--workers", default="1,8", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--fused-ops", default="none,liger", type=lambda s: s.split(","))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--blas", default="cublaslt,cublas", type=lambda s: s.split(","), help="BLAS libraries")
    p.add_argument("--skip", default="", help="comma list of parts to skip: profile,gemv,sdpa")
    p.add_argument("--md", default=None)
    args = p.parse_args()
    lines: list[str] = []

    def log(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    model = e2e.build_model(args.model)
    log(f"## decode profile: {args.model}, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    if "gemv" not in args.skip:
        for lib in args.blas:
            torch.backends.cuda.preferred_blas_library(lib)
            gemv(model, args.workers, log)
        torch.backends.cuda.preferred_blas_library(args.blas[0])
    if "sdpa" not in args.skip:
        sdpa_gqa(model, [1024, 4096, 16384, 32768], log)
    if "profile" not in args.skip:

        def profile_all(fused: str, variant) -> None:
            for w in args.workers:
                profile(variant, args.model, args.length, w, args.steps, fused, log)

        e2e.for_each_fused_variant(model, args.fused_ops, profile_all)
    if args.md:
        Path(args.md).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
