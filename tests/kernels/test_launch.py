"""The launch plan (row tiles, splits) and the kernel at large GQA groups with W = 1, 4, 8 workers.

The plan is plain Python (hogwild_kernels/launch.py): its tests run no kernel. The kernel tests pack the
rows of Qwen2.5-7B-like (GQA 7) and Qwen2.5-14B-like (GQA 5) groups into 16-, 32- and 64-row tiles, at tiny
head_dim, under the Triton interpreter on CPU.
"""

from __future__ import annotations

import pytest
import torch
from hogwild_kernels import shifted_attention_reference
from hogwild_kernels.launch import LaunchConfig, plan_launch
from hogwild_kernels.metadata import with_shift_table
from hogwild_kernels.triton_attention import shifted_attention_triton
from metadata_factory import brute_force_attention, combined_layout_views, random_case

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
H200_SMS = 132


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(
    ("gqa", "workers", "block_m"),
    [(7, 1, 16), (7, 2, 16), (7, 4, 32), (7, 8, 64), (5, 4, 32), (5, 8, 64), (4, 16, 64)],
)
def test_every_row_of_a_kv_head_in_one_program_up_to_64(gqa, workers, block_m):
    """W x GQA rows share one program per KV head (each KV tile read once) until they pass 64."""
    plan = plan_launch(64, 512, workers * gqa, 4, H200_SMS, LaunchConfig())
    assert plan.block_m == block_m
    assert plan.m_tiles == max(1, -(-workers * gqa // 64))


@pytest.mark.parametrize("rows", [5, 7, 20, 28, 40, 56, 64, 100])
@pytest.mark.parametrize("kv_heads", [4, 8])
@pytest.mark.parametrize("entries", [64, 256, 512, 1000])
def test_grid_never_passes_the_wave_target(rows, kv_heads, entries):
    """Splits x programs stays at or under waves x SMs (a few programs over would add a tail wave)."""
    cfg = LaunchConfig()
    plan = plan_launch(64, entries, rows, kv_heads, H200_SMS, cfg)
    programs = kv_heads * plan.m_tiles * plan.splits
    assert programs <= cfg.waves * H200_SMS
    assert plan.splits * plan.tiles_per_split >= plan.num_tiles > (plan.splits - 1) * plan.tiles_per_split


def test_more_rows_on_a_short_cache_take_fewer_splits():
    """Split-K partials (fp32 [rows, D] per split) are bounded against the KV bytes a split reads."""
    cfg = LaunchConfig()
    few = plan_launch(64, 64, 7, 4, H200_SMS, cfg)  # Qwen2.5-7B 4k, W=1
    many = plan_launch(64, 64, 56, 4, H200_SMS, cfg)  # the same cache, W=8
    assert many.splits < few.splits
    assert 56 / (many.tiles_per_split * many.block_n) <= cfg.max_partial_ratio
    unbounded = plan_launch(64, 64, 56, 4, H200_SMS, LaunchConfig(max_partial_ratio=None))
    assert unbounded.splits == few.splits


# ----------------------------------------------------------------------------------------------------
# The kernel at the row tiles above (interpreter on CPU).


def _case(gqa: int, workers: int, *, shuffle: bool, seed: int):
    kinds, views = combined_layout_views(workers)
    lens = {"history": 70, "header": 9, "step": 12, "own_header": 4}
    return random_case(
        [lens[k] for k in kinds],
        views,
        [1] * workers,
        page_size=16,
        kv_heads=1,
        gqa=gqa,
        head_dim=16,
        device=DEVICE,
        seed=seed,
        invisible_entries=1,
        shuffle_entries=shuffle,
    )


@pytest.mark.parametrize("on_change", [True, False])
@pytest.mark.parametrize("shuffle", [False, True], ids=["block-order", "shuffled"])
@pytest.mark.parametrize(("gqa", "workers"), [(7, 1), (7, 4), (5, 8)])
def test_large_gqa_groups_with_several_workers(gqa, workers, shuffle, on_change):
    """Rows 7 / 28 / 40 in 16 / 32 / 64-row tiles; entries in block order (the engine's) or shuffled."""
    case = _case(gqa, workers, shuffle=shuffle, seed=gqa * 10 + workers)
    case.meta = with_shift_table(case.meta, case.inv_freq)
    out = shifted_attention_triton(
        *case.args(), config=LaunchConfig(num_splits=3, rotate_on_change=on_change)
    )
    torch.testing.assert_close(out, shifted_attention_reference(*case.args()), atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(out.double(), brute_force_attention(case), atol=2e-5, rtol=2e-5)


def test_rotation_on_change_without_the_table_and_with_split_boundaries_inside_blocks():
    """sin/cos in the kernel; splits that start mid-block must rotate at their first tile."""
    case = _case(7, 4, shuffle=False, seed=3)
    for splits in (1, 2, 5, 7):
        out = shifted_attention_triton(*case.args(), config=LaunchConfig(num_splits=splits))
        torch.testing.assert_close(out, shifted_attention_reference(*case.args()), atol=2e-5, rtol=2e-5)
