"""One weight product where the model makes several from the same input: q|k|v and gate|up.

At decode every product is a matrix-vector product, bound by reading the weights. Small ones never reach
the card's bandwidth: on an H200 (Qwen2.5-7B shape) cuBLAS spends 7.8 µs on each 3.5 MiB k or v projection
(0.47 TB/s), while one merged q|k|v product takes 11.3 µs for all three; merging gate and up saves the
second launch and split-K tail. Together they remove 0.51 ms of the 4.5 ms of weight products in a step
(``bench/decode_profile.py``, bench/RESULTS.md).

The merge keeps the model as it is for everything else: the parameters become *views* of one merged
buffer, so no memory is added and ``state_dict`` keys and values are unchanged. The merged buffer follows
the parameters: after ``model.to(...)``, ``copy.deepcopy(model)`` or a load into new tensors, the first
product rebuilds it from the parameters as they are, so results never come from stale weights. A
projection called on another input than its siblings runs its own slice (still exact). Only this
instance's modules change class (to a subclass whose ``forward`` uses the merged product).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

__all__ = ["MERGED_KEY", "MergedProduct", "merge_projections", "torch_silu_mul"]

MERGED_KEY = "_hogwild_merged"
"""Attribute of each merged module (the attention, the MLP and their projections): its MergedProduct."""

SiluMul = Callable[[torch.Tensor], torch.Tensor]


def torch_silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` over a ``[..., 2 * I]`` gate|up tensor (the plain-PyTorch reference)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


class MergedProduct:
    """One product ``x @ W.T + b`` for several ``nn.Linear`` projections of the same input.

    The first projection called on an input computes every part; its siblings called on the same input
    object take theirs. The parts' parameters are views of :attr:`weight` / :attr:`bias`.
    """

    def __init__(self, parts: dict[str, torch.nn.Linear]) -> None:
        self.parts = parts
        self.sizes = [m.out_features for m in parts.values()]
        self.weight = torch.empty(0)
        self.bias: torch.Tensor | None = None
        self._views: list[int] = []
        self._input: torch.Tensor | None = None
        self._pending: dict[str, torch.Tensor] = {}
        self._rebuild()

    def _rebuild(self) -> None:
        """(Re)make the merged buffer from the parameters as they are now, and make them its views."""
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            raise RuntimeError("the model's weights changed during CUDA-graph capture; move the model first")
        modules = list(self.parts.values())
        with torch.no_grad():
            self.weight = torch.cat([m.weight for m in modules])
            self.bias = None if modules[0].bias is None else torch.cat([m.bias for m in modules])  # type: ignore[misc]
        start = 0
        for module in modules:
            end = start + module.out_features
            module.weight.data = self.weight[start:end]
            if module.bias is not None and self.bias is not None:
                module.bias.data = self.bias[start:end]
            start = end
        self._views = self._pointers()
        self._input, self._pending = None, {}

    def _pointers(self) -> list[int]:
        out = []
        for m in self.parts.values():
            out.append(m.weight.data_ptr())
            out.append(-1 if m.bias is None else m.bias.data_ptr())
        return out

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + b`` of every part at once, ``[..., sum of out_features]``."""
        # The check reads data pointers, which torch.compile cannot trace; a compiled model guards on the
        # merged buffer itself, and its step is compiled after an eager forward has made the check.
        if not torch.compiler.is_compiling() and self._pointers() != self._views:
            self._rebuild()  # the parameters were moved, copied or replaced since the merge
        return F.linear(x, self.weight, self.bias)

    def part(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Projection ``name`` of ``x``: taken from the merged product of ``x`` (computed once)."""
        if self._input is not x or name not in self._pending:
            out = self.product(x)
            self._input = x
            self._pending = dict(zip(self.parts, out.split(self.sizes, -1), strict=True))
        part = self._pending.pop(name)
        if not self._pending:  # every part taken: drop the references to the input and outputs
            self._input = None
        return part

    def __deepcopy__(self, memo: dict) -> MergedProduct:
        # The copy's parts are the copied modules (memo); its buffer is rebuilt from their parameters on
        # first use (they are copied one by one, so they no longer view a common buffer).
        import copy

        clone = MergedProduct.__new__(MergedProduct)
        memo[id(self)] = clone
        clone.parts = {n: copy.deepcopy(m, memo) for n, m in self.parts.items()}
        clone.sizes = list(self.sizes)
        clone.weight, clone.bias, clone._views = torch.empty(0), None, []
        clone._input, clone._pending = None, {}
        return clone


class _MergedLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose output is its slice of its :class:`MergedProduct`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, MERGED_KEY).part(self._hogwild_part, x)


_MLP_CLASSES: dict[type, type] = {}


def _merged_mlp_class(cls: type) -> type:
    """A subclass of the family's MLP whose forward is ``down(silu_mul(gate|up product))``."""
    if cls not in _MLP_CLASSES:

        def forward(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
            product: MergedProduct = getattr(self, MERGED_KEY)
            return self.down_proj(self._hogwild_silu_mul(product.product(x)))

        name = f"Merged{cls.__name__}"
        merged = type(name, (cls,), {"forward": forward, "__module__": __name__, "__qualname__": name})
        globals()[name] = merged  # importable by name, so a pickled model (torch.save) loads again
        _MLP_CLASSES[cls] = merged
    return _MLP_CLASSES[cls]


def _plain_linears(module: torch.nn.Module, names: tuple[str, ...]) -> dict[str, torch.nn.Linear] | None:
    """The named sub-modules when they are plain, dense, same-input ``nn.Linear``s that can be merged."""
    found = {n: getattr(module, n, None) for n in names}
    if not all(type(m) is torch.nn.Linear for m in found.values()):
        return None
    linears: dict[str, torch.nn.Linear] = found  # type: ignore[assignment]
    first = linears[names[0]]
    for m in linears.values():
        if type(m.weight.data) is not torch.Tensor:  # a DTensor (tensor parallelism) or a quantized type
            return None
        same = (m.in_features, m.weight.dtype, m.weight.device) == (
            first.in_features,
            first.weight.dtype,
            first.weight.device,
        )
        if not same or (m.bias is None) != (first.bias is None):
            return None
    return linears


def _is_silu(act: object) -> bool:
    """Whether ``act`` computes SiLU (transformers has its own SiLU classes; judge by what it computes)."""
    if not callable(act):
        return False
    probe = torch.linspace(-6.0, 6.0, 25)
    with torch.no_grad():
        out = act(probe)
    return isinstance(out, torch.Tensor) and torch.allclose(out, F.silu(probe), atol=1e-6)


def _merge(owner: torch.nn.Module, linears: dict[str, torch.nn.Linear]) -> MergedProduct:
    product = MergedProduct(linears)
    setattr(owner, MERGED_KEY, product)
    return product


def merge_projections(model: torch.nn.Module, silu_mul: SiluMul = torch_silu_mul) -> int:
    """Merge every attention's q|k|v and every SiLU MLP's gate|up products in ``model``, in place.

    Args:
        model: a decoder whose attention modules have ``q_proj``/``k_proj``/``v_proj`` and whose MLPs have
            ``gate_proj``/``up_proj``/``down_proj`` (Llama, Mistral, Qwen2, Qwen3 and their kin); modules
            without them, or with other layer types (quantized, tensor-parallel), are left alone.
        silu_mul: ``silu(gate) * up`` over the merged ``[..., 2 * I]`` output (Liger's fused gate-up
            kernel on CUDA; :func:`torch_silu_mul` is the plain reference).

    Returns:
        how many modules were merged (0 when nothing applied, e.g. a second call).
    """
    merged = 0
    for module in list(model.modules()):
        if getattr(module, MERGED_KEY, None) is not None:
            continue
        attention = _plain_linears(module, ("q_proj", "k_proj", "v_proj"))
        if attention is not None:
            product = _merge(module, attention)
            for name, linear in attention.items():
                linear.__class__ = _MergedLinear
                linear._hogwild_part = name  # type: ignore[assignment]
                setattr(linear, MERGED_KEY, product)
            merged += 1
            continue
        mlp = _plain_linears(module, ("gate_proj", "up_proj"))
        if mlp is None or not hasattr(module, "down_proj") or not _is_silu(getattr(module, "act_fn", None)):
            continue  # only SiLU-gated MLPs: down(silu(gate(x)) * up(x))
        _merge(module, mlp)
        module._hogwild_silu_mul = silu_mul  # type: ignore[assignment]
        module.__class__ = _merged_mlp_class(type(module))
        merged += 1
    return merged
