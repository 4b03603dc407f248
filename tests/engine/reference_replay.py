"""An independent, plain implementation of the shared-cache semantics (DESIGN.md §4), for tests.

It shares no code with the engine's store, planner or kernels: every block keeps its K/V in Python
lists per layer, and attention materialises each writer's view with keys re-rotated from their
block-local positions to view positions and queries rotated to their view position, then runs ordinary
causal softmax attention. It drives the model's own layers through a registered attention function.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface

_STATE: dict[str, object] = {}


def _rotate(x: torch.Tensor, pos: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE of ``x [..., n, D]`` by integer positions ``pos [n]`` (float64 math)."""
    half = inv_freq.numel()
    ang = pos.double()[:, None] * inv_freq.double()[None, :]
    cos, sin = ang.cos(), ang.sin()
    x = x.double()
    a, b, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], dim=-1)


@dataclass
class ReplayGroup:
    block: int
    tokens: list[int]
    view: list[int]


@dataclass
class ReplayStore:
    keys: dict[tuple[int, int], list[torch.Tensor]] = field(
        default_factory=dict
    )  # (layer, block) -> [Hkv, D]
    values: dict[tuple[int, int], list[torch.Tensor]] = field(default_factory=dict)
    lengths: dict[int, int] = field(default_factory=dict)


class _NoCache:
    """Lets the model hand us the new K/V untouched (our attention function stores them)."""

    is_compileable = False

    def update(self, k, v, layer_idx, *args, **kwargs):
        return k, v

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    store: ReplayStore = _STATE["store"]  # type: ignore[assignment]
    groups: list[ReplayGroup] = _STATE["groups"]  # type: ignore[assignment]
    inv_freq: torch.Tensor = _STATE["inv_freq"]  # type: ignore[assignment]
    layer = module.layer_idx
    hq, hkv = query.shape[1], key.shape[1]
    # 1) every writer's new tokens are stored first (instant visibility within the pass)
    t = 0
    spans = []
    for g in groups:
        n = len(g.tokens)
        ks = store.keys.setdefault((layer, g.block), [])
        vs = store.values.setdefault((layer, g.block), [])
        start = len(ks)
        for i in range(n):
            ks.append(key[0, :, t + i])
            vs.append(value[0, :, t + i])
        spans.append((t, start, n))
        t += n
    out = torch.zeros(query.shape[2], hq, query.shape[3], dtype=torch.float64)
    # 2) each writer attends to its materialised view
    for g, (t0, start, n) in zip(groups, spans):
        keys, vals, kpos = [], [], []
        offset = 0
        for b in g.view:
            ks = store.keys.get((layer, b), [])
            if ks:
                local = torch.arange(len(ks))
                k = torch.stack(ks, dim=1)  # [Hkv, L, D], rotated at local positions
                # re-rotate: local position i -> view position offset + i
                keys.append(_rotate(k, torch.full_like(local, offset), inv_freq))
                vals.append(torch.stack(store.values[(layer, b)], dim=1).double())
                kpos.append(offset + local)
            offset += len(ks)
        own_offset = offset - len(store.keys[(layer, g.block)])
        k = torch.cat(keys, dim=1).repeat_interleave(hq // hkv, dim=0)
        v = torch.cat(vals, dim=1).repeat_interleave(hq // hkv, dim=0)
        kp = torch.cat(kpos)
        qpos = own_offset + start + torch.arange(n)
        q = _rotate(query[0, :, t0 : t0 + n], torch.full((n,), own_offset), inv_freq)  # to view positions
        scores = torch.einsum("hnd,hkd->hnk", q, k) * (scaling or q.shape[-1] ** -0.5)
        scores = scores.masked_fill(kp[None, None, :] > qpos[None, :, None], float("-inf"))
        out[t0 : t0 + n] = torch.einsum("hnk,hkd->nhd", scores.softmax(-1), v)
    return out.unsqueeze(0).to(query.dtype), None


AttentionInterface.register("hogwild_replay_reference", _attention)


@contextlib.contextmanager
def _state(**kw):
    _STATE.update(kw)
    try:
        yield
    finally:
        _STATE.clear()


class ReferenceReplayer:
    """Replays forward passes (groups of block writes) on an eager twin of the model, plainly."""

    def __init__(self, twin: torch.nn.Module) -> None:
        self.model = twin
        twin.set_attn_implementation("hogwild_replay_reference")
        rotary = [m for m in twin.modules() if "Rotary" in type(m).__name__][0]
        self.inv_freq = rotary.inv_freq.detach().double()
        self.store = ReplayStore()

    @torch.no_grad()
    def forward(self, groups: list[ReplayGroup]) -> torch.Tensor:
        """Return ``[T, V]`` logits of every fed token, groups in order."""
        ids, pos = [], []
        for g in groups:
            start = self.store.lengths.get(g.block, 0)
            ids += g.tokens
            pos += list(range(start, start + len(g.tokens)))
            self.store.lengths[g.block] = start + len(g.tokens)
        with _state(store=self.store, groups=groups, inv_freq=self.inv_freq):
            out = self.model(
                input_ids=torch.tensor([ids]),
                position_ids=torch.tensor([pos]),
                use_cache=True,
                **{_cache_kwarg(self.model): _NoCache()},
            )
        return out.logits[0].float()


def _cache_kwarg(model: torch.nn.Module) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
