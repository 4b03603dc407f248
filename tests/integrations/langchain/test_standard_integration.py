"""langchain-tests standard integration suite against the real Qwen2.5-Coder-0.5B-Instruct (CPU is enough).

The whole class is ``real_model``; ``conftest.py`` marks the tests outside the CI subset ``full_suite``.
"""

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_hogwild import ChatHogwild
from langchain_real_params import REAL_MODEL_PARAMS
from langchain_tests.integration_tests import ChatModelIntegrationTests

pytestmark = pytest.mark.real_model


class TestChatHogwildIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatHogwild]:
        return ChatHogwild

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(REAL_MODEL_PARAMS)  # model=None: the packaged default, loaded once and shared

    @property
    def has_tool_choice(self) -> bool:
        return True  # enforced by the engine's constrained decoding

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True  # with_structured_output(method="json_mode"): any JSON object, grammar-constrained

    @property
    def supports_model_override(self) -> bool:
        return False  # one engine holds one model's weights; a per-call `model` cannot switch them

    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    @pytest.mark.skip(
        reason="model quality, not plumbing: with tool_choice='auto' Qwen2.5-Coder-0.5B sometimes answers "
        "the weather question directly (made-up forecast) instead of calling get_weather, so the test could "
        "only be a non-strict xfail, which cannot fail (it cost 133 s of CI); forced calls pass "
        "(test_tool_calling, test_tool_choice) and the tool-result round trip passes in test_agent.py"
    )
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)
