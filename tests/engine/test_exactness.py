"""Exactness: the engine's logits equal a plain reference that materialises each worker's view."""

from __future__ import annotations

import pytest
import torch
from reference_replay import ReferenceReplayer, ReplayGroup
from tiny_models import FAMILIES, tiny_model, twin_with_eager_attention

from hogwild_agents.cache.layouts import SharedLayoutState, build_view
from hogwild_agents.cache.plan import WriteGroup
from hogwild_agents.runner.runner import ModelRunner

TOL = 1e-4


class Scenario:
    """Drives the runner and the reference through the same forwards (chunks, decodes, commits)."""

    def __init__(self, family: str, workers: int, layout: str, page_size: int = 4):
        self.model = tiny_model(family)
        self.ref = ReferenceReplayer(twin_with_eager_attention(self.model))
        self.runner = ModelRunner(self.model, page_size=page_size, max_cache_tokens=2048)
        self.store = self.runner.store
        self.layout = layout
        self.workers = workers
        self.forward_index = 0
        self.gen = torch.Generator().manual_seed(workers)

    def tokens(self, n: int) -> list[int]:
        return torch.randint(0, 512, (n,), generator=self.gen).tolist()

    def step(self, groups: list[tuple[str, int, list[int], list[int]]]) -> float:
        ours = self.runner.forward(
            [WriteGroup(w, b, toks, view) for w, b, toks, view in groups], self.forward_index, all_logits=True
        )
        theirs = self.ref.forward([ReplayGroup(b, toks, view) for _, b, toks, view in groups])
        self.forward_index += 1
        return (ours - theirs).abs().max().item()

    def run(self) -> float:
        s = self.store
        prompt = s.new_block("prompt", "prompt").id
        state = SharedLayoutState(prompt=prompt, current=[None] * self.workers)
        state.others_header = s.new_block("header", "h").id
        state.separator = s.new_block("header", "sep").id
        state.own_header = s.new_block("header", "own").id
        worst = self.step(
            [("prompt", prompt, self.tokens(9), [prompt])]
            + [
                ("header", b, self.tokens(2 + i), [prompt, b])
                for i, b in enumerate((state.others_header, state.separator, state.own_header))
            ]
        )
        for w in range(self.workers):
            state.current[w] = s.new_block(f"w{w}", "step").id

        def views(chunk: dict[int, int]) -> list[tuple[str, int, list[int], list[int]]]:
            return [
                (
                    f"w{w}",
                    state.current[w],
                    self.tokens(chunk.get(w, 1)),
                    build_view(self.layout, state, w, state.current[w]),
                )
                for w in range(self.workers)
            ]

        worst = max(worst, self.step(views({w: 1 + w % 3 for w in range(self.workers)})))  # ragged chunks
        for _ in range(3):
            worst = max(worst, self.step(views({})))  # decode
        for committer in range(min(2, self.workers)):
            if self.layout != "contiguous":
                state.history.append(state.current[committer])
                state.current[committer] = s.new_block(f"w{committer}", "step").id
            worst = max(worst, self.step(views({committer: 3})))  # new step header + decodes of the others
            for _ in range(2):
                worst = max(worst, self.step(views({})))
        finisher = s.new_block("finisher", "finisher").id
        fin_view = build_view("combined", state, None, finisher, with_own_header=False)
        worst = max(worst, self.step([("finisher", finisher, self.tokens(4), fin_view)]))
        return worst


@pytest.mark.parametrize("layout", ["combined", "interleaved", "contiguous"])
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_plain_reference(family: str, workers: int, layout: str) -> None:
    worst = Scenario(family, workers, layout).run()
    assert worst <= TOL, f"{family} W={workers} {layout}: max |Δlogit| = {worst:.2e}"


def test_commit_moves_references_not_bytes() -> None:
    sc = Scenario("qwen2", 2, "combined")
    s = sc.store
    prompt = s.new_block("prompt", "prompt").id
    state = SharedLayoutState(
        prompt=prompt, current=[s.new_block("a", "step").id, s.new_block("b", "step").id]
    )
    sc.step([("prompt", prompt, sc.tokens(6), [prompt])])
    for _ in range(3):
        sc.step(
            [
                (f"w{w}", state.current[w], sc.tokens(2), build_view("combined", state, w, state.current[w]))
                for w in range(2)
            ]
        )
    committed = state.current[0]
    pages = list(s.blocks[committed].pages)
    before_k = s.key_pages[:, pages].clone()
    before_v = s.value_pages[:, pages].clone()
    state.history.append(committed)
    state.current[0] = s.new_block("a", "step").id
    for _ in range(3):
        sc.step(
            [
                (f"w{w}", state.current[w], sc.tokens(1), build_view("combined", state, w, state.current[w]))
                for w in range(2)
            ]
        )
    assert s.blocks[committed].pages == pages
    assert torch.equal(s.key_pages[:, pages], before_k)
    assert torch.equal(s.value_pages[:, pages], before_v)
    # and the commit changed what the other worker sees: the block now sits in the history
    assert build_view("combined", state, 1, state.current[1]).index(committed) == 1
