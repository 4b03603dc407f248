"""Test hook: a tiny random Qwen2 model with the real Qwen tokenizer, for fast end-to-end CLI tests.

``hogwild run --model hogwild-test:tiny-random-qwen2 ...`` (or ``hogwild info`` with it) builds this model
instead of loading weights: 2 layers, hidden size 64, GQA 4/2 heads, seeded, so a 20-forward run takes a
few seconds on CPU. Its text is gibberish; it exists to exercise the command, the live view and the JSON
output. The tokenizer comes from the converted default model's cache, which must already exist.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TINY_SHAPE", "TINY_TEST_MODEL", "tiny_random_qwen2"]

TINY_TEST_MODEL = "hogwild-test:tiny-random-qwen2"
"""The ``--model`` value that selects the tiny random test model."""

TINY_SHAPE: dict[str, int | bool] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
)
"""The shape of every tiny test model (GQA 4/2 heads, head_dim 16, 2 layers): the tests' builders share it."""


def tiny_random_qwen2(seed: int = 0) -> tuple[Any, Any]:
    """Build the tiny random Qwen2 model and load the real Qwen tokenizer.

    Args:
        seed: Seed of the random weights.

    Returns:
        ``(model, tokenizer)``; the model is fp32 on CPU, in eval mode.

    Raises:
        ModelNotAvailableError: The default model's cache (which holds the tokenizer) does not exist yet.

    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from .store import DEFAULT_MODEL, MARKER_FILE, ModelNotAvailableError, cache_root

    path = cache_root() / "models" / DEFAULT_MODEL
    if not (path / MARKER_FILE).is_file():
        raise ModelNotAvailableError(
            f"the test model borrows the tokenizer of {DEFAULT_MODEL!r}, which is not cached at {path}; "
            "convert it once with: python -c 'from hogwild_agents.models.store import resolve_model_path; "
            "resolve_model_path()'"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = Qwen2Config(vocab_size=len(tokenizer), **TINY_SHAPE)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    return model, tokenizer
