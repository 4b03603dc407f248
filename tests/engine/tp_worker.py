"""One rank of the tensor-parallel CPU test (launched by ``test_tensor_parallel.py`` under torchrun, gloo).

Usage: ``torchrun --nproc-per-node 2 tp_worker.py SMALL_MODEL_DIR ENGINE_MODEL_DIR OUT_DIR``. Each rank
writes ``logits_rank{r}.pt`` (every forward's logits of a multi-step scenario with commits, on the model
sharded by transformers' tensor-parallel plan) and ``engine_rank{r}.json`` (a short greedy engine run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from hogwild_agents import HogwildEngine
from hogwild_agents.cache.layouts import SharedLayoutState, build_view
from hogwild_agents.cache.plan import WriteGroup
from hogwild_agents.runner.distributed import SINGLE_PROCESS, ParallelContext
from hogwild_agents.runner.runner import ModelRunner

QUESTION = [{"role": "user", "content": "Add 2 and 3, then double it."}]
ENGINE_CONFIG = {
    "workers": 2,
    "page_size": 8,
    "max_cache_tokens": 4096,
    "max_forwards": 12,
    "max_answer_tokens": 4,
}


def drive_scenario(
    model: torch.nn.Module, parallel: ParallelContext = SINGLE_PROCESS, workers: int = 3
) -> torch.Tensor:
    """Prefill, ragged chunks, decodes and two commits through a runner; all forwards' logits ``[T, V]``."""
    runner = ModelRunner(model, page_size=4, max_cache_tokens=2048, parallel=parallel)
    store, gen, out = runner.store, torch.Generator().manual_seed(7), []

    def forward(groups: list[tuple[str, int, int, list[int]]]) -> None:
        writes = [
            WriteGroup(w, b, torch.randint(0, 512, (n,), generator=gen).tolist(), v) for w, b, n, v in groups
        ]
        out.append(runner.forward(writes, len(out), all_logits=True))

    prompt = store.new_block("prompt", "prompt").id
    state = SharedLayoutState(prompt=prompt, current=[None] * workers)
    state.others_header = store.new_block("header", "h").id
    state.separator = store.new_block("header", "sep").id
    state.own_header = store.new_block("header", "own").id
    heads = (state.others_header, state.separator, state.own_header)
    forward(
        [("prompt", prompt, 9, [prompt])] + [("header", b, 2 + i, [prompt, b]) for i, b in enumerate(heads)]
    )
    for w in range(workers):
        state.current[w] = store.new_block(f"w{w}", "step").id

    def step(chunk: dict[int, int]) -> None:
        forward(
            [
                (
                    f"w{w}",
                    state.current[w],
                    chunk.get(w, 1),
                    build_view("combined", state, w, state.current[w]),
                )
                for w in range(workers)
            ]
        )

    step({w: 1 + w % 3 for w in range(workers)})
    for _ in range(3):
        step({})
    for committer in range(2):
        state.history.append(state.current[committer])
        state.current[committer] = store.new_block(f"w{committer}", "step").id
        step({committer: 3})
        step({})
    return torch.cat(out)


def engine_summary(engine: HogwildEngine) -> dict[str, object]:
    """The tokens of a short greedy run: every forward's sampled tokens, the workers' texts, the answer."""
    result = engine.run(QUESTION)
    sampled = [[g.sampled for g in f.groups] for f in result.trace.forwards]
    return {"sampled": sampled, "texts": [w.text for w in result.workers], "answer": result.answer}


def main(small_dir: str, engine_dir: str, out_dir: str) -> None:
    """Run both checks on this rank and write its outputs."""
    from transformers import AutoModelForCausalLM

    from hogwild_agents.engine.engine import _tp_plan_kwargs

    parallel = ParallelContext.from_environment()
    model = AutoModelForCausalLM.from_pretrained(small_dir, dtype=torch.float32, **_tp_plan_kwargs())
    torch.save(drive_scenario(model, parallel), Path(out_dir) / f"logits_rank{parallel.rank}.pt")
    engine = HogwildEngine.from_pretrained(engine_dir, dtype=torch.float32, device="cpu", **ENGINE_CONFIG)
    summary = {"kv_heads": engine.runner.store.key_pages.shape[-2], **engine_summary(engine)}
    (Path(out_dir) / f"engine_rank{parallel.rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(*sys.argv[1:4])
