"""hogwild_agents.evaluation: seeded tasks, strict scoring, the harness end to end, and ``hogwild eval``.

The end-to-end tests use a tiny random Qwen2 with the real tokenizer: it cannot answer, so every accuracy
must come out 0.0. A stub engine that returns a fixed answer checks the harness can also score a success.
"""

import json
import re

import pytest
from tiny_models import tiny_model

from hogwild_agents import HogwildEngine
from hogwild_agents.api.results import RunResult, Usage, WorkerResult
from hogwild_agents.evaluation import (
    FINISHER_REQUEST,
    EvalSetup,
    extract_boxed,
    make_tasks,
    markdown_table,
    plot_accuracy,
    run_eval,
    run_one,
    score_answer,
    standard_setups,
    summarize,
)
from hogwild_agents.evaluation.tasks import affine_tasks, arithmetic_tasks, lookup_table, tool_tasks
from hogwild_agents.text.prompts import render_prompt


# ---------------------------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("family", ["arithmetic", "affine", "tool"])
def test_tasks_are_seeded_and_reproducible(family):
    a = make_tasks(family, n=3, seed=5, k=3, delay_s=0.0)
    b = make_tasks(family, n=3, seed=5, k=3, delay_s=0.0)
    c = make_tasks(family, n=3, seed=6, k=3, delay_s=0.0)
    assert a == b
    assert [t.prompt for t in a] != [t.prompt for t in c]
    assert len({t.id for t in a}) == 3
    assert all(len(t.expected) == 3 and "\\boxed{a1, a2, a3}" in t.prompt for t in a)


def test_arithmetic_answers_match_the_problems():
    for task in arithmetic_tasks(n=5, seed=1, k=4):
        lines = re.findall(r"^\d+\. (.*)$", task.prompt, flags=re.M)
        assert len(lines) == 4
        for line, want in zip(lines, task.expected, strict=True):
            nums = [int(x) for x in re.findall(r"\d+", line)]
            if "gets" in line:
                assert want == nums[0] + nums[1]
            elif "gives away" in line:
                assert want == nums[0] - nums[1]
            else:
                assert want == nums[0] + nums[1] - nums[2]
            assert want >= 0


def test_affine_answers_match_the_function():
    for task in affine_tasks(n=4, seed=2, k=3):
        a, sign, b = re.search(r"f\(x\) = (\d+)\*x ([+-]) (\d+)", task.prompt).groups()
        xs = [int(x) for x in re.search(r"\[(.*?)\]", task.prompt).group(1).split(",")]
        offset = int(b) if sign == "+" else -int(b)
        assert task.expected == tuple(int(a) * x + offset for x in xs)


def test_tool_tasks_need_the_lookup_tool():
    task = tool_tasks(n=1, seed=3, k=2, delay_s=0.0)[0]
    table = lookup_table(3)
    keys = re.findall(r'key "(\w+)" plus (\d+)', task.prompt)
    assert task.expected == tuple(table[k] + int(c) for k, c in keys)
    (tool,) = task.tools()
    assert tool.name == "lookup"
    assert tool.func(key=keys[0][0]) == str(table[keys[0][0]])
    assert "unknown key" in tool.func(key="nope")
    assert make_tasks("arithmetic", 1, 0)[0].tools() == []


def test_bad_task_requests_raise():
    with pytest.raises(ValueError, match="unknown task family"):
        make_tasks("gsm8k", 1, 0)
    with pytest.raises(ValueError, match="n >= 1"):
        make_tasks("affine", 0, 0)


# ---------------------------------------------------------------------------------------------- scoring
@pytest.mark.parametrize(
    ("answer", "correct", "boxed"),
    [
        ("The answers are \\boxed{12, 7, 30}.", 3, True),  # correct
        ("\\boxed{13, 8, 31}", 0, True),  # all wrong
        ("\\boxed{12, 8, 30}", 2, True),  # partial: per question
        ("\\boxed{12, 7}", 2, True),  # a missing item is wrong
        ("\\boxed{a1 = 12; a2 = 7; a3 = 30}", 3, True),  # last number of each item, ';' separators
        ("\\boxed{12, seven, 30}", 2, True),  # a word is not a number
        ("\\boxed{12, 7, 30", 0, False),  # malformed: never closed
        ("boxed{12, 7, 30}", 0, False),  # malformed: no backslash
        ("12, 7, 30", 0, False),  # missing box: the right numbers do not count
        ("", 0, False),
        ("\\boxed{1, 2, 3} no wait \\boxed{12, 7, 30}", 3, True),  # the last complete box counts
        ("\\boxed{12, 7, 30} \\boxed{0, 0, 0}", 0, True),
        ("\\boxed{12.0, 7, -30}", 2, True),  # 12.0 == 12; the sign matters
    ],
)
def test_score_answer(answer, correct, boxed):
    score = score_answer(answer, (12, 7, 30))
    assert (score.correct, score.total, score.boxed) == (correct, 3, boxed)
    assert score.fraction == pytest.approx(correct / 3)
    assert sum(score.items) == correct


def test_extract_boxed_balances_braces():
    assert extract_boxed("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{1} and \\boxed{2") == "1"
    assert extract_boxed("nothing") is None


def test_negative_expected_values_score():
    assert score_answer("\\boxed{-3, 5}", (-3, 5)).correct == 2
    assert score_answer("\\boxed{3, 5}", (-3, 5)).correct == 1


def test_self_consistency_uses_the_engines_finisher_request(qwen_tokenizer):
    texts = render_prompt(
        qwen_tokenizer, [{"role": "user", "content": "hi"}], names=["A"], collaboration=False
    )
    assert FINISHER_REQUEST in texts.finisher


