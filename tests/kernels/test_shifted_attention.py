"""The Triton kernel against the PyTorch reference (and the float64 brute force).

On CPU the kernel runs in the Triton interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so shapes
stay tiny; on CUDA the same tests run compiled, plus accuracy and CUDA-graph tests at benchmark shapes.
"""

from __future__ import annotations

import pytest
import torch
from hogwild_kernels import ShiftedAttentionMetadata, shifted_attention_reference
from hogwild_kernels.metadata import with_shift_table
from hogwild_kernels.triton_attention import AttentionWorkspace, LaunchConfig, shifted_attention_triton
from metadata_factory import brute_force_attention, combined_layout_views, random_case

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (compiled Triton, benchmark shapes)")

TOL = {
    torch.float32: dict(atol=2e-5, rtol=2e-5),
    torch.float16: dict(atol=3e-3, rtol=3e-3),
    torch.bfloat16: dict(atol=2e-2, rtol=2e-2),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _combined(workers, *, history=37, header=5, step=11, own_header=3, queries=None, **kw):
    kinds, views = combined_layout_views(workers)
    lens = {"history": history, "header": header, "step": step, "own_header": own_header}
    queries = queries or [1] * workers
    return random_case([lens[k] for k in kinds], views, queries, device=DEVICE, **kw)


def _check(case, config=None, *, dtype=None, against_brute_force=True):
    out = shifted_attention_triton(*case.args(), config=config)
    ref = shifted_attention_reference(*case.args())
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert torch.isfinite(out).all()
    tol = TOL[dtype or case.query.dtype]
    torch.testing.assert_close(out, ref, **tol)
    if against_brute_force:
        torch.testing.assert_close(out.double(), brute_force_attention(case), **tol)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("workers", [1, 3])
def test_decode_combined_layout(dtype, workers):
    """One query per worker; shared history/header pages, own headers visible to one worker only."""
    case = _combined(workers, dtype=dtype, gqa=3, rotary_dim=24, seed=workers, invisible_entries=2)
    _check(case, LaunchConfig(num_splits=3))


@pytest.mark.parametrize("table", [False, True])
@pytest.mark.parametrize("on_change", [False, True])
def test_rotation_every_tile_or_on_change_give_the_same_result(on_change, table):
    """Rotation every tile, or kept in registers until a row's shift changes (entries shuffled: often)."""
    case = _combined(3, gqa=2, rotary_dim=16, seed=21, invisible_entries=1)
    if table:
        case.meta = with_shift_table(case.meta, case.inv_freq)
    _check(case, LaunchConfig(num_splits=3, rotate_on_change=on_change))


@pytest.mark.parametrize("gqa", [1, 4])
def test_gqa_ratios(gqa):
    case = _combined(2, gqa=gqa, kv_heads=2, seed=10 + gqa)
    _check(case, LaunchConfig(num_splits=2))


@pytest.mark.parametrize("live_mode", [1, 2])
def test_ragged_chunks_with_causal_own_block(live_mode):
    """Several queries per group (1, 4, 0, 6): causal masking applies inside each own block only."""
    case = _combined(4, step=13, queries=[1, 4, 0, 6], seed=3, rotary_dim=16)
    _check(case, LaunchConfig(num_splits=2, live_mode=live_mode))


def test_page_repeated_in_one_view():
    """A separator block appearing twice in a view is two entries with different positions and shifts."""
    lengths = [19, 4, 9, 7, 6]
    views = [[0, 1, 2, 1, 3], [1, 0, 1, 2, 4]]
    case = random_case(lengths, views, [2, 1], device=DEVICE, seed=5)
    _check(case, LaunchConfig(num_splits=3))


def test_fully_masked_splits_and_a_blind_group():
    """Many splits over mostly invisible entries; a group that sees nothing gets zeros."""
    case = _combined(3, seed=7, invisible_entries=9)
    case.meta.entry_pos[1] = -1  # group 1 sees nothing at all
    out = _check(case, LaunchConfig(num_splits=16), against_brute_force=False)
    blind = case.meta.query_group == 1
    assert blind.any() and (out[blind] == 0).all()


def test_single_worker_single_block():
    case = random_case([23], [[0]], [1], device=DEVICE, seed=8)
    _check(case)


@pytest.mark.parametrize(("head_dim", "rotary_dim"), [(24, 24), (16, 8), (40, 32)])
def test_odd_head_dims_and_partial_rotary(head_dim, rotary_dim):
    case = _combined(2, head_dim=head_dim, rotary_dim=rotary_dim, seed=head_dim)
    _check(case, LaunchConfig(num_splits=2))


@pytest.mark.parametrize(("page_size", "block_n"), [(4, None), (16, None), (32, 16)])
def test_page_sizes(page_size, block_n):
    """Pages smaller than a tile (padded to 16 keys), equal to it, and split into several tiles."""
    case = _combined(2, page_size=page_size, history=45, seed=page_size)
    _check(case, LaunchConfig(num_splits=2, block_n=block_n))


def test_prefill_tiles_over_queries():
    """A long chunk (prefill) spans several M tiles; causal tiles beyond a query tile are skipped."""
    case = random_case([9, 150], [[0, 1]], [150], page_size=16, gqa=2, device=DEVICE, seed=11)
    _check(case)
    _check(case, LaunchConfig(num_splits=3, live_mode=2))


def _padded(meta: ShiftedAttentionMetadata, extra: int) -> ShiftedAttentionMetadata:
    """``meta`` with ``extra`` padding entries (invisible to all) and the live-entry count set."""
    g, e = meta.entry_pos.shape
    dev = meta.page_ids.device

    def grow(x: torch.Tensor, fill: int) -> torch.Tensor:
        pad = torch.full((*x.shape[:-1], extra), fill, dtype=x.dtype, device=dev)
        return torch.cat([x, pad], dim=-1)

    return ShiftedAttentionMetadata(
        page_ids=grow(meta.page_ids, 0),
        page_len=grow(meta.page_len, 1),
        entry_pos=grow(meta.entry_pos, -1),
        entry_shift=grow(meta.entry_shift, 0),
        query_group=meta.query_group,
        query_pos=meta.query_pos,
        group_query_start=meta.group_query_start,
        max_queries_per_group=meta.max_queries_per_group,
        num_live_entries=torch.tensor([e], dtype=torch.int32, device=dev),
    )


@pytest.mark.parametrize("splits", [1, 3, 8])
@pytest.mark.parametrize("table", [False, True])
def test_shift_table_and_padded_entry_capacity(splits, table):
    """The per-forward cos/sin table and a padded entry capacity (CUDA-graph buckets) change nothing."""
    case = _combined(3, gqa=2, rotary_dim=16, seed=31, invisible_entries=1)
    ref = shifted_attention_reference(*case.args())
    meta = _padded(case.meta, extra=7)
    if table:
        meta = with_shift_table(meta, case.inv_freq)
    args = (case.query, case.key_pages, case.value_pages, meta, case.inv_freq, case.scale)
    out = shifted_attention_triton(*args, config=LaunchConfig(num_splits=splits))
    torch.testing.assert_close(out, ref, **TOL[case.query.dtype])
    torch.testing.assert_close(shifted_attention_reference(*args), ref, **TOL[case.query.dtype])


@pytest.mark.parametrize("max_block_m", [16, 32])
def test_rows_split_over_programs(max_block_m):
    """More query rows than ``max_block_m``: several programs per KV head read the same tiles."""
    case = _combined(5, gqa=4, rotary_dim=16, seed=41)
    _check(case, LaunchConfig(num_splits=2, max_block_m=max_block_m))


def test_workspace_reuse_matches_fresh_buffers():
    case = _combined(3, seed=12)
    ws = AttentionWorkspace()
    cfg = LaunchConfig(num_splits=3)
    first = shifted_attention_triton(*case.args(), workspace=ws, config=cfg)
    second = shifted_attention_triton(*case.args(), workspace=ws, config=cfg)
    fresh = shifted_attention_triton(*case.args(), config=cfg)
    assert torch.equal(first, second) and torch.equal(first, fresh)


def test_rejects_mismatched_dtypes():
    case = _combined(1, seed=13)
    with pytest.raises(ValueError, match="share a dtype"):
        shifted_attention_triton(case.query, case.key_pages.half(), *case.args()[2:])


# ----------------------------------------------------------------------------------------------------
# CUDA only: benchmark shapes, accuracy against float64, CUDA-graph capture.


def _bench_case(kv_heads, gqa, workers, history, dtype, seed=0):
    kinds, views = combined_layout_views(workers)
    lens = {"history": history, "header": 12, "step": 200, "own_header": 6}
    return random_case(
        [lens[k] for k in kinds],
        views,
        [1] * workers,
        page_size=64,
        kv_heads=kv_heads,
        gqa=gqa,
        head_dim=128,
        dtype=dtype,
        device="cuda",
        seed=seed,
    )


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("kv_heads", "gqa", "workers"),
    [(8, 5, 4), (4, 7, 8), (8, 4, 1)],
    ids=["qwen14b-w4", "qwen7b-w8", "llama-w1"],
)
def test_error_vs_float64_at_most_twice_the_reference(dtype, kv_heads, gqa, workers):
    """G6: ||triton - f64|| <= 2 * ||reference(same precision) - f64|| on benchmark shapes (L ~ 4k)."""
    case = _bench_case(kv_heads, gqa, workers, history=4096 - 220 * workers, dtype=dtype)
    truth = brute_force_attention(case)
    out = shifted_attention_triton(*case.args()).double()
    ref = shifted_attention_reference(*case.args()).double()
    err_out = (out - truth).norm() / truth.norm()
    err_ref = (ref - truth).norm() / truth.norm()
    print(f"relative error: triton {err_out:.3e}, reference {err_ref:.3e}, ratio {err_out / err_ref:.2f}")
    assert err_out <= 2 * err_ref


