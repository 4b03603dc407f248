"""Real-model test selection for the LangChain integration.

Every real-model test here is marked ``real_model``. CI runs a subset of them (invoke, stream, async, tool
calling, structured output, the agent loops); the rest of the standard integration suite is also marked
``full_suite`` so that ``pytest -m "not full_suite"`` (the README command) runs the subset and
``pytest -m full_suite`` runs the rest.
"""

import pytest

CI_SUBSET = frozenset(
    {
        "test_invoke",
        "test_ainvoke",
        "test_stream[model0]",
        "test_astream[model0]",
        "test_tool_calling[model0]",
        "test_tool_calling_async",
        "test_structured_output[pydantic]",
        "test_agent_loop[model0]",
        "test_create_agent_adds_with_tools",
    }
)  # one variant each: on 2 CPU cores every real-model run costs tens of seconds

from langchain_real_params import REAL_MODEL_PARAMS  # noqa: E402,F401  (re-exported for the tests)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the real-model LangChain tests outside the CI subset as ``full_suite`` (run on demand)."""
    here = str(config.rootpath / "tests" / "integrations" / "langchain")
    for item in items:
        if str(item.path).startswith(here) and item.get_closest_marker("real_model"):
            if item.name not in CI_SUBSET:
                item.add_marker(pytest.mark.full_suite)
