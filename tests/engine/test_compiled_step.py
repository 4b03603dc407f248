"""The attention as one opaque op under ``torch.compile`` (the ``fused_ops='compile'`` decode path).

On CUDA the runner compiles its captured decode steps (test_graph_decode.py checks them against the plain
modules); here, on CPU, the model is compiled around the same op and driven through the runner's eager path
with the reference attention, so any difference from the plain forward is the op's or the compiler's.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_graph_decode import Driver
from tiny_models import tiny_model

from hogwild_agents.api.errors import UnsupportedModelError
from hogwild_agents.runner.merged import merge_projections
from hogwild_agents.runner.runner import ModelRunner


def test_a_compiled_model_around_the_attention_op_gives_the_plain_logits():
    torch._dynamo.reset()
    model = tiny_model("qwen2")  # q|k|v with biases: the merged product is an addmm
    plain = ModelRunner(model, page_size=4, max_cache_tokens=512, attention_backend="reference")
    twin = copy.deepcopy(model)
    compiled = ModelRunner(twin, page_size=4, max_cache_tokens=512, attention_backend="reference")
    merge_projections(twin)
    compiled.model = torch.compile(twin)  # as the GPU path: static first, then dynamic sizes
    from torch._dynamo.utils import counters

    counters.clear()
    a, b = Driver(plain, 2, seed=3), Driver(compiled, 2, seed=3)
    a.run(decodes=2)
    b.run(decodes=2)
    pairs = list(zip(a.decode_logits + a.chunk_logits, b.decode_logits + b.chunk_logits, strict=True))
    assert len(pairs) > 40
    assert max((x - y).abs().max().item() for x, y in pairs) < 1e-5
    assert not counters["graph_break"], dict(counters["graph_break"])  # one graph per shape, op included
    torch._dynamo.reset()


def test_the_attention_op_refuses_to_run_outside_an_engine_forward():
    from hogwild_agents.runner.attention import paged_attention

    q = torch.zeros(1, 4, 1, 8)
    k = torch.zeros(1, 2, 1, 8)
    with pytest.raises(RuntimeError, match="outside a HogwildEngine forward"):
        paged_attention(q, k, k, 0, 1.0)


def test_compile_is_refused_where_there_is_no_graph_decode_step():
    with pytest.raises(UnsupportedModelError, match="fused_ops='compile'.*CUDA"):
        ModelRunner(tiny_model("llama"), page_size=4, max_cache_tokens=64, fused_ops="compile")
