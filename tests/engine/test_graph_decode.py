"""CUDA-graph decode: replayed decode steps give the eager path's logits (same kernel), step after step.

Skipped on CPU: CUDA graphs need a CUDA device (the eager path is covered by test_exactness.py).
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_model

from hogwild_agents.cache.layouts import SharedLayoutState, build_view
from hogwild_agents.cache.plan import WriteGroup
from hogwild_agents.runner.runner import ModelRunner

CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(
    not CUDA, reason="CUDA graphs need a CUDA device; the eager path is covered by test_exactness.py"
)


class Driver:
    """One runner fed a fixed script: prompt and headers, ragged chunks, decodes, commits."""

    def __init__(self, runner: ModelRunner, workers: int, seed: int):
        self.runner = runner
        self.store = runner.store
        self.workers = workers
        self.gen = torch.Generator().manual_seed(seed)
        self.forward_index = 0
        self.decode_logits: list[torch.Tensor] = []
        self.chunk_logits: list[torch.Tensor] = []  # steps with a multi-token group (chunk graphs)

    def tokens(self, n: int) -> list[int]:
        return torch.randint(0, 512, (n,), generator=self.gen).tolist()

    def step(self, groups: list[WriteGroup]) -> torch.Tensor:
        logits = self.runner.forward(groups, self.forward_index)
        self.forward_index += 1
        if all(len(g.token_ids) == 1 for g in groups):
            self.decode_logits.append(logits.clone())
        elif sum(len(g.token_ids) for g in groups) <= 64:
            self.chunk_logits.append(logits.clone())
        return logits

    def run(self, decodes: int = 6) -> None:
        s = self.store
        prompt = s.new_block("prompt", "prompt").id
        state = SharedLayoutState(prompt=prompt, current=[None] * self.workers)
        state.others_header = s.new_block("header", "h").id
        state.separator = s.new_block("header", "sep").id
        state.own_header = s.new_block("header", "own").id
        self.step(
            [WriteGroup("prompt", prompt, self.tokens(37), [prompt])]
            + [
                WriteGroup("header", b, self.tokens(2 + i), [prompt, b])
                for i, b in enumerate((state.others_header, state.separator, state.own_header))
            ]
        )
        for w in range(self.workers):
            state.current[w] = s.new_block(f"w{w}", "step").id

        def groups(chunk: dict[int, int]) -> list[WriteGroup]:
            return [
                WriteGroup(
                    f"w{w}",
                    state.current[w],
                    self.tokens(chunk.get(w, 1)),
                    build_view("combined", state, w, state.current[w]),
                )
                for w in range(self.workers)
            ]

        self.step(groups({w: 1 + w % 3 for w in range(self.workers)}))
        for _ in range(decodes):
            self.step(groups({}))
        for committer in range(min(2, self.workers)):
            state.history.append(state.current[committer])
            state.current[committer] = s.new_block(f"w{committer}", "step").id
            self.step(groups({committer: 3}))
            for _ in range(decodes):
                self.step(groups({}))
        # a long decode run, so the entry count crosses bucket boundaries
        for _ in range(40):
            self.step(groups({}))


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_decode_matches_eager(workers, dtype):
    model = tiny_model("qwen2").to(device="cuda", dtype=dtype)
    graphed = ModelRunner(model, page_size=4, max_cache_tokens=2048, cuda_graphs=True)
    eager = ModelRunner(model, page_size=4, max_cache_tokens=2048, cuda_graphs=False)
    assert graphed.graphs is not None and eager.graphs is None
    a, b = Driver(graphed, workers, seed=workers), Driver(eager, workers, seed=workers)
    a.run()
    b.run()
    assert len(graphed.graphs._steps) >= 2, "several (workers, entries) buckets should have been captured"
    assert len(a.decode_logits) == len(b.decode_logits) > 50
    tol = 1e-5 if dtype == torch.float32 else 5e-2  # relative to the largest logit
    pairs = list(zip(a.decode_logits, b.decode_logits, strict=True))
    worst = max(((x - y).abs().max() / y.abs().max()).item() for x, y in pairs)
    print(f"graph vs eager, W={workers} {dtype}: max relative logit diff {worst:.2e} over {len(pairs)} steps")
    assert worst <= tol
    for x, y in zip(a.decode_logits, b.decode_logits, strict=True):
        assert torch.equal(x.argmax(-1), y.argmax(-1)) or dtype != torch.float32
    # short chunks (a header, a step after a commit) replay chunk graphs: the same logits too
    assert len(a.chunk_logits) == len(b.chunk_logits) >= 2
    worst = max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a.chunk_logits, b.chunk_logits))
    print(f"chunk graphs vs eager, W={workers} {dtype}: max relative logit diff {worst:.2e}")
    assert worst <= tol
    assert any(k[1] > k[0] for k in graphed.graphs._steps), "a chunk bucket (more tokens than groups)"


def test_graph_greedy_tokens_are_the_argmax_of_its_logits():
    model = tiny_model("qwen2").to("cuda")
    runner = ModelRunner(model, page_size=4, max_cache_tokens=512, cuda_graphs=True)
    s = runner.store
    prompt = s.new_block("prompt", "prompt").id
    runner.forward([WriteGroup("p", prompt, list(range(1, 20)), [prompt])], 0)
    blocks = [s.new_block(f"w{w}", "step").id for w in range(3)]
    groups = [WriteGroup(f"w{w}", b, [5 + w], [prompt, b]) for w, b in enumerate(blocks)]
    runner.reserve(groups, 1)
    assert runner.graphs is not None
    picks = runner.graphs.forward_greedy(groups)
    step = next(s for key, s in runner.graphs._steps.items() if key[:2] == (4, 4))  # the decode bucket
    assert picks == step.logits[:3].argmax(-1).tolist()


class _AllowSome:
    """A stand-in grammar matcher (the runner only calls ``fill``): allows a fixed set of token ids."""

    def __init__(self, allowed: list[int]) -> None:
        self.allowed = allowed

    def fill(self, bitmask: torch.Tensor, index: int) -> bool:
        import numpy as np

        words = np.zeros(bitmask.shape[1], dtype=np.uint32)
        for t in self.allowed:
            words[t >> 5] |= np.uint32(1) << np.uint32(t & 31)
        bitmask.numpy()[index] = words.view(np.int32)
        return True


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_sampling_in_the_graph_equals_the_eager_sampler(temperature):
    """Bans, grammar masks and seeded sampling inside the captured step give the eager sampler's ids."""
    from hogwild_agents.runner.sampling import BanSet, Sampler, SampleRequest, SamplingParams, writer_stream

    model = tiny_model("qwen2").to("cuda")
    runner = ModelRunner(model, page_size=4, max_cache_tokens=512, cuda_graphs=True)
    s = runner.store
    prompt = s.new_block("prompt", "prompt").id
    runner.forward([WriteGroup("p", prompt, list(range(1, 20)), [prompt])], 0)
    blocks = [s.new_block(f"w{w}", "step").id for w in range(3)]
    params = SamplingParams(temperature=temperature, top_p=0.9, top_k=40, seed=7)
    ban = BanSet("workers", list(range(0, 512, 3)), runner.vocab_size)
    assert runner.graphs is not None
    for step_index in range(6):
        groups = [WriteGroup(f"w{w}", b, [5 + w + step_index], [prompt, b]) for w, b in enumerate(blocks)]
        runner.reserve(groups, 1 + step_index)
        requests = [
            SampleRequest(0, "w0", params, writer_stream(7, "w0"), step_index, ban=ban),
            SampleRequest(
                1, "w1", params, writer_stream(7, "w1"), step_index, constraint=_AllowSome([7, 11, 300])
            ),
            SampleRequest(2, "w2", params, writer_stream(7, "w2"), step_index, ban=ban, greedy=True),
        ]
        ids, masks = runner.graphs.forward_sample(groups, requests)
        step = next(
            st for key, st in runner.graphs._steps.items() if key[3] == (temperature > 0) and key[1] == key[0]
        )
        eager = Sampler(runner.vocab_size).sample(step.logits[:3].clone(), requests)
        assert ids == eager, step_index
        assert ids[1] in (7, 11, 300) and ids[0] % 3 != 0 and ids[2] % 3 != 0
        assert set(masks) == {1}


