"""End-to-end decode speed: the engine's CUDA-graph decode step against Hugging Face ``generate``.

Models have random bf16 weights with the real shapes (configs written below from the models'
``config.json``; speed does not depend on the weight values). For each model, context L and worker count W:

- ``engine``: the combined layout (history of ~L tokens, a header, W current steps of 64 tokens, W own
  headers); every step each worker feeds one token and the next comes back from the graph's argmax.
  The step is what ModelRunner does per decode: reserve slots, plan on the host, one pinned H2D copy,
  graph replay, one D2H copy of the W tokens. The history's K/V is written as random values straight
  into the pages (no L-token prefill through the model); headers and steps go through real forwards.
  Also reported: the same step through ``runner.forward`` (logits back, argmax in the caller), the GPU
  time of one replay alone (events), the host planning time, and the graph capture time (separately).
- ``HF eager``: ``model.generate`` (sdpa attention) from a DynamicCache pre-filled with L random
  tokens, batch 1 and batch W (each sequence its own copy of the context, as HF stores it).
- ``HF static+compile``: ``generate`` with a pre-filled StaticCache, which makes transformers compile the
  decode forward (``reduce-overhead``: CUDA graphs); compile time reported separately.

Per-step numbers are the median (p20–p80) over the timed steps after warm-up; tok/s = W / median.
Usage: python bench/e2e.py --models qwen2.5-7b --lengths 4096,32768 --workers 1,2,4,8 [--hf-eager] ...
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import inspect
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "kernels"))
sys.path.insert(0, str(ROOT))

from hogwild_agents.cache.layouts import SharedLayoutState, build_view  # noqa: E402
from hogwild_agents.cache.plan import WriteGroup, build_host_plan  # noqa: E402
from hogwild_agents.runner.runner import ModelRunner  # noqa: E402

MODELS = {  # family, config.json fields that set the shapes and RoPE
    "qwen2.5-7b": (
        "qwen2",
        dict(
            hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
            num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768, rms_norm_eps=1e-6,
            rope_theta=1e6, tie_word_embeddings=False,
        ),
    ),
    "llama-3.1-8b": (
        "llama",
        dict(
            hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
            rope_theta=500000.0, tie_word_embeddings=False,
            rope_scaling={
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
        ),
    ),
    "qwen2.5-14b": (
        "qwen2",
        dict(
            hidden_size=5120, intermediate_size=13824, num_hidden_layers=48, num_attention_heads=40,
            num_key_value_heads=8, vocab_size=152064, max_position_embeddings=32768, rms_norm_eps=1e-5,
            rope_theta=1e6, tie_word_embeddings=False,
        ),
    ),
    "qwq-32b": (
        "qwen2",
        dict(
            hidden_size=5120, intermediate_size=27648, num_hidden_layers=64, num_attention_heads=40,
            num_key_value_heads=8, vocab_size=152064, max_position_embeddings=40960, rms_norm_eps=1e-5,
            rope_theta=1e6, tie_word_embeddings=False,
        ),
    ),
}  # fmt: skip
PAGE = 64
STEP0 = 64  # tokens already in each worker's current step when timing starts
HEADER, SEP, OWN = 12, 2, 6


def build_model(name: str, layers: int | None = None, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    family, fields = MODELS[name]
    fields = {**fields, **({"num_hidden_layers": layers} if layers else {})}
    cfg = (LlamaConfig if family == "llama" else Qwen2Config)(**fields)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval()


def quantiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=10, method="inclusive")
    return q[1], statistics.median(xs), q[7]


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


class EngineCell:
    """A runner with a ~L-token shared history and W workers decoding in the combined layout."""

    def __init__(self, runner: ModelRunner, history: int, workers: int, seed: int = 0):
        self.runner = runner
        s = runner.store
        s.release_all()
        gen = torch.Generator().manual_seed(seed)
        self.gen = gen
        prompt = s.new_block("prompt", "prompt")
        s.reserve(prompt, [0] * history, 0)  # its K/V: the random values already in the pages
        self.state = SharedLayoutState(prompt=prompt.id, current=[None] * workers)
        self.state.others_header = s.new_block("header", "h").id
        self.state.separator = s.new_block("header", "sep").id
        self.state.own_header = s.new_block("header", "own").id
        self.forward = 1
        hdr = [(self.state.others_header, HEADER), (self.state.separator, SEP), (self.state.own_header, OWN)]
        self._run([WriteGroup("header", b, self.tokens(n), [prompt.id, b]) for b, n in hdr])
        for w in range(workers):
            self.state.current[w] = s.new_block(f"w{w}", "step").id
        self.names = [f"w{w}" for w in range(workers)]
        self.views = [build_view("combined", self.state, w, self.state.current[w]) for w in range(workers)]
        logits = self._run(self.groups([self.tokens(STEP0) for _ in range(workers)]))
        self.last = logits.argmax(-1).tolist()

    def tokens(self, n: int) -> list[int]:
        return torch.randint(0, 1000, (n,), generator=self.gen).tolist()

    def groups(self, toks: list[list[int]]) -> list[WriteGroup]:
        return [
            WriteGroup(n, self.state.current[w], t, self.views[w])
            for w, (n, t) in enumerate(zip(self.names, toks, strict=True))
        ]

    def _run(self, groups: list[WriteGroup]) -> torch.Tensor:
        out = self.runner.forward(groups, self.forward)
        self.forward += 1
        return out

    def step_greedy(self) -> None:
        """One decode step as the graph path runs it (argmax in the graph, one D2H copy)."""
        groups = self.groups([[t] for t in self.last])
        self.runner.reserve(groups, self.forward)
        self.forward += 1
        self.last_groups = groups
        assert self.runner.graphs is not None
        self.last = self.runner.graphs.forward_greedy(groups)

    def step_logits(self) -> None:
        """One decode step through ``runner.forward`` (logits back; argmax and D2H in the caller)."""
        self.last = self._run(self.groups([[t] for t in self.last])).argmax(-1).tolist()

    def view_length(self) -> int:
        return sum(self.runner.store.blocks[b].length for b in self.views[0])


def time_steps(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def for_each_fused_variant(model, variants: list[str], run) -> None:
    """``run(variant, model)`` for each ``fused_ops`` variant, each but the last on a copy of the model as
    built: every variant patches or merges its model's modules in place, for good (the card holds two 14B
    models). Compiled code and the copy are dropped after each."""
    for i, fused in enumerate(variants):
        copied = model if i == len(variants) - 1 else copy.deepcopy(model)
        run(fused, copied)
        del copied
        torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()


def replay_ms(graph: torch.cuda.CUDAGraph, reps: int = 20) -> float:
    """Median GPU ms of one replay of ``graph`` (events around each, synchronised)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def decode_step(runner: ModelRunner, workers: int):
    """The captured decode bucket of ``workers`` single-token groups."""
    g = max(1, 1 << (workers - 1).bit_length())
    return next(s for k, s in runner.graphs._steps.items() if k[0] == k[1] == g)


