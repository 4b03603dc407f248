"""Tensor parallelism on CPU: two gloo ranks under torchrun shard a tiny qwen2 (4 q / 2 kv heads).

The sharded forward must give the unsharded logits over a multi-step run with commits, and a short greedy
engine run must write the single-process engine's tokens on both ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_model
from tp_worker import ENGINE_CONFIG, drive_scenario, engine_summary

from hogwild_agents import HogwildEngine
from hogwild_agents.runner.distributed import SINGLE_PROCESS, ParallelContext

VOCAB, EOS = 151936, 151645


@pytest.fixture(scope="module")
def tp_outputs(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer) -> Path:
    """Launch the two ranks once; return the folder holding their outputs."""
    root = tmp_path_factory.mktemp("tp")
    tiny_model("qwen2").save_pretrained(root / "small")
    tiny_model("qwen2", vocab_size=VOCAB, eos_token_id=EOS).save_pretrained(root / "engine")
    qwen_tokenizer.save_pretrained(root / "engine")
    out = root / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(Path(__file__).parent / "tp_worker.py"),
        str(root / "small"),
        str(root / "engine"),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root


@pytest.mark.parametrize("rank", [0, 1])
def test_sharded_forward_matches_unsharded_logits(tp_outputs: Path, rank: int) -> None:
    expected = drive_scenario(tiny_model("qwen2"))
    sharded = torch.load(tp_outputs / "out" / f"logits_rank{rank}.pt")
    assert sharded.shape == expected.shape
    torch.testing.assert_close(sharded, expected, atol=1e-4, rtol=0)


def test_engine_run_writes_single_process_tokens_on_every_rank(tp_outputs: Path, qwen_tokenizer) -> None:
    model = tiny_model("qwen2", vocab_size=VOCAB, eos_token_id=EOS)
    expected = engine_summary(HogwildEngine(model, qwen_tokenizer, **ENGINE_CONFIG))
    ranks = [json.loads((tp_outputs / "out" / f"engine_rank{r}.json").read_text()) for r in (0, 1)]
    for summary in ranks:
        assert summary.pop("kv_heads") == 1  # each rank holds its one KV head of the shared cache
        assert summary == expected
    assert sum(len(f) for f in expected["sampled"]) > 10


def test_single_process_context_is_the_identity() -> None:
    assert not SINGLE_PROCESS.enabled and SINGLE_PROCESS.is_leader
    assert SINGLE_PROCESS.broadcast_tokens([3, 1]) == [3, 1]
    assert SINGLE_PROCESS.broadcast_object({"a": 1}) == {"a": 1}
    assert ParallelContext.from_environment() is SINGLE_PROCESS or os.environ.get("WORLD_SIZE", "1") != "1"


def _torchrun(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - start


def test_a_whole_cli_run_under_torchrun_exits_cleanly(tp_outputs: Path) -> None:
    """A sharded model (tensor-parallel plan, two gloo ranks), collaboration on, the finisher: rank 0
    prints one result, the other follows silently, both exit 0 (the process group is destroyed at exit)."""
    proc, wall = _torchrun(
        ["-m", "hogwild_agents.ui.cli", "run", "What is 2+3?", "--model", str(tp_outputs / "engine")]
        + ["--workers", "2", "--max-forwards", "6", "--max-answer-tokens", "3", "--no-early-exit"]
        + ["--no-live", "--json"],
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout[-2000:]  # only the leader prints
    assert json.loads(lines[0])["usage"]["worker_forwards"] == 6
    print(f"torchrun CLI run: {wall:.1f} s")


def test_a_failing_rank_brings_the_others_down_with_its_error(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text(
        "from hogwild_agents.runner.distributed import ParallelContext\n"
        "ctx = ParallelContext.from_environment()\n"
        "if ctx.rank == 1:\n"
        "    raise RuntimeError('rank 1 failed on purpose')\n"
        "ctx.broadcast_tokens([1, 2, 3])  # rank 0 waits for rank 1 here\n"
    )
    proc, wall = _torchrun([str(script)], timeout=180)
    assert proc.returncode != 0
    assert "rank 1 failed on purpose" in proc.stderr
    assert wall < 120, f"the ranks took {wall:.0f} s to come down"
