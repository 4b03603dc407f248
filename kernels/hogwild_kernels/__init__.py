"""hogwild-kernels: RoPE-shifted attention over a paged KV cache shared by several query groups.

The package knows nothing of transformers or of the engine. Public entry points:

- :func:`shifted_attention_with_paged_kv`: the dispatching entry point (Triton on CUDA, reference on CPU);
- :func:`shifted_attention_reference`: the plain PyTorch specification;
- :class:`ShiftedAttentionMetadata`: the per-forward metadata every path takes;
- :func:`rotate_by_positions`: rotate-half RoPE by arbitrary positions.
"""

from .dispatch import shifted_attention_with_paged_kv
from .metadata import ShiftedAttentionMetadata
from .reference import rotate_by_positions, shifted_attention_reference

__version__ = "0.1.0"

__all__ = [
    "ShiftedAttentionMetadata",
    "__version__",
    "rotate_by_positions",
    "shifted_attention_reference",
    "shifted_attention_with_paged_kv",
]
