"""The fast path on real weights: Qwen2.5-Coder-0.5B-Instruct on a GPU (bf16, Triton kernel, CUDA graphs).

1. W=1 without collaboration, greedy, 128 tokens: the engine's tokens against ``model.generate`` (sdpa)
   on the same bf16 weights; the first differing position is reported if any.
2. W=4 collaborating on a real task, greedy: every forward of the run's trace is replayed through
   (a) the fast path again (bf16, Triton, graphs), (b) the PyTorch reference path in bf16, and (c) the
   reference path in float32 (the yardstick). Reported: max |logit error| of (a) and (b) against (c) over
   every sampled row, and how often (a)'s argmax equals (c)'s. The fast path passes when its error is at
   most 2× the bf16 reference path's (the same criterion as the kernel's float64 test).

The model comes from the packaged GGUF (assembled from ``--gguf`` pieces, sha256-checked, converted once).
Usage: python bench/real_model_gpu_check.py --gguf-pieces DIR --model-dir /tmp/model --out OUT
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "kernels"))

from hogwild_agents import HogwildEngine  # noqa: E402
from hogwild_agents.api.results import Trace  # noqa: E402
from hogwild_agents.cache.plan import WriteGroup  # noqa: E402
from hogwild_agents.models.store import DEFAULT_MODEL, REGISTRY, _convert_gguf  # noqa: E402
from hogwild_agents.runner.runner import ModelRunner  # noqa: E402


def assemble(pieces: Path, model_dir: Path) -> float:
    """Join the pieces, check the packaged sha256, convert to bf16 safetensors; returns seconds taken."""
    start = time.perf_counter()
    if (model_dir / "config.json").exists():
        return 0.0
    spec = REGISTRY[DEFAULT_MODEL]
    gguf = pieces / "model.gguf"
    digest = hashlib.sha256()
    with gguf.open("wb") as out:
        for piece in sorted(pieces.glob("gguf.part*")):
            data = piece.read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != spec.sha256:
        raise SystemExit(f"sha256 mismatch: {digest.hexdigest()} != {spec.sha256}")
    model_dir.mkdir(parents=True, exist_ok=True)
    _convert_gguf(gguf, model_dir)
    return time.perf_counter() - start


def replay(runner: ModelRunner, trace: Trace) -> list[torch.Tensor]:
    """Feed every forward of ``trace`` through ``runner`` (fresh store); the logits of each forward."""
    store = runner.store
    store.release_all()
    ids = {b: store.new_block(r.author, r.kind).id for b, r in sorted(trace.blocks.items())}
    out = []
    for i, f in enumerate(trace.forwards):
        groups = [WriteGroup(g.writer, ids[g.block], list(g.fed), [ids[v] for v in g.view]) for g in f.groups]
        out.append(runner.forward(groups, i).float().cpu())
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gguf-pieces", type=Path, required=True)
    p.add_argument("--model-dir", type=Path, default=Path("/tmp/qwen05"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tokens", type=int, default=128)
    a = p.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report: dict[str, object] = {"card": torch.cuda.get_device_name(), "torch": torch.__version__}
    report["convert_s"] = round(assemble(a.gguf_pieces, a.model_dir), 1)
    tok = AutoTokenizer.from_pretrained(a.model_dir)
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.bfloat16).cuda().eval()
    twin = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.bfloat16, attn_implementation="sdpa")
    twin = twin.cuda().eval()

    # 1) W=1 against generate
    question = [{"role": "user", "content": "Write a Python function that checks whether a number is prime."}]
    engine = HogwildEngine(model, tok, workers=1, collaboration=False, max_forwards=a.tokens, page_size=64)
    ours = engine.run(question).trace
    ours_ids = [g.sampled for f in ours.forwards for g in f.groups if g.writer != "finisher"][: a.tokens]
    ids = tok.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = ids["input_ids"].cuda()
    eos = sorted(engine.eos_token_ids)
    ref = twin.generate(ids, max_new_tokens=a.tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos[0])
    ref_ids = ref[0, ids.shape[1] :].tolist()
    n = min(len(ours_ids), len(ref_ids))
    first_diff = next((i for i in range(n) if ours_ids[i] != ref_ids[i]), None)
    report["w1_vs_generate"] = {
        "tokens_compared": n,
        "equal": first_diff is None and len(ours_ids) == len(ref_ids),
        "first_difference": first_diff,
        "text": tok.decode(ours_ids),
    }
    print("W=1 vs generate:", report["w1_vs_generate"], flush=True)

    # 2) W=4 logits against the reference path
    engine = HogwildEngine(model, tok, workers=4, max_forwards=96, max_answer_tokens=48, page_size=64)
    task = "Compute 12345 * 6789 step by step, then add 1000 to the product."
    result = engine.run(task)
    trace = result.trace
    fast = replay(engine.runner, trace)
    ref_bf16 = replay(ModelRunner(model, page_size=64, max_cache_tokens=8192, attention_backend="reference",
                                  cuda_graphs=False), trace)  # fmt: skip
    model32 = copy.deepcopy(model).float()
    ref32 = replay(ModelRunner(model32, page_size=64, max_cache_tokens=8192, attention_backend="reference",
                               cuda_graphs=False), trace)  # fmt: skip
    err_fast = max((x - y).abs().max().item() for x, y in zip(fast, ref32, strict=True))
    err_bf16 = max((x - y).abs().max().item() for x, y in zip(ref_bf16, ref32, strict=True))
    agree = sum(int((x.argmax(-1) == y.argmax(-1)).sum()) for x, y in zip(fast, ref32, strict=True))
    rows = sum(x.shape[0] for x in fast)
    report["w4_logits"] = {
        "forwards": len(fast),
        "rows": rows,
        "max_abs_err_fast_vs_fp32": round(err_fast, 4),
        "max_abs_err_bf16_reference_vs_fp32": round(err_bf16, 4),
        "ratio": round(err_fast / max(err_bf16, 1e-9), 3),
        "argmax_agreement_fast_vs_fp32": f"{agree}/{rows}",
        "pass": err_fast <= 2 * err_bf16,
        "answer": result.answer,
    }
    print("W=4 logits:", report["w4_logits"], flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "real_model_gpu.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