@needs_cuda
def test_float32_matches_float64_tightly():
    case = _bench_case(8, 5, 2, history=1500, dtype=torch.float32)
    out = shifted_attention_triton(*case.args()).double()
    truth = brute_force_attention(case)
    assert (out - truth).norm() / truth.norm() < 1e-5


@needs_cuda
def test_cuda_graph_capture_and_replay_with_new_metadata():
    """No host sync inside: the call captures, and replays follow new metadata *values* of equal shapes."""
    first = _bench_case(8, 5, 4, history=3000, dtype=torch.bfloat16, seed=1)
    second = _bench_case(8, 5, 4, history=3000, dtype=torch.bfloat16, seed=2)
    static = first
    ws = AttentionWorkspace()
    shifted_attention_triton(*static.args(), workspace=ws)  # compile outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = shifted_attention_triton(*static.args(), workspace=ws)
    for case in (first, second):
        for name in ("page_ids", "page_len", "entry_pos", "entry_shift", "query_group", "query_pos"):
            getattr(static.meta, name).copy_(getattr(case.meta, name))
        static.query.copy_(case.query)
        static.key_pages.copy_(case.key_pages)
        static.value_pages.copy_(case.value_pages)
        graph.replay()
        torch.cuda.synchronize()
        expected = shifted_attention_reference(*static.args())
        torch.testing.assert_close(out, expected, **TOL[torch.bfloat16])
