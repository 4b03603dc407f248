"""Every page size the config accepts (1..1024) on the Triton path, against the reference and float64.

Tiles are powers of two of at most 64 keys, decoupled from the page size (hogwild_kernels/launch.py): a page
is one or several tiles, and the slots past its size are masked. On CPU the kernel runs in the Triton
interpreter (tests/conftest.py), so the shapes stay tiny: head_dim 16, two KV heads, three workers.
"""

from __future__ import annotations

import pytest
import torch
from hogwild_kernels import shifted_attention_reference
from hogwild_kernels.launch import LaunchConfig, default_block_n, plan_launch
from hogwild_kernels.metadata import with_shift_table
from hogwild_kernels.triton_attention import shifted_attention_triton
from metadata_factory import brute_force_attention, combined_layout_views, random_case

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = dict(atol=2e-5, rtol=2e-5)  # float32: the interpreter's dots are exact fp32

# the sizes the issue names: below a tile, odd ones from 17 to 63, around and over 64, the config's maximum
PAGE_SIZES = [1, 3, 8, 16, 17, 24, 31, 48, 63, 64, 65, 96, 100, 128, 192, 1000, 1024]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _case(page_size: int, *, workers: int = 3, queries=None, gqa: int = 3, seed: int = 0):
    """Combined layout whose history fills one and a half pages (so a last page is partly filled)."""
    kinds, views = combined_layout_views(workers)
    lens = {"history": page_size + page_size // 2 + 2, "header": 5, "step": 13, "own_header": 3}
    return random_case(
        [lens[k] for k in kinds],
        views,
        queries or [1] * workers,
        page_size=page_size,
        kv_heads=2,
        gqa=gqa,
        head_dim=16,
        device=DEVICE,
        seed=seed,
        invisible_entries=1,
    )


def _check(case, config: LaunchConfig) -> None:
    out = shifted_attention_triton(*case.args(), config=config)
    ref = shifted_attention_reference(*case.args())
    assert torch.isfinite(out).all()  # unfilled slots and unseen pages hold NaN: none may leak
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(out.double(), brute_force_attention(case), **TOL)


@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_decode_every_page_size(page_size):
    """One query per worker, GQA 3, the cos/sin table, three splits (partials and the merge)."""
    case = _case(page_size, seed=page_size)
    case.meta = with_shift_table(case.meta, case.inv_freq)
    _check(case, LaunchConfig(num_splits=3))


@pytest.mark.parametrize("page_size", [3, 17, 48, 65, 100, 1000])
def test_chunk_queries_every_page_size(page_size):
    """Several queries per worker (causal inside the own block; live_mode 2 skips unseen tiles)."""
    case = _case(page_size, queries=[2, 5, 1], gqa=2, seed=100 + page_size)
    _check(case, LaunchConfig(num_splits=2))


@pytest.mark.parametrize(("page_size", "block_n"), [(24, 16), (100, 32), (65, 16), (8, 64)])
def test_explicit_tile_smaller_or_larger_than_the_page(page_size, block_n):
    """A forced tile size that does not divide the page (several tiles per page, a padded last one)."""
    case = _case(page_size, workers=2, seed=200 + page_size)
    _check(case, LaunchConfig(num_splits=2, block_n=block_n, rotate_on_change=False))


@pytest.mark.slow
@pytest.mark.parametrize(("page_size", "workers"), [(1, 1), (31, 5), (96, 5), (192, 1), (1024, 1)])
def test_decode_page_sizes_more_workers_and_no_table(page_size, workers):
    """Slow: one and five workers, sin/cos in the kernel (no table), rotation every tile and on change."""
    case = _case(page_size, workers=workers, gqa=4, seed=300 + page_size)
    _check(case, LaunchConfig(num_splits=2, rotate_on_change=False))
    _check(case, LaunchConfig(num_splits=4))


# ----------------------------------------------------------------------------------------------------
# The launch plan for page sizes: host ints only, no kernel run.


@pytest.mark.parametrize(
    ("page_size", "block_n", "tiles_per_page"),
    [(1, 16, 1), (8, 16, 1), (16, 16, 1), (17, 32, 1), (32, 32, 1), (48, 64, 1), (64, 64, 1), (65, 64, 2)]
    + [(100, 64, 2), (128, 64, 2), (192, 64, 3), (1000, 64, 16), (1024, 64, 16)],
)
def test_tiles_per_page(page_size, block_n, tiles_per_page):
    """16, 32, 64 and multiples of 64 keep the tiles they had (full tiles, no added masking work)."""
    plan = plan_launch(page_size, 10, 7, 4, 132, LaunchConfig())
    assert default_block_n(page_size) == block_n == plan.block_n
    assert plan.tiles_per_page == tiles_per_page and plan.num_tiles == 10 * tiles_per_page


@pytest.mark.parametrize("block_n", [0, 8, 48, 100])
def test_block_n_must_be_a_power_of_two_of_at_least_16(block_n):
    with pytest.raises(ValueError, match="power of two >= 16"):
        plan_launch(64, 10, 7, 4, 132, LaunchConfig(block_n=block_n))


# ----------------------------------------------------------------------------------------------------
# CUDA only: compiled kernel, bf16, a Qwen2.5-7B-like shape (28 query / 4 KV heads, head_dim 128).

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (compiled Triton)")


def _qwen7b_case(page_size: int, workers: int, seed: int = 0):
    kinds, views = combined_layout_views(workers)
    lens = {"history": 3000, "header": 12, "step": 150, "own_header": 6}
    return random_case(
        [lens[k] for k in kinds],
        views,
        [1] * workers,
        page_size=page_size,
        kv_heads=4,
        gqa=7,
        head_dim=128,
        dtype=torch.bfloat16,
        device="cuda",
        seed=seed,
    )


@needs_cuda
@pytest.mark.parametrize("page_size", [16, 17, 48, 64, 100, 192, 1000])
@pytest.mark.parametrize("workers", [1, 4])
def test_compiled_bf16_error_vs_float64_at_most_twice_the_reference(page_size, workers):
    """||triton - f64|| <= 2 ||reference(bf16) - f64||, for page sizes the old kernel refused."""
    case = _qwen7b_case(page_size, workers, seed=page_size)
    case.meta = with_shift_table(case.meta, case.inv_freq)
    truth = brute_force_attention(case)
    out = shifted_attention_triton(*case.args()).double()
    ref = shifted_attention_reference(*case.args()).double()
    assert torch.isfinite(out).all()
    assert (out - truth).norm() <= 2 * (ref - truth).norm()


@needs_cuda
@pytest.mark.parametrize("page_size", [24, 100])
def test_cuda_graph_replay_with_an_odd_page_size(page_size):
    """The launch depends on shapes only: captured once, replayed with new metadata values."""
    first, second = _qwen7b_case(page_size, 4, seed=1), _qwen7b_case(page_size, 4, seed=2)
    from hogwild_kernels.triton_attention import AttentionWorkspace

    ws = AttentionWorkspace()
    shifted_attention_triton(*first.args(), workspace=ws)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = shifted_attention_triton(*first.args(), workspace=ws)
    for case in (first, second):
        for name in ("page_ids", "page_len", "entry_pos", "entry_shift", "query_group", "query_pos"):
            getattr(first.meta, name).copy_(getattr(case.meta, name))
        first.query.copy_(case.query)
        first.key_pages.copy_(case.key_pages)
        first.value_pages.copy_(case.value_pages)
        graph.replay()
        torch.cuda.synchronize()
        torch.testing.assert_close(out, shifted_attention_reference(*first.args()), atol=2e-2, rtol=2e-2)
