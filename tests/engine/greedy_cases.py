"""Greedy runs on tiny models whose complete outcome is pinned by fixtures/greedy_runs.json.

Each case builds a seeded tiny model with the real Qwen tokenizer and runs one request; :func:`run_case`
returns what must stay identical across refactors of the engine core: per forward the writers, their fed
and sampled tokens and their views (block ids renumbered by first appearance), every block's author,
tokens and write times, the answer, each worker's text and stop reason, tool events and usage counts.
"""

from __future__ import annotations

from typing import Any

from tiny_models import tiny_model

VOCAB = 151936
EOS = 151645
QUESTION = [{"role": "user", "content": "Add 2 and 3, then double it."}]


def _calculator_tools() -> list[Any]:
    from hogwild_agents.tools.builtins import calculator_tool

    return [calculator_tool()]


def _enum_tools() -> list[Any]:
    from hogwild_agents import Tool

    def population(city: str) -> str:
        return {"Paris": "2.1 million", "Rome": "2.8 million"}.get(city, "unknown")

    schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"]}
    return [Tool(name="population", description="Population of a city.", parameters=schema, func=population)]


def _schema_tools() -> list[Any]:
    return [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a city up.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]


# name -> (family, engine config, run options, tools factory)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any], Any]] = {
    "w1_plain": (
        "qwen2",
        {"workers": 1, "collaboration": False},
        {"max_forwards": 24, "max_answer_tokens": 64},
        None,
    ),
    "w2_combined_selfcheck": (
        "qwen2",
        {"workers": 2, "self_check_every": 8},
        {"max_forwards": 40, "max_answer_tokens": 8},
        None,
    ),
    "w3_interleaved": ("qwen2", {"workers": 3, "layout": "interleaved"}, {"max_forwards": 30}, None),
    "w2_contiguous": ("qwen2", {"workers": 2, "layout": "contiguous"}, {"max_forwards": 30}, None),
    "w4_llama": ("llama", {"workers": 4}, {"max_forwards": 20, "max_answer_tokens": 6}, None),
    "w2_qwen3_stop": ("qwen3", {"workers": 2}, {"max_forwards": 20, "stop": ["the"]}, None),
    "w2_forced_calculator": (
        "qwen2",
        {"workers": 2},
        {"max_forwards": 40, "tool_choice": "required"},
        _calculator_tools,
    ),
    "w3_forced_enum_tool": (
        "qwen2",
        {"workers": 3},
        {"max_forwards": 90, "tool_choice": "population"},
        _enum_tools,
    ),
    "w2_return_required": (
        "qwen2",
        {"workers": 2},
        {"max_forwards": 12, "tool_mode": "return", "tool_choice": "required", "max_answer_tokens": 48},
        _schema_tools,
    ),
    "w2_json_answer": (
        "qwen2",
        {"workers": 2},
        {
            "max_forwards": 10,
            "response_format": {
                "type": "object",
                "properties": {"answer": {"type": "integer"}},
                "required": ["answer"],
            },
        },
        None,
    ),
    "w2_plain_sampled_bans": (
        "mistral",
        {"workers": 2, "collaboration": False},
        {"max_forwards": 16, "max_answer_tokens": 64},  # plain: the answer budget bounds Alice too
        None,
    ),
}


def _renumber(result: Any) -> dict[str, Any]:
    trace = result.trace
    order: dict[int, int] = {}

    def rid(block: int) -> int:
        return order.setdefault(block, len(order))

    forwards = []
    for record in trace.forwards:
        forwards.append(
            [
                [g.writer, rid(g.block), list(g.fed), [rid(b) for b in g.view], g.sampled]
                for g in record.groups
            ]
        )
    blocks = {
        str(rid(b.id)): [b.author, b.kind, list(b.token_ids), list(b.written_at)]
        for b in sorted(trace.blocks.values(), key=lambda b: b.id)
        if b.id in order
    }
    return {"forwards": forwards, "blocks": blocks}


def _tool_events(result: Any) -> list[Any]:
    out = []
    for e in result.tool_events:
        e = e if isinstance(e, dict) else e.model_dump()
        out.append([e["worker"], e["name"], e["arguments"], e["content"], e["is_error"]])
    return out


def summarize(result: Any) -> dict[str, Any]:
    """The parts of a result that a behaviour-preserving refactor must keep identical."""
    usage = result.usage
    calls = [
        [c["name"], c["arguments"]] if isinstance(c, dict) else [c.name, c.arguments]
        for c in result.tool_calls
    ]
    return {
        "answer": result.answer,
        "stop_reason": result.stop_reason,
        "workers": [
            [w.name, w.text, list(w.steps), w.generated_tokens, w.stop_reason] for w in result.workers
        ],
        "tool_calls": calls,
        "tool_events": _tool_events(result),
        "usage": [
            usage.prompt_tokens,
            usage.generated_tokens,
            usage.fed_tokens,
            usage.answer_tokens,
            usage.reused_prompt_tokens,
            usage.forwards,
            usage.worker_forwards,
        ],
        **_renumber(result),
    }


def _waiting_executor() -> Any:
    """A tool executor whose calls are done when submitted: their results land at the next forward.

    Calls run concurrently with generation, so when a result lands depends on timing; the recorded runs
    had every (instant) result at the next forward, which this makes certain on a loaded machine too.
    """
    from hogwild_agents.tools import ToolExecutor

    class WaitingExecutor(ToolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            future = super().submit(*args, **kwargs)
            future.result()
            return future

    return WaitingExecutor()


def run_case(name: str, tokenizer: Any, device: str = "cpu") -> dict[str, Any]:
    """Run case ``name`` on a fresh engine; for return-mode cases also the follow-up with tool results."""
    import dataclasses

    from hogwild_agents import HogwildEngine

    family, cfg, options, tools = CASES[name]
    model = tiny_model(family, vocab_size=VOCAB, eos_token_id=EOS).to(device)
    engine = HogwildEngine(model, tokenizer, page_size=8, max_cache_tokens=4096, max_answer_tokens=8, **cfg)
    engine.resources = dataclasses.replace(engine.resources, executor_factory=_waiting_executor)
    tool_list = tools() if tools else None
    result = engine.run(QUESTION, tools=tool_list, **options)
    out = {"first": summarize(result)}
    if result.stop_reason == "tool_calls":
        calls = [
            c if isinstance(c, dict) else {"id": c.id, "name": c.name, "arguments": c.arguments}
            for c in result.tool_calls
        ]
        followup = [
            *QUESTION,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ],
            },
            *[
                {"role": "tool", "tool_call_id": c["id"], "content": "Paris has 2.1 million people."}
                for c in calls
            ],
        ]
        again = engine.run(followup, tools=tool_list, **options)
        out["resumed"] = summarize(again)
    return out