@pytest.mark.parametrize(
    "name", ["w2_combined_selfcheck", "w3_interleaved", "w2_return_required", "w2_json_answer"]
)
def test_engine_on_cuda_with_graphs_gives_the_recorded_greedy_run(qwen_tokenizer, name):
    """The whole engine on the GPU (Triton kernel, CUDA graphs, sampling in the graph), float32: the same
    tokens, blocks and answers as the CPU fixture recorded before the core was rebuilt."""
    import json
    from pathlib import Path

    from greedy_cases import run_case

    recorded = json.loads((Path(__file__).parent / "fixtures" / "greedy_runs.json").read_text())[name]
    got = json.loads(json.dumps(run_case(name, qwen_tokenizer, device="cuda")))
    for phase in recorded:
        for key in ("forwards", "blocks", "answer", "workers", "tool_events", "tool_calls"):
            assert got[phase][key] == recorded[phase][key], f"{name}/{phase}: {key}"


def test_liger_fused_ops_match_the_plain_modules():
    """fused_ops='liger' (Liger's RMSNorm, RoPE and gate-up SwiGLU, merged q|k|v and gate|up products, in
    the graphs) stays within bf16 rounding of the plain modules, step after step, and leaves other models
    of the family alone, on CUDA (bit for bit) and on CPU."""
    import copy
    import importlib.util

    if importlib.util.find_spec("liger_kernel") is None:
        pytest.skip("liger-kernel is not installed (the [fast] extra)")
    model = tiny_model("qwen2").to(device="cuda", dtype=torch.bfloat16)
    fused_model = copy.deepcopy(model)
    bystander = tiny_model("qwen2", seed=7).to(device="cuda", dtype=torch.bfloat16)  # a plain HF model
    probe_ids = torch.arange(1, 9, device="cuda")[None]
    with torch.no_grad():
        bystander_logits = bystander(probe_ids).logits
    plain = ModelRunner(model, page_size=4, max_cache_tokens=2048, fused_ops="none")
    fused = ModelRunner(fused_model, page_size=4, max_cache_tokens=2048, fused_ops="liger")
    assert (plain.fused_ops, fused.fused_ops) == ("none", "liger")
    from hogwild_agents.runner.merged import MERGED_KEY

    layer = fused_model.model.layers[0]
    assert getattr(layer.self_attn, MERGED_KEY) is not None and getattr(layer.mlp, MERGED_KEY) is not None
    a, b = Driver(fused, 3, seed=1), Driver(plain, 3, seed=1)
    a.run()
    b.run()
    pairs = list(zip(a.decode_logits, b.decode_logits, strict=True))
    worst = max(((x - y).abs().max() / y.abs().max()).item() for x, y in pairs)
    agree = sum(torch.equal(x.argmax(-1), y.argmax(-1)) for x, y in pairs) / len(pairs)
    print(f"liger vs plain, bf16: max relative logit diff {worst:.2e}, argmax agreement {agree:.0%}")
    assert worst <= 5e-2 and agree >= 0.9
    with torch.no_grad():  # RoPE goes through Liger only inside the fused model's forwards
        assert torch.equal(bystander(probe_ids).logits, bystander_logits)
    cpu = tiny_model("qwen2")
    ids = torch.arange(1, 9)[None]
    assert torch.isfinite(cpu(ids).logits).all()


