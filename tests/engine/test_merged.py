"""Merged q|k|v and gate|up products (the fused decode path's weight merge) keep the model exact.

On CUDA the merge runs with Liger's gate-up SwiGLU (``fused_ops='liger'``, tested in test_graph_decode.py);
here it runs with the plain SiLU·mul on CPU, so any difference from the reference is the merge's own.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_exactness import TOL, Scenario
from tiny_models import FAMILIES, tiny_model

from hogwild_agents.runner.merged import MERGED_KEY, merge_projections, torch_silu_mul


def _storage_bytes(model: torch.nn.Module) -> int:
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
    return sum(storages.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_merged_products_keep_the_engine_equal_to_the_reference(family):
    scenario = Scenario(family, workers=3, layout="combined")
    merged = merge_projections(scenario.model, silu_mul=torch_silu_mul)
    assert merged == 2 * scenario.model.config.num_hidden_layers  # every attention and every MLP
    assert scenario.run() < TOL


def test_the_merge_adds_no_memory_and_keeps_the_state_dict():
    model = tiny_model("qwen2")  # q/k/v with biases
    before = copy.deepcopy(model.state_dict())
    size = _storage_bytes(model)
    merge_projections(model)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert _storage_bytes(model) == size
    attention = model.model.layers[0].self_attn
    product = getattr(attention, MERGED_KEY)
    assert attention.k_proj.weight.data_ptr() == product.weight[attention.q_proj.out_features :].data_ptr()
    assert merge_projections(model) == 0  # idempotent


def test_a_projection_called_on_another_input_runs_its_own_slice():
    model = tiny_model("llama")
    plain = copy.deepcopy(model)
    merge_projections(model)
    x, y = torch.randn(3, model.config.hidden_size), torch.randn(3, model.config.hidden_size)
    attention, reference = model.model.layers[1].self_attn, plain.model.layers[1].self_attn
    assert torch.allclose(attention.q_proj(x), reference.q_proj(x), atol=1e-6)
    assert torch.allclose(attention.v_proj(y), reference.v_proj(y), atol=1e-6)  # not x: its own slice
    assert torch.allclose(attention.k_proj(x), reference.k_proj(x), atol=1e-6)  # x's parts are still there
    assert torch.allclose(attention.v_proj(x), reference.v_proj(x), atol=1e-6)


def test_the_merged_buffer_follows_moved_and_copied_weights():
    """After .to(), deepcopy or a load into new tensors, the product is rebuilt from the parameters as they
    are: never computed from stale weights."""
    model = tiny_model("qwen2")
    plain = copy.deepcopy(model)
    merge_projections(model)
    ids = torch.arange(1, 9)[None]
    twin = copy.deepcopy(model)  # its parts are the copied modules, its buffer rebuilt from their weights
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
        for p in plain.parameters():
            p.mul_(0.5)
    assert torch.allclose(twin(ids).logits, plain(ids).logits, atol=1e-5)
    model.to(torch.float64)
    plain.to(torch.float64)
    with torch.no_grad():
        for p, q in zip(model.parameters(), plain.parameters(), strict=True):
            p.copy_(q)
    assert torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-9)
    fresh = {k: v.clone() for k, v in plain.state_dict().items()}
    model.load_state_dict(fresh, assign=True)  # new tensors altogether
    assert torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-9)


def test_a_merged_model_pickles_and_loads_whole(tmp_path):
    model = tiny_model("llama")
    merge_projections(model)
    ids = torch.arange(1, 9)[None]
    torch.save(model, tmp_path / "model.pt")
    again = torch.load(tmp_path / "model.pt", weights_only=False)
    assert torch.allclose(again(ids).logits, model(ids).logits, atol=1e-6)
