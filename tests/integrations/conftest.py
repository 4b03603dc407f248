"""Shared fixtures of the integration tests: tiny random engines with the real Qwen tokenizer."""

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from integration_models import qwen_tokenizer, tiny_qwen_engine  # noqa: E402


@pytest.fixture(scope="session")
def tiny_engine() -> Any:
    """A ``HogwildEngine`` over a 2-layer random Qwen2 with the real tokenizer (no weights loaded)."""
    return tiny_qwen_engine()


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    """The real Qwen2.5-Coder tokenizer."""
    return qwen_tokenizer()