@pytest.mark.parametrize("workers", [1, 3])
def test_compiled_decode_steps_match_the_plain_modules(workers):
    """fused_ops='compile' (merged products, every captured step through torch.compile with our attention as
    one opaque op) gives the plain eager logits in float32, bucket after bucket, and really compiles."""
    import copy

    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = tiny_model("qwen2").to("cuda")
    compiled_model = copy.deepcopy(model)
    plain = ModelRunner(model, page_size=4, max_cache_tokens=2048, cuda_graphs=False)
    compiled = ModelRunner(compiled_model, page_size=4, max_cache_tokens=2048, fused_ops="compile")
    assert compiled.fused_ops == "compile" and compiled.graphs is not None
    a, b = Driver(compiled, workers, seed=5), Driver(plain, workers, seed=5)
    a.run()
    b.run()
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    pairs = list(zip(a.decode_logits + a.chunk_logits, b.decode_logits + b.chunk_logits, strict=True))
    worst = max(((x - y).abs().max() / y.abs().max()).item() for x, y in pairs)
    print(f"compiled vs plain, W={workers} float32: max relative logit diff {worst:.2e}, {len(pairs)} steps")
    assert worst <= 1e-5
    assert all(torch.equal(x.argmax(-1), y.argmax(-1)) for x, y in pairs)
    torch._dynamo.reset()
