"""End to end on the real Qwen2.5-Coder-0.5B-Instruct (CPU in CI): collaboration, tools, resume."""

from __future__ import annotations

import pytest

from hogwild_agents import HogwildEngine, StepCommittedEvent, ToolCallFinishedEvent
from hogwild_agents.runner.attention import ATTENTION_NAME
from hogwild_agents.tools.builtins import calculator_tool

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def engine() -> HogwildEngine:
    from hogwild_agents.models.store import DEFAULT_MODEL, cache_root

    if not (cache_root() / "models" / DEFAULT_MODEL / "hogwild-model.json").is_file():
        reason = "the default model is not converted yet (run scripts/setup.sh)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return HogwildEngine.from_pretrained(None, workers=2, dtype="float32", device="cpu")


def test_two_workers_collaborate_on_a_two_part_question(engine: HogwildEngine) -> None:
    events = list(
        engine.stream(
            "Tom has 15 apples and buys 27 more. Then he gives away 12. "
            "How many apples does he have at the end?",
            max_forwards=96,
            max_answer_tokens=48,
        )
    )
    result = events[-1].result
    committed = {e.worker for e in events if isinstance(e, StepCommittedEvent)}
    assert [w.name for w in result.workers] == ["Alice", "Bob"]
    assert all(w.text.startswith(f"**{w.name} [1]:**") for w in result.workers)
    # Both wrote; at least one step was committed (the 0.5B often ends the run with a \\boxed answer in
    # one worker's first step, before the other's step is done).
    assert all(w.generated_tokens > 8 for w in result.workers)
    assert committed, committed
    assert result.answer.strip()
    print("ANSWER:", result.answer, "| stop:", result.stop_reason, "|", result.usage)


def test_calculator_result_reaches_every_worker_and_the_answer(engine: HogwildEngine) -> None:
    events = list(
        engine.stream(
            "What is 12345 * 6789?",
            tools=[calculator_tool()],
            tool_choice="required",
            max_forwards=48,
            max_answer_tokens=32,
        )
    )
    result = events[-1].result
    done = [e for e in events if isinstance(e, ToolCallFinishedEvent)]
    assert done and done[0].content == "83810205" and not done[0].is_error
    ids = engine.tokenizer.encode("83810205", add_special_tokens=False)
    trace = result.trace
    holder, at = next(
        (b, i)
        for b in trace.blocks.values()
        for i in range(len(b.token_ids))
        if b.token_ids[i : i + len(ids)] == ids
    )
    written = holder.written_at[at + len(ids) - 1]
    for name in ("Alice", "Bob"):
        later = [g for f in trace.forwards if f.index > written for g in f.groups if g.writer == name]
        assert later and all(holder.id in g.view for g in later), name
    assert "83810205" in result.answer.replace(",", ""), result.answer


def test_return_mode_resume_encodes_only_the_result(engine: HogwildEngine) -> None:
    messages = [{"role": "user", "content": "Use the calculator to compute 1234 + 4321."}]
    tools = [calculator_tool()]
    first = engine.run(messages, tools=tools, tool_mode="return", tool_choice="required", max_forwards=8)
    assert first.tool_calls and first.tool_calls[0].name == "calculator"
    call = first.tool_calls[0]
    follow = [
        *messages,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "calculator", "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "5555"},
    ]
    second = engine.run(follow, tools=tools, tool_mode="return", tool_choice="required", max_forwards=8)
    assert second.usage.prompt_tokens == 0
    assert second.usage.reused_prompt_tokens == sum(len(b.token_ids) for b in first.trace.blocks.values())
    assert second.usage.fed_tokens <= 40  # only the tool-result turn was encoded
    engine.drop_kept_runs()


def test_one_worker_matches_generate_on_the_real_model(engine: HogwildEngine) -> None:
    """Real weights, float32: W=1 without collaboration gives generate's greedy tokens (the GPU bf16 check is
    bench/real_model_gpu_check.py)."""
    single = HogwildEngine(engine.model, engine.tokenizer, workers=1, collaboration=False, max_forwards=32)
    question = [{"role": "user", "content": "Write a Python function that checks whether a number is prime."}]
    trace = single.run(question).trace
    ours = [g.sampled for f in trace.forwards for g in f.groups if g.writer != "finisher"][:32]
    ids = engine.tokenizer.apply_chat_template(
        question, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    model = engine.model
    model.set_attn_implementation("sdpa")
    try:
        eos = sorted(single.eos_token_ids)
        ref = model.generate(ids, max_new_tokens=32, do_sample=False, eos_token_id=eos, pad_token_id=eos[0])
    finally:
        model.set_attn_implementation(ATTENTION_NAME)
    assert ours == ref[0, ids.shape[1] :].tolist()
