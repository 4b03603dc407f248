"""Fused decoder ops from a maintained library (Liger-Kernel), inside the captured decode step.

Without them a 7B model's decode step spends a sixth of its time in small un-fused ops per layer
(RMSNorm's five kernels, RoPE's half-rotations, SiLU·mul, bf16 casts), and a tenth in weight products too
small to reach the card's bandwidth (k and v). Liger-Kernel ships Triton kernels for RMSNorm, RoPE and a
SwiGLU that reads one merged gate|up product; this module puts them into *this model instance* (its norm
and MLP modules), merges the q|k|v and gate|up products (:mod:`.merged`), and routes the family's RoPE
function to Liger's kernel for CUDA tensors, only while *this model* runs a forward (transformers calls
RoPE as a module-level function, so the switch is a hook on the model: other models of the family in the
process, and every CPU model, keep the plain code). Our attention stays ours.

``fused_ops="auto"`` applies them on CUDA with the Triton backend when the package is installed and the
family is one of :data:`LIGER_FAMILIES`; ``"none"`` keeps the plain modules (the reference the tests
compare against); ``"liger"`` insists and says why when it cannot. RMSNorm is computed in float32, as in
the originals.

``fused_ops="compile"`` is the other candidate: the same merged products with the plain modules, and every
captured decode step compiled by ``torch.compile`` (Inductor fuses the norms, RoPE, SiLU·mul and residual
adds into the weight products around them, and with coordinate-descent tuning writes its own one-row
products) while our attention stays one opaque op (``hogwild::paged_attention``). Eager forwards (prompts,
long chunks) run the plain modules. Each new decode shape compiles once (tens of seconds for a 7B model).
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from typing import Any, Literal

import torch

from ..api.errors import UnsupportedModelError
from .merged import MERGED_KEY, merge_projections, torch_silu_mul

__all__ = ["LIGER_FAMILIES", "FusedOps", "apply_fused_ops"]

FusedOps = Literal["auto", "none", "liger", "compile"]
LIGER_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
"""Dense families whose RMSNorm, SwiGLU MLP and rotate-half RoPE Liger's kernels reproduce."""


def _why_not(model: torch.nn.Module, device: torch.device, backend: str) -> str | None:
    family = str(getattr(model.config, "model_type", "?"))
    if device.type != "cuda" or backend != "triton":
        return "needs a CUDA device with the Triton backend"
    if importlib.util.find_spec("liger_kernel") is None:
        return "needs the liger-kernel package (pip install 'hogwild-agents[fast]')"
    if family not in LIGER_FAMILIES:
        return f"has no kernels for the {family!r} family (supported: {', '.join(sorted(LIGER_FAMILIES))})"
    if getattr(model.config, "hidden_act", "silu") not in ("silu", "swish"):
        return f"fuses SiLU MLPs only, and this model uses {model.config.hidden_act!r}"
    return None


def apply_fused_ops(model: torch.nn.Module, choice: FusedOps, device: torch.device, backend: str) -> str:
    """Apply the chosen fused ops to ``model``; return what was applied: "liger", "compile" or "none".

    ``"compile"`` only merges the products here; the runner, which checks that it captures CUDA-graph
    decode steps, compiles them.

    Raises:
        UnsupportedModelError: ``choice="liger"`` where Liger's kernels cannot be used (the message says why).
    """
    if choice == "none":
        return "none"
    if choice == "compile":
        merge_projections(model, silu_mul=torch_silu_mul)
        return "compile"
    why = _why_not(model, device, backend)
    if why is not None:
        if choice == "liger":
            raise UnsupportedModelError(f"fused_ops='liger' {why}; use fused_ops='none' or 'auto'")
        return "none"
    from liger_kernel.ops.swiglu import LigerFusedGateUpSiLUMulFunction
    from liger_kernel.transformers.monkey_patch import _patch_rms_norm_module, _patch_swiglu_module
    from liger_kernel.transformers.swiglu import LigerSwiGLUMLP

    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            _patch_rms_norm_module(module, eps=getattr(module, "variance_epsilon", 1e-6))
    # One q|k|v and one gate|up product per layer; the SwiGLU reads the merged gate|up output in place.
    merge_projections(model, silu_mul=LigerFusedGateUpSiLUMulFunction.apply)
    for module in model.modules():  # MLPs the merge could not take (e.g. sharded ones) get Liger's SwiGLU
        if (
            type(module).__name__.endswith("MLP")
            and getattr(module, MERGED_KEY, None) is None
            and all(hasattr(module, p) for p in ("gate_proj", "up_proj", "down_proj"))
        ):
            _patch_swiglu_module(module, LigerSwiGLUMLP)
    _route_rope_to_liger(model)
    return "liger"


class _LigerRopeScope(threading.local):
    """How many forwards of Liger-fused models this thread is inside (a forward may call another)."""

    depth = 0


_LIGER_ROPE_SCOPE = _LigerRopeScope()


def _liger_rope_active() -> bool:
    """Whether this thread is inside the forward of a model whose RoPE was routed to Liger."""
    return _LIGER_ROPE_SCOPE.depth > 0


def _enter_liger_rope(module: torch.nn.Module, args: Any) -> None:
    _LIGER_ROPE_SCOPE.depth += 1


def _leave_liger_rope(module: torch.nn.Module, args: Any, output: Any) -> None:
    _LIGER_ROPE_SCOPE.depth -= 1


def _route_rope_to_liger(model: torch.nn.Module) -> None:
    """Route the family's ``apply_rotary_pos_emb`` to Liger's kernel inside ``model``'s forwards (idempotent).

    The family's function is wrapped once per process; the wrapper takes Liger's kernel only on CUDA
    tensors, and only while a model that opted in is running (its forward hooks count the depth, and the
    leaving hook runs even when the forward raises). CUDA-graph capture runs the forward, so a captured
    step holds Liger's kernel; a replay runs no Python.
    """
    if not getattr(model, "_hogwild_liger_rope", False):
        model.register_forward_pre_hook(_enter_liger_rope)
        model.register_forward_hook(_leave_liger_rope, always_call=True)
        model._hogwild_liger_rope = True  # type: ignore[assignment]
    modeling: Any = importlib.import_module(type(model).__module__)
    original = modeling.apply_rotary_pos_emb
    if getattr(original, "_hogwild_liger", False):
        return
    from liger_kernel.transformers.rope import liger_rotary_pos_emb

    # With the `kernels` package (which transformers >= 5.25 requires) the family's RoPE is a module
    # object that pickles by its name, and copies of it rebuild from whatever that name holds: keep the
    # object and route its forward. Without it, it is a plain function: replace it.
    plain = original.forward if isinstance(original, torch.nn.Module) else original

    def apply_rotary_pos_emb(
        q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Never while torch.compile traces (fused_ops="compile" on another model of the family): Inductor
        # fuses the plain rotation, and Liger's op would break the graph at every layer. That check comes
        # first, so Dynamo never reads the thread-local scope.
        if (
            not torch.compiler.is_compiling()
            and q.is_cuda
            and not args
            and not kwargs
            and _liger_rope_active()
        ):
            return liger_rotary_pos_emb(q, k, cos, sin)
        return plain(q, k, cos, sin, *args, **kwargs)

    if isinstance(original, torch.nn.Module):
        original.forward = apply_rotary_pos_emb
        original._hogwild_liger = True
    else:
        apply_rotary_pos_emb._hogwild_liger = True  # type: ignore[attr-defined]
        modeling.apply_rotary_pos_emb = apply_rotary_pos_emb
