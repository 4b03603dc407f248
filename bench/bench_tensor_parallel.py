"""Decode step time of a random-weight model sharded over the GPUs of one host, against one GPU.

Run under torchrun: ``torchrun --nproc-per-node 2 bench/bench_tensor_parallel.py --model qwq-32b``.
Every rank builds the same seeded random bf16 model on its GPU; rank 0 first times it unsharded (one GPU,
eager and CUDA graphs), then all ranks shard it with the model's ``base_model_tp_plan`` through torch's
``parallelize_module`` and time the same decode cells under tensor parallelism (eager: the sharded forward
is not graph-captured). Prints a markdown table on rank 0 (ms per step, p20/p80; aggregate tok/s = W /
step time) and the first greedy tokens of both paths.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

sys.path.insert(0, str(Path(__file__).parent))
from e2e import EngineCell, build_model, quantiles, sync, time_steps  # noqa: E402

from hogwild_agents.runner.distributed import ParallelContext  # noqa: E402
from hogwild_agents.runner.graphs import GraphDecoder  # noqa: E402
from hogwild_agents.runner.runner import ModelRunner  # noqa: E402

_STYLES = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}


def shard(model: torch.nn.Module, world: int) -> None:
    """Apply the config's ``base_model_tp_plan`` (colwise / rowwise linears) over all ranks."""
    mesh = init_device_mesh("cuda", (world,))
    plan = {f"model.{k}": _STYLES[v]() for k, v in model.config.base_model_tp_plan.items()}
    parallelize_module(model, mesh, plan)


def cell_rows(runner: ModelRunner, label: str, args: argparse.Namespace, graphs: bool) -> list[dict]:
    rows = []
    for length in args.lengths:
        cell = EngineCell(runner, length, args.workers)
        first = cell.last
        path_step = cell.step_greedy if graphs else cell.step_logits
        tokens = [list(cell.last)]

        def step() -> None:
            path_step()
            if runner.parallel.enabled:  # rank 0's tokens are what every rank feeds next
                cell.last = runner.parallel.broadcast_tokens(cell.last)
            tokens.append(list(cell.last))

        for _ in range(args.warmup):
            step()
        sync()
        times = time_steps(lambda: (step(), sync()), args.steps)
        p20, p50, p80 = quantiles(times)
        rows.append(
            dict(
                path=label,
                L=length,
                W=args.workers,
                ms=p50,
                p20=p20,
                p80=p80,
                tok_s=args.workers * 1e3 / p50,
                first=first,
                tokens=tokens,
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwq-32b")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--single", action="store_true", help="also time the unsharded model on rank 0")
    ap.add_argument("--dtype", default="bfloat16", help="weights dtype (float32 for token-equality checks)")
    ap.add_argument(
        "--tp-graphs", action="store_true", help="also capture the sharded decode step as CUDA graphs"
    )
    args = ap.parse_args()
    par = ParallelContext.from_environment()
    cache = max(args.lengths) + 64 * (args.workers + 8) + 4096
    torch.manual_seed(0)
    model = build_model(args.model, dtype=getattr(torch, args.dtype))
    rows: list[dict] = []
    if args.single and par.is_leader:
        for graphs in (False, True):
            runner = ModelRunner(model, page_size=64, max_cache_tokens=cache, cuda_graphs=graphs)
            rows += cell_rows(runner, f"1 GPU {'graphs' if graphs else 'eager'}", args, graphs)
            del runner
            gc.collect()
            torch.cuda.empty_cache()
    dist.barrier()
    shard(model, par.world_size)
    gc.collect()
    torch.cuda.empty_cache()
    runner = ModelRunner(model, page_size=64, max_cache_tokens=cache, parallel=par)
    rows += cell_rows(runner, f"TP={par.world_size} eager", args, graphs=False)
    if args.tp_graphs:
        del runner
        gc.collect()
        runner = ModelRunner(model, page_size=64, max_cache_tokens=cache, parallel=par)
        scratch = runner.store.take_scratch_page()
        runner.graphs = GraphDecoder(runner, scratch_page=scratch, shift_cos_sin=True)
        try:
            rows += cell_rows(runner, f"TP={par.world_size} graphs", args, graphs=True)
        except Exception as e:  # noqa: BLE001 - reported, the other rows still print
            print(f"rank {dist.get_rank()}: TP graphs failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
    if par.is_leader:
        mem = torch.cuda.max_memory_allocated() / 2**30
        print(
            f"date {datetime.date.today()} card {torch.cuda.get_device_name()} torch {torch.__version__} "
            f"model {args.model} W={args.workers} kv_heads/rank {runner.store.key_pages.shape[-2]} "
            f"peak GiB rank0 {mem:.1f}"
        )
        print("| path | L | W | ms/step (p20–p80) | agg tok/s |\n|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['path']} | {r['L'] // 1024}k | {r['W']} | {r['ms']:.2f} "
                f"({r['p20']:.2f}–{r['p80']:.2f}) | {r['tok_s']:.0f} |"
            )
        for r in rows:
            print(f"first greedy tokens {r['path']} L={r['L']}: {r['first']}")
        for r in rows:  # every path starts from the same zeroed store, so whole token streams compare
            base = next(b for b in rows if b["L"] == r["L"])
            same = sum(a == b for a, b in zip(r["tokens"], base["tokens"], strict=False))
            print(f"greedy steps equal to {base['path']} L={r['L']}: {r['path']} {same}/{len(r['tokens'])}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
