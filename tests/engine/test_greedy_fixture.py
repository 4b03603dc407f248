"""Behaviour pin: the engine's greedy runs equal the ones recorded before the engine-core refactor.

``fixtures/greedy_runs.json`` was written by ``fixtures/record_greedy_runs.py`` on the code before the core
was rebuilt (issue 13). Every case compares tokens fed and sampled per forward, views, blocks, answers,
worker texts, tool events and usage counts. A deliberate behaviour change re-records the fixture in its
own commit, saying why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from greedy_cases import CASES, run_case

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "greedy_runs.json").read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_greedy_run_matches_the_recorded_one(qwen_tokenizer, name: str) -> None:
    got = json.loads(json.dumps(run_case(name, qwen_tokenizer)))
    want = RECORDED[name]
    assert got.keys() == want.keys()
    for phase in want:
        for key in want[phase]:
            assert got[phase][key] == want[phase][key], f"{name}/{phase}: {key} differs"
