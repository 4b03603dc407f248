"""A standard LangChain agent (``create_agent``) solving a task with tools on the real model."""

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_hogwild import ChatHogwild
from langchain_real_params import REAL_MODEL_PARAMS

pytestmark = pytest.mark.real_model

create_agent = pytest.importorskip(
    "langchain.agents", reason="needs `langchain` (the test extra)"
).create_agent


@tool
def add(a: int, b: int) -> int:
    """Add two integers and return the sum."""
    return a + b


@tool
def subtract(a: int, b: int) -> int:
    """Subtract b from a and return the difference."""
    return a - b


def test_create_agent_adds_with_tools():
    from langchain.agents.middleware import wrap_model_call

    # With tool_choice="auto" the 0.5B model answers arithmetic from memory (and wrongly: it said 16575 for
    # 1234 + 4321). The standard way to make an agent act is to force a tool on its first turn; the engine
    # enforces tool_choice by constrained decoding, and the model picks the tool and arguments itself.
    @wrap_model_call
    def tool_first(request, handler):
        if not any(isinstance(m, ToolMessage) for m in request.messages):
            request = request.override(tool_choice="any")
        return handler(request)

    agent = create_agent(
        ChatHogwild(**REAL_MODEL_PARAMS),
        tools=[add, subtract],
        system_prompt="You are a calculator. Use the tools for arithmetic, then state the result.",
        middleware=[tool_first],
    )
    state = agent.invoke({"messages": [HumanMessage("What is 1234 + 4321?")]}, {"recursion_limit": 6})
    messages = state["messages"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    assert {"name": "add", "args": {"a": 1234, "b": 4321}} in [
        {"name": c["name"], "args": c["args"]} for c in calls
    ]
    assert any(isinstance(m, ToolMessage) and m.content == "5555" for m in messages)
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls
    assert "5555" in final.content
