"""langchain-tests standard unit suite for ChatHogwild, on a tiny random engine (no weights loaded)."""

from typing import Any

from integration_models import tiny_qwen_engine
from langchain_hogwild import ChatHogwild
from langchain_tests.unit_tests import ChatModelUnitTests


class TestChatHogwildUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatHogwild]:
        return ChatHogwild

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"engine": tiny_qwen_engine(), "workers": 2, "max_forwards": 8, "max_answer_tokens": 16}

    @property
    def supports_model_override(self) -> bool:
        return False  # one engine holds one model's weights; a per-call `model` cannot switch them