# ---------------------------------------------------------------------------------------------- setups
def test_standard_setups():
    names = [s.name for s in standard_setups((1, 2, 4), ("combined", "contiguous", "interleaved"), 2)]
    assert names == [
        "W=1 baseline",
        "W=2 combined",
        "W=4 combined",
        "W=2 contiguous",
        "W=2 interleaved",
        "SC x2",
    ]
    assert [s.name for s in standard_setups((1,), (), 0)] == ["W=1 baseline"]
    with pytest.raises(ValueError, match="2 chains"):
        standard_setups((1,), (), 1)
    with pytest.raises(ValueError, match=">= 1"):
        standard_setups((0,), (), 0)


class _StubEngine:
    """Returns a fixed answer; records the overrides of each call."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def run(self, messages, *, tools=None, **overrides):
        self.calls.append((messages, overrides))
        worker = WorkerResult(name="Alice", text="thinking")
        return RunResult(
            answer=self.answer, workers=[worker], stop_reason="all_stopped", usage=Usage(worker_forwards=5)
        )


def test_harness_scores_a_right_and_a_wrong_answer():
    task = make_tasks("arithmetic", n=1, seed=0, k=2)[0]
    right = "\\boxed{" + ", ".join(map(str, task.expected)) + "}"
    wrong = "\\boxed{" + ", ".join(str(v + 1) for v in task.expected) + "}"
    assert run_one(_StubEngine(right), task, EvalSetup("hogwild", 2), 8).accuracy == 1.0
    assert run_one(_StubEngine(wrong), task, EvalSetup("hogwild", 2), 8).accuracy == 0.0
    half = "\\boxed{" + f"{task.expected[0]}, {task.expected[1] + 1}" + "}"
    assert run_one(_StubEngine(half), task, EvalSetup("baseline"), 8).accuracy == 0.5


def test_self_consistency_runs_chains_then_one_final_generation():
    task = make_tasks("affine", n=1, seed=0, k=2)[0]
    engine = _StubEngine("\\boxed{0, 0}")
    record = run_one(engine, task, EvalSetup("self_consistency", 2), 16, max_answer_tokens=32)
    assert len(engine.calls) == 3
    (_, c1), (_, c2), (final_msgs, final) = engine.calls
    assert c1["max_forwards"] == c2["max_forwards"] == 16 and c1["seed"] != c2["seed"]
    assert c1["collaboration"] is False and c1["finisher"] is False and c1["temperature"] > 0
    assert [m["role"] for m in final_msgs] == ["user", "assistant", "user"]
    assert "Attempt 1:" in final_msgs[1]["content"] and "Attempt 2:" in final_msgs[1]["content"]
    assert final_msgs[2]["content"] == FINISHER_REQUEST
    assert final["max_forwards"] == 32 and final["temperature"] == 0.0
    assert record.forwards == 5 and record.setup == "SC x2"


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_engine(qwen_tokenizer):
    model = tiny_model("qwen2", vocab_size=len(qwen_tokenizer))
    return HogwildEngine(model, qwen_tokenizer, max_cache_tokens=4096)


def test_harness_end_to_end_on_a_random_model_scores_zero(tiny_engine, tmp_path):
    tasks = make_tasks("arithmetic", n=1, seed=0, k=2) + make_tasks("tool", n=1, seed=0, k=1, delay_s=0.0)
    setups = standard_setups((1, 2), (), 2)
    records = run_eval(tiny_engine, tasks, setups, [3], max_answer_tokens=4, show_progress=False)
    assert len(records) == len(tasks) * len(setups)
    assert all(r.accuracy == 0.0 for r in records), [r.answer for r in records]
    assert all(1 <= r.forwards <= 3 for r in records)
    rows = summarize(records)
    assert {(r.family, r.setup) for r in rows} == {(t.family, s.name) for t in tasks for s in setups}
    assert all(r.accuracy == 0.0 and r.wall_time_correct_s is None for r in rows)
    table = markdown_table(rows)
    assert table.count("\n") == 2 + len(rows) and "| arithmetic | W=2 combined | 3 | 1 | 0.000 |" in table
    png = plot_accuracy(rows, tmp_path / "acc.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_eval_writes_the_files(qwen_tokenizer, tmp_path, capsys):
    from hogwild_agents.models.testing import TINY_TEST_MODEL
    from hogwild_agents.ui import cli

    out, log = tmp_path / "eval", tmp_path / "RESULTS.md"
    log.write_text("# results\n")
    argv = [
        "eval", "--model", TINY_TEST_MODEL, "--tasks", "arithmetic", "--workers", "1,2", "--budgets", "2",
        "--seeds", "0", "--n", "1", "--k", "2", "--max-answer-tokens", "3", "--out", str(out),
        "--results-md", str(log), "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    payload = json.loads((out / "results.json").read_text())
    assert [r["setup"] for r in payload["summary"]] == ["W=1 baseline", "W=2 combined"]
    assert all(r["accuracy"] == 0.0 for r in payload["records"])
    assert payload["meta"]["command"].startswith("hogwild eval --model")
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    partial = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert partial == payload["records"]  # every run was saved as it finished
    text = log.read_text()
    assert text.startswith("# results\n") and "## Evaluation (hogwild eval)" in text
    assert "| arithmetic | W=1 baseline | 2 | 1 | 0.000 |" in text and "machine=" in text
    assert "W=2 combined" in capsys.readouterr().out


def test_cli_eval_rejects_bad_options(capsys):
    from hogwild_agents.ui import cli

    with pytest.raises(SystemExit):
        cli.main(["eval", "--tasks", "gsm8k"])
    assert "unknown" in capsys.readouterr().err
