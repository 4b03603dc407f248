"""Liger's RoPE is routed per model, not per process (``fused_ops='liger'``).

transformers calls RoPE as a module-level function of the family, so the routing wraps that function once
and asks, at each call, whether the forward running belongs to a model that opted in. Liger's kernels need
CUDA (their numbers are checked in test_graph_decode.py); what is checked here, on CPU, is the scope: only
the opted-in model's forwards see it, nesting counts, a forward that raises leaves it, and a plain model of
the same family keeps the plain rotation, bit for bit.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle

import pytest
import torch
from tiny_models import tiny_model

from hogwild_agents.runner import fused

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("liger_kernel") is None,
    reason="liger-kernel is not installed (the [fast] extra)",
)


def _scope_seen_by_layers(model: torch.nn.Module) -> list[bool]:
    """Run a forward of ``model`` and return what each decoder layer saw of the Liger RoPE scope."""
    seen: list[bool] = []
    handles = [
        layer.register_forward_pre_hook(lambda *_: seen.append(fused._liger_rope_active()))
        for layer in model.model.layers
    ]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([[1, 2, 3]]))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_only_the_opted_in_model_runs_inside_the_liger_rope_scope():
    routed, plain = tiny_model("qwen2", seed=0), tiny_model("qwen2", seed=1)
    modeling = importlib.import_module(type(routed).__module__)
    before = plain(input_ids=torch.tensor([[5, 6, 7, 8]])).logits
    fused._route_rope_to_liger(routed)
    fused._route_rope_to_liger(routed)  # idempotent: one pair of hooks, one wrapper
    assert getattr(modeling.apply_rotary_pos_emb, "_hogwild_liger", False)
    assert len(routed._forward_pre_hooks) == 1 and len(routed._forward_hooks) == 1
    # transformers' RoPE object (the `kernels` package) rebuilds copies from the family's name: a routed
    # model, and a plain one of the family, still pickle whole and keep their scope.
    for model in (routed, plain):
        twin = pickle.loads(pickle.dumps(model))
        assert torch.equal(
            twin(input_ids=torch.tensor([[5, 6, 7, 8]])).logits,
            model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits,
        )
    assert _scope_seen_by_layers(pickle.loads(pickle.dumps(routed)))[0] is True

    assert _scope_seen_by_layers(routed) == [True] * len(routed.model.layers)
    assert _scope_seen_by_layers(plain) == [False] * len(plain.model.layers)
    assert not fused._liger_rope_active()
    # The wrapper falls through to the family's own rotation for the plain model (and for CPU tensors).
    assert torch.equal(plain(input_ids=torch.tensor([[5, 6, 7, 8]])).logits, before)


def test_a_forward_that_raises_leaves_the_scope():
    routed = tiny_model("llama", seed=2)
    fused._route_rope_to_liger(routed)

    def fail(*_: object) -> None:
        assert fused._liger_rope_active()
        raise RuntimeError("planted failure inside the forward")

    handle = routed.model.layers[0].register_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="planted failure"):
            routed(input_ids=torch.tensor([[1, 2]]))
    finally:
        handle.remove()
    assert not fused._liger_rope_active()


def test_a_forward_inside_another_keeps_the_outer_scope():
    outer, inner = tiny_model("qwen2", seed=3), tiny_model("qwen2", seed=4)
    fused._route_rope_to_liger(outer)
    fused._route_rope_to_liger(inner)
    seen: list[bool] = []

    def run_inner(*_: object) -> None:
        inner(input_ids=torch.tensor([[1]]))
        seen.append(fused._liger_rope_active())  # the inner forward has left; the outer one has not

    handle = outer.model.layers[0].register_forward_pre_hook(run_inner)
    try:
        with torch.no_grad():
            outer(input_ids=torch.tensor([[1, 2]]))
    finally:
        handle.remove()
    assert seen == [True] and not fused._liger_rope_active()


def test_a_family_whose_rope_is_a_plain_function_gets_a_wrapper_under_its_name(monkeypatch):
    """transformers without the `kernels` package defines RoPE as a plain function: the name is rebound."""
    model = tiny_model("mistral", seed=5)
    modeling = importlib.import_module(type(model).__module__)
    family_rope = modeling.apply_rotary_pos_emb

    def plain_rope(q, k, cos, sin, unsqueeze_dim=1):
        return family_rope(q, k, cos, sin, unsqueeze_dim)

    monkeypatch.setattr(modeling, "apply_rotary_pos_emb", plain_rope)  # restored after the test
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    before = model(input_ids=ids).logits
    fused._route_rope_to_liger(model)
    assert modeling.apply_rotary_pos_emb is not plain_rope
    assert getattr(modeling.apply_rotary_pos_emb, "_hogwild_liger", False)
    assert torch.equal(model(input_ids=ids).logits, before)  # CPU tensors: the plain rotation
