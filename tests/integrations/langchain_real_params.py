"""Budgets of the real-model LangChain tests (a uniquely named module: importable in any pytest mode)."""

from typing import Any

# Small budgets: the 0.5B model on 2 CPU cores writes a few tokens per second. The finisher needs about 30
# tokens for a tool call; constrained answers (forced calls, JSON) get at least 256 from the engine.
REAL_MODEL_PARAMS: dict[str, Any] = {"workers": 2, "max_forwards": 2, "max_answer_tokens": 24}
