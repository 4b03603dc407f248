"""The PyTorch reference against a float64 brute force, metadata validation, backend resolution."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hogwild_kernels import shifted_attention_reference, shifted_attention_with_paged_kv
from hogwild_kernels.dispatch import resolve_backend
from hogwild_kernels.metadata import check_metadata
from metadata_factory import brute_force_attention, combined_layout_views, random_case


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _combined(workers, queries=None, **kw):
    kinds, views = combined_layout_views(workers, history_blocks=2)
    lens = {"history": 21, "header": 4, "step": 9, "own_header": 2}
    return random_case([lens[k] for k in kinds], views, queries or [1] * workers, **kw)


@pytest.mark.parametrize(
    "case_kw",
    [
        dict(workers=1),
        dict(workers=3, gqa=3, rotary_dim=16),
        dict(workers=4, queries=[1, 5, 0, 9], page_size=4),
        dict(workers=2, head_dim=24, rotary_dim=24, kv_heads=1, gqa=4),
    ],
    ids=["w1", "w3-partial-rotary", "ragged-chunks", "odd-head-dim"],
)
def test_reference_matches_view_position_brute_force(case_kw):
    """Rotating queries by δ equals re-rotating keys to view positions (DESIGN §4.2), causal in own block."""
    workers = case_kw.pop("workers")
    case = _combined(workers, seed=workers, **case_kw)
    out = shifted_attention_reference(*case.args())
    torch.testing.assert_close(out.double(), brute_force_attention(case), atol=2e-5, rtol=2e-5)


def test_reference_with_a_block_twice_in_a_view_and_shuffled_entries():
    case = random_case([15, 3, 6, 5], [[0, 1, 2, 1, 3], [1, 0, 3, 2]], [3, 2], seed=4)
    out = shifted_attention_reference(*case.args(), query_chunk=2)  # also exercises query chunking
    torch.testing.assert_close(out.double(), brute_force_attention(case), atol=2e-5, rtol=2e-5)


def test_reference_ignores_poisoned_unfilled_slots_and_blind_groups():
    """Unfilled page slots hold NaN (random_case poisons them): the output stays finite; no key -> zeros."""
    case = _combined(2, seed=6)
    assert torch.isnan(case.key_pages).any()
    case.meta.entry_pos[0] = -1
    out = shifted_attention_reference(*case.args())
    assert torch.isfinite(out).all()
    assert (out[case.meta.query_group == 0] == 0).all()


def _valid():
    return _combined(2, seed=9)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: dict(query=c.query[0]), "query must be"),
        (lambda c: dict(value_pages=c.value_pages[:, :4]), "key_pages and value_pages"),
        (lambda c: dict(key_pages=c.key_pages[..., :16], value_pages=c.value_pages[..., :16]), "head_dim"),
        (lambda c: dict(query=c.query[:, :3]), "multiple of KV heads"),
        (lambda c: dict(inv_freq=torch.ones(c.query.shape[-1])), "inv_freq"),
        (lambda c: dict(meta=dataclasses.replace(c.meta, page_len=c.meta.page_len[:-1])), "metadata shapes"),
        (lambda c: dict(meta=dataclasses.replace(c.meta, query_pos=c.meta.query_pos[:1])), "query_pos"),
        (
            lambda c: dict(meta=dataclasses.replace(c.meta, group_query_start=c.meta.group_query_start[:-1])),
            "group_query_start",
        ),
    ],
    ids=["query-dims", "kv-shapes", "head-dim", "gqa", "inv-freq", "entry-shapes", "query-shapes", "starts"],
)
def test_check_metadata_raises_clear_value_errors(mutate, message):
    case = _valid()
    args = dict(query=case.query, key_pages=case.key_pages, value_pages=case.value_pages)
    args.update(meta=case.meta, inv_freq=case.inv_freq)
    check_metadata(**args)  # the valid case passes
    args.update(mutate(case))
    with pytest.raises(ValueError, match=message):
        check_metadata(**args)


def test_resolve_backend(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == "reference"
    assert resolve_backend("auto", cuda) == "triton"
    assert resolve_backend("reference", cuda) == "reference"
    assert resolve_backend("triton", cuda) == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", cpu) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_backend("triton", cpu)
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("cuda", cpu)  # type: ignore[arg-type]


def test_dispatch_runs_the_chosen_backend():
    case = _valid()
    expected = shifted_attention_reference(*case.args())
    assert torch.equal(shifted_attention_with_paged_kv(*case.args(), backend="reference"), expected)
    if not torch.cuda.is_available():
        assert torch.equal(shifted_attention_with_paged_kv(*case.args()), expected)  # auto on CPU
