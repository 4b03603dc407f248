"""The vectorized host plan equals its block-by-block specification on random layouts and stores."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from hogwild_agents.cache.layouts import SharedLayoutState, build_view
from hogwild_agents.cache.plan import WriteGroup, build_host_plan, build_host_plan_reference
from hogwild_agents.cache.store import PagedKVStore


def _random_forward(rng: random.Random) -> tuple[PagedKVStore, list[WriteGroup]]:
    page = rng.choice([1, 3, 8, 16])
    store = PagedKVStore(
        num_layers=1, num_pages=4000, page_size=page, num_kv_heads=1, head_dim=2,
        dtype=torch.float32, device=torch.device("cpu"),
    )  # fmt: skip

    def block(author: str, kind: str, n: int) -> int:
        b = store.new_block(author, kind)
        store.reserve(b, [1] * n, 0)
        return b.id

    workers = rng.randint(1, 8)
    state = SharedLayoutState(prompt=block("prompt", "prompt", rng.randint(0, 50)), current=[None] * workers)
    for attr in ("others_header", "separator", "own_header"):
        setattr(state, attr, block("header", attr, rng.randint(0, 5)))
    state.history = [block("x", "step", rng.randint(0, 40)) for _ in range(rng.randint(0, 6))]
    state.current = [block(f"w{w}", "step", rng.randint(0, 30)) for w in range(workers)]
    layout = rng.choice(["combined", "interleaved", "contiguous"])
    groups = []
    for w in rng.sample(range(workers), rng.randint(1, workers)):
        own = state.current[w]
        assert own is not None
        group = WriteGroup(
            f"w{w}",
            own,
            [rng.randint(0, 9) for _ in range(rng.randint(1, 4))],
            build_view(layout, state, w, own),
        )
        group.first_position = store.blocks[own].length
        group.slots = store.reserve(store.blocks[own], group.token_ids, 1)
        groups.append(group)
    return store, groups


@pytest.mark.parametrize("seed", range(6))
def test_vectorized_plan_equals_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        store, groups = _random_forward(rng)
        fast, plain = build_host_plan(store, groups), build_host_plan_reference(store, groups)
        for name in plain.__dataclass_fields__:
            a, b = getattr(fast, name), getattr(plain, name)
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