def engine_rows(model, name, args, log) -> list[dict]:
    rows = []

    def run(fused: str, variant) -> None:
        try:
            rows.extend(_engine_rows(variant, name, args, log, fused))
        except Exception as exc:  # the other variants' rows still count
            log(dict(model=name, fused=fused, error=f"engine: {type(exc).__name__}: {exc}"[:300]))
            traceback.print_exc()

    for_each_fused_variant(model, args.fused_ops, run)
    return rows


def _engine_rows(model, name, args, log, fused: str) -> list[dict]:
    rows = []
    for length in args.lengths:
        cap = length + max(args.workers) * (STEP0 + OWN + args.steps * 2 + 2 * PAGE) + 4 * PAGE
        runner = ModelRunner(
            model, page_size=PAGE, max_cache_tokens=cap, attention_backend="triton", fused_ops=fused
        )
        assert runner.graphs is not None, "graph decode needs CUDA and the triton backend"
        runner.graphs.shift_cos_sin = not args.no_table
        runner.store.key_pages.normal_()
        runner.store.value_pages.normal_()
        store_bytes = runner.store.key_pages.nbytes + runner.store.value_pages.nbytes
        for workers in args.workers:
            history = length - HEADER - workers * (STEP0 + OWN + SEP)
            torch.cuda.reset_peak_memory_stats()
            base_mem = torch.cuda.memory_allocated()
            cell = EngineCell(runner, history, workers)
            cap0 = runner.graphs.capture_seconds
            for _ in range(args.warmup):
                cell.step_greedy()
            capture = runner.graphs.capture_seconds - cap0
            ms = time_steps(cell.step_greedy, args.steps)
            via_runner = time_steps(cell.step_logits, max(10, args.steps // 2))
            # GPU time of the replay alone, and the host planning alone
            gpu_ms = replay_ms(decode_step(runner, workers).graph)
            groups = cell.last_groups  # reserved already: planning them again writes nothing
            plan_ms = []
            for _ in range(20):
                t0 = time.perf_counter()
                build_host_plan(runner.store, groups)
                plan_ms.append((time.perf_counter() - t0) * 1e3)
            q = quantiles(ms)
            # Roofline: bytes a step must read (weights but the embedding table, and the view's K/V once)
            # over the card's 4.8 TB/s.
            cfg = model.config
            embed = model.get_input_embeddings().weight
            weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) - embed.nbytes
            head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
            kv_bytes = cell.view_length() * cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim * 2
            roofline_ms = (weight_bytes + kv_bytes) / 4.8e12 * 1e3
            row = dict(
                model=name,
                L=length,
                view=cell.view_length(),
                W=workers,
                ms=q,
                tok_s=workers / q[1] * 1e3,
                via_runner_ms=statistics.median(via_runner),
                gpu_ms=gpu_ms,
                plan_ms=statistics.median(plan_ms),
                capture_s=capture,
                store_gib=store_bytes / 2**30,
                peak_extra_mib=(torch.cuda.max_memory_allocated() - base_mem) / 2**20,
                entries=build_host_plan(runner.store, groups).num_entries,
                table=not args.no_table,
                fused=runner.fused_ops,
                roofline_ms=roofline_ms,
                roofline_frac=roofline_ms / q[1],
            )
            rows.append(row)
            log(row)
        del runner, cell
        gc.collect()
        torch.cuda.empty_cache()
    return rows


def _cache_kwarg(model) -> str:
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _random_kv(model, batch: int, length: int):
    cfg = model.config
    hkv = cfg.num_key_value_heads
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    for layer in range(cfg.num_hidden_layers):
        k = torch.randn(batch, hkv, length, d, device=DEVICE, dtype=torch.bfloat16)
        yield layer, k, torch.randn_like(k)


def hf_rows(model, name, args, log, compiled: bool) -> list[dict]:
    from transformers import DynamicCache, StaticCache

    rows = []
    model.set_attn_implementation("sdpa")
    kw = _cache_kwarg(model)
    lengths = args.hf_lengths or args.lengths
    for length in lengths if not compiled else lengths[:1]:
        for batch in sorted({1, *(w for w in args.hf_workers)}):
            try:
                if compiled:
                    cache = StaticCache(config=model.config, max_cache_len=length + 64)
                else:
                    cache = DynamicCache(config=model.config)
                for layer, k, v in _random_kv(model, batch, length):
                    cache.update(k, v, layer)
                ids = torch.randint(0, 1000, (batch, length + 1), device=DEVICE)

                def gen(n: int) -> float:
                    extra = int(cache.get_seq_length()) - length
                    if extra > 0:
                        cache.crop(-extra)
                    sync()
                    t0 = time.perf_counter()
                    model.generate(
                        ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                        do_sample=False, **{kw: cache},
                    )  # fmt: skip
                    sync()
                    return time.perf_counter() - t0

                t_compile = gen(4)  # warm-up (compiles the decode forward when the cache is static)
                short = [gen(3) for _ in range(2)]
                long = [gen(3 + args.hf_tokens) for _ in range(2)]
                per_tok = (min(long) - min(short)) / args.hf_tokens * 1e3
                row = dict(
                    model=name, L=length, W=batch, mode="static+compile" if compiled else "eager",
                    ms=per_tok, tok_s=batch / per_tok * 1e3, warmup_s=t_compile,
                )  # fmt: skip
                rows.append(row)
                log(row)
            except Exception as exc:  # a failing baseline must not lose the others' numbers
                log(dict(model=name, L=length, W=batch, error=f"{type(exc).__name__}: {exc}"[:300]))
                traceback.print_exc()
            finally:
                cache = None
                gc.collect()
                torch.cuda.empty_cache()
    return rows


def render(engine: list[dict], hf: list[dict]) -> str:
    lines = [
        "| model | L | view tokens | W | step ms (p20–p80) | agg tok/s | step / W=1 | roofline ms (fraction) "
        "| via runner.forward ms | replay GPU ms | host plan ms | entries | capture s | store GiB "
        "| peak extra MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base: dict[tuple, float] = {}
    for r in engine:
        key = (r["model"], r["L"], r["table"], r.get("fused"))
        if r["W"] == 1:
            base[key] = r["ms"][1]
        ratio = r["ms"][1] / base[key] if key in base else float("nan")
        lines.append(
            f"| {r['model']}{'' if r['table'] else ' (no cos/sin table)'}"
            f"{'' if r.get('fused', 'none') == 'none' else ' +' + r['fused']} | {r['L'] // 1024}k | "
            f"{r['view']} | "
            f"{r['W']} | {r['ms'][1]:.2f} ({r['ms'][0]:.2f}–{r['ms'][2]:.2f}) | {r['tok_s']:.1f} | "
            f"{ratio:.3f} | {r['roofline_ms']:.2f} ({r['roofline_frac']:.0%}) | "
            f"{r['via_runner_ms']:.2f} | {r['gpu_ms']:.2f} | {r['plan_ms']:.3f} | "
            f"{r['entries']} | "
            f"{r['capture_s']:.2f} | {r['store_gib']:.2f} | {r['peak_extra_mib']:.0f} |"
        )
    if hf:
        lines += [
            "",
            "| model | L | batch | HF mode | ms/step | agg tok/s | warm-up (compile) s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in hf:
            if "error" in r:
                lines.append(
                    f"| {r['model']} | {r['L'] // 1024}k | {r['W']} | failed: {r['error'][:120]} | | | |"
                )
            else:
                lines.append(
                    f"| {r['model']} | {r['L'] // 1024}k | {r['W']} | {r['mode']} | {r['ms']:.2f} | "
                    f"{r['tok_s']:.1f} | {r['warmup_s']:.1f} |"
                )
    return "\n".join(lines)


DEVICE = "cuda"


def main() -> None:
    global DEVICE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="qwen2.5-7b", type=lambda s: s.split(","))
    p.add_argument("--lengths", default="4096,16384,32768", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--workers", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument(
        "--no-table", action="store_true", help="kernel evaluates sin/cos itself (no per-step table)"
    )
    p.add_argument(
        "--fused-ops", default="none", type=lambda s: s.split(","), help="e.g. none,liger (in that order)"
    )
    p.add_argument("--hf-eager", action="store_true")
    p.add_argument("--hf-compile", action="store_true")
    p.add_argument("--hf-lengths", default=None, type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--hf-workers", default="4", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--hf-tokens", type=int, default=20)
    p.add_argument("--layers", type=int, default=None, help="override layer count (smoke tests)")
    p.add_argument("--jsonl", default=None, help="append every row as JSON here")
    p.add_argument("--md", default=None, help="write the markdown tables here")
    args = p.parse_args()
    torch.manual_seed(0)
    header = (
        f"e2e {datetime.datetime.now().isoformat(timespec='seconds')} card={torch.cuda.get_device_name()} "
        f"torch={torch.__version__} cmd={' '.join(sys.argv[1:])}"
    )
    print(header, flush=True)

    def log(row: dict) -> None:
        print(json.dumps(row), flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")

    engine, hf = [], []
    for name in args.models:
        t0 = time.perf_counter()
        try:
            model = build_model(name, args.layers)
        except torch.OutOfMemoryError as exc:
            log(dict(model=name, error=f"does not fit: {exc}"[:300]))
            continue
        print(f"built {name} in {time.perf_counter() - t0:.1f}s", flush=True)
        # HF first: the engine's runner switches the model's attention and (fused_ops) patches its modules.
        if args.hf_eager:
            hf += hf_rows(model, name, args, log, compiled=False)
        if args.hf_compile:
            hf += hf_rows(model, name, args, log, compiled=True)
            torch._dynamo.reset()
        try:
            engine += engine_rows(model, name, args, log)
        except Exception as exc:
            log(dict(model=name, error=f"engine: {type(exc).__name__}: {exc}"[:300]))
            traceback.print_exc()
        del model
        gc.collect()
        torch.cuda.empty_cache()
    table = render(engine, hf)
    print("\n" + header + "\n\n" + table, flush=True)
    if args.md:
        with open(args.md, "a") as f:
            f.write(header + "\n\n" + table + "\n\n")


if __name__ == "__main__":
    main()
