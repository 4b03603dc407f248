"""LangChain's ``ChatOpenAI`` and LlamaIndex's ``OpenAILike`` against the real server (tiny model)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel
from server_harness import TINY, solo

QUESTION = "Tom has 15 apples and buys 27 more. How many apples does he have now? Show the steps."
HOGWILD = {"collaboration": False, "early_exit": False, "max_forwards": 6}


class get_weather(BaseModel):  # noqa: N801 - the tool's name
    """Current weather of a city."""

    city: Literal["Paris", "Rome"]


@pytest.fixture(scope="module")
def chat(server):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=server.base_url,
        api_key="unused",
        model=TINY,
        temperature=1.0,
        seed=11,
        max_tokens=8,
        max_retries=0,
        extra_body={"hogwild": HOGWILD},
    )


SAME_REQUEST = {  # what the `chat` and `llm` fixtures send for QUESTION, as an OpenAI request body
    "messages": [{"role": "user", "content": QUESTION}],
    "max_tokens": 8,
    "temperature": 1.0,
    "seed": 11,
    "hogwild": HOGWILD,
}


def test_langchain_invoke_equals_the_engine(chat, engine) -> None:
    message = chat.invoke(QUESTION)
    expected = solo(engine, SAME_REQUEST)
    assert message.content == expected.answer and expected.answer.strip()
    assert message.response_metadata["model_name"] == TINY
    assert (
        message.usage_metadata["output_tokens"]
        == expected.usage.generated_tokens + expected.usage.answer_tokens
    )


def test_langchain_stream(chat, engine) -> None:
    chunks = list(chat.stream(QUESTION))
    expected = solo(engine, SAME_REQUEST)
    assert len(chunks) > 2
    assert "".join(str(c.content) for c in chunks) == expected.answer.lstrip()


def test_langchain_bind_tools_returns_a_call(chat) -> None:
    bound = chat.bind_tools([get_weather], tool_choice="required").bind(
        extra_body={"hogwild": {"max_forwards": 40, "early_exit": False}}, max_tokens=48
    )
    message = bound.invoke("What is the weather in Paris?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather", message
    assert message.tool_calls[0]["args"]["city"] in ("Paris", "Rome")


@pytest.fixture(scope="module")
def llm(server):
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=TINY,
        api_base=server.base_url,
        api_key="unused",
        is_chat_model=True,
        temperature=1.0,
        max_tokens=8,
        max_retries=0,
        additional_kwargs={"seed": 11, "extra_body": {"hogwild": HOGWILD}},
    )


def test_llama_index_chat_and_stream(llm, engine) -> None:
    from llama_index.core.llms import ChatMessage

    expected = solo(engine, SAME_REQUEST)
    reply = llm.chat([ChatMessage(role="user", content=QUESTION)])
    assert reply.message.content == expected.answer and expected.answer.strip()
    deltas = [r.delta for r in llm.stream_chat([ChatMessage(role="user", content=QUESTION)])]
    assert "".join(d or "" for d in deltas) == expected.answer.lstrip()
