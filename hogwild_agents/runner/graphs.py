"""Decode steps replayed as CUDA graphs: one captured model forward per (workers, entries) bucket.

A decode forward (every group feeds exactly one token) always has the same shape for a given number of
groups ``G`` and view entries ``E``, so it is captured once and replayed. Everything that changes from
step to step lives in static device buffers that the graph reads:

- one packed ``int32`` buffer (token ids, block-local positions, slots, query view positions, the live
  entry count, page ids and lengths, the ``[G, E]`` entry positions and shifts, and each row's sampling
  fields: top-k, random stream and counter, whether its mask applies), filled on the host in a pinned
  twin and sent with **one** host-to-device copy per step; a small float buffer (temperatures, top-p)
  and, only on steps where some row is masked, the ``[G, W]`` bitmask of bans and grammars;
- the logits ``[G, V] float32``, the greedy tokens ``[G]`` and the sampled tokens ``[G]``, written by
  the graph: masking and sampling (:mod:`.sampling`) run inside it, so the step's only device-to-host
  copy is the sampled ids. Greedy-only steps replay a variant without the sampling work.

Buckets are powers of two in ``G`` and ``E``. Padding groups feed token 0 at position 0, write their
K/V to a scratch page nobody reads, and see nothing (``entry_pos = -1``); padding entries are invisible
to every group and the kernel spreads only the live entries over its splits (``num_live_entries``), so
a bucket twice too large costs no extra KV traffic. Chunk forwards (prompt, headers, tool results) stay
eager. The paged store is allocated once and never moves, so its addresses are baked into the graphs.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hogwild_kernels import ShiftedAttentionMetadata
from hogwild_kernels.metadata import shift_table

from ..cache.plan import ForwardPlan, HostPlan, WriteGroup, build_host_plan
from ..cache.store import PagedKVStore
from .attention import CACHE_ADAPTER, ForwardContext, forward_context
from .sampling import SampleRequest, apply_row_masks, bitmask_words, fill_row_masks, sample_rows

__all__ = ["GraphDecoder", "PendingStep", "PreparedStep"]

MIN_ENTRIES = 16  # smallest entry bucket (a bucket per power of two above it)
MAX_TOKENS = 64  # most tokens a captured step feeds: decode steps plus short chunks (headers, results)
_RECOMPILE_LIMIT = 64  # more than the buckets of (groups, tokens) there can be


def _bucket(n: int, floor: int = 1) -> int:
    return max(floor, 1 << max(0, n - 1).bit_length())


@dataclass(slots=True)
class _Layout:
    """Offsets of the fields inside the packed int32 step buffer of one ``(groups, tokens, entries)`` bucket.

    Group rows are ``groups + 1``: the last row is the padding group, which sees nothing and owns every
    padding token (they write their K/V to the scratch page).
    """

    groups: int
    tokens: int
    entries: int

    def fields(self) -> list[tuple[str, int]]:
        g, t, e = self.groups, self.tokens, self.entries
        rows = g + 1
        return [
            ("tokens", t),
            ("positions", t),
            ("slots", t),
            ("last_index", g),
            ("query_pos", t),
            ("query_group", t),
            ("group_start", rows + 1),
            ("num_live", 1),
            ("page_ids", e),
            ("page_len", e),
            ("entry_pos", rows * e),
            ("entry_shift", rows * e),
            ("top_k", g),
            ("stream", g),
            ("counter", g),
            ("masked", g),
        ]

    @property
    def size(self) -> int:
        return sum(n for _, n in self.fields())

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views of ``flat`` (host or device), all sharing its storage."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, n in self.fields():
            out[name] = flat[start : start + n]
            start += n
        rows = self.groups + 1
        out["entry_pos"] = out["entry_pos"].view(rows, self.entries)
        out["entry_shift"] = out["entry_shift"].view(rows, self.entries)
        return out


class _CapturedStep:
    """Static buffers, the captured graph and its outputs for one ``(groups, entries)`` bucket."""

    def __init__(
        self,
        layout: _Layout,
        device: torch.device,
        rot_dims: int,
        shift_cos_sin: bool,
        vocab: int,
        sampling: bool,
    ) -> None:
        g, t, e = layout.groups, layout.tokens, layout.entries
        self.layout = layout
        self.sampling = sampling  # whether the graph samples with temperatures (else greedy only)
        self.host = torch.zeros(layout.size, dtype=torch.int32, pin_memory=True)
        self.device_flat = torch.zeros(layout.size, dtype=torch.int32, device=device)
        self.host_views = {k: v.numpy() for k, v in layout.views(self.host).items()}
        dev = layout.views(self.device_flat)
        self.device_views = dev
        words = bitmask_words(vocab)
        self.host_bitmask = torch.full((g, words), -1, dtype=torch.int32, pin_memory=True)
        self.device_bitmask = torch.full((g, words), -1, dtype=torch.int32, device=device)
        self.host_floats = torch.zeros(2 * g, dtype=torch.float32, pin_memory=True)  # temperature, top_p
        self.device_floats = torch.zeros(2 * g, dtype=torch.float32, device=device)
        self.host_float_views = self.host_floats.numpy()
        # int64 copies of tokens, positions, slots and last indices, made in the graph
        self.longs = torch.zeros(3 * t + g, dtype=torch.long, device=device)
        meta = ShiftedAttentionMetadata(
            page_ids=dev["page_ids"],
            page_len=dev["page_len"],
            entry_pos=dev["entry_pos"],
            entry_shift=dev["entry_shift"],
            query_group=dev["query_group"],
            query_pos=dev["query_pos"],
            group_query_start=dev["group_start"],
            # Only selects the kernel's predicated loop (no branch around unseen tiles), which is exact for
            # any number of queries per group and the faster one for decode steps and short chunks.
            max_queries_per_group=1,
            num_live_entries=dev["num_live"],
            shift_cos_sin=torch.zeros(g + 1, e, rot_dims, device=device) if shift_cos_sin else None,
        )
        self.plan = ForwardPlan(
            input_ids=self.longs[:t].view(1, t),
            position_ids=self.longs[t : 2 * t].view(1, t),
            slot_mapping=self.longs[2 * t : 3 * t],
            meta=meta,
            last_token_index=self.longs[3 * t :],
        )
        self.graph: torch.cuda.CUDAGraph | None = None
        self.copied = torch.cuda.Event()  # the pinned buffer may be rewritten once this has passed
        self.logits: torch.Tensor | None = None  # [G, V] float32, written by the graph
        self.tokens: torch.Tensor | None = None  # [G] int64 greedy picks, written by the graph
        self.sampled: torch.Tensor | None = None  # [G] int64 picks after masks and sampling

    def fill_samples(self, requests: list[SampleRequest]) -> tuple[bool, list[int]]:
        """Write the rows' sampling fields (and masks) into the pinned buffers.

        Returns:
            Whether any row is masked, and which requests' grammars masked something.
        """
        h, f, g = self.host_views, self.host_float_views, self.layout.groups
        h["top_k"][:] = 0
        h["stream"][:] = 0
        h["counter"][:] = 0
        h["masked"][:] = 0
        f[:g] = 0.0
        f[g:] = 1.0
        rows = [r.group for r in requests]
        for row, r in zip(rows, requests, strict=True):
            f[row] = 0.0 if r.takes_argmax else r.params.temperature
            f[g + row] = r.params.top_p
            h["top_k"][row] = r.params.top_k
            # the int32 fields hold the 32-bit stream key and counter as their two's-complement bits
            h["stream"][row] = np.int64(r.stream).astype(np.uint32).view(np.int32)
            h["counter"][row] = np.int64(r.counter & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
        masked = np.zeros(g, dtype=np.bool_)
        grammar: list[int] = []
        if any(r.constraint is not None or (r.ban is not None and r.ban.ids) for r in requests):
            mask_rows, grammar = fill_row_masks(requests, self.host_bitmask, rows=rows)
            masked[rows] = mask_rows
        h["masked"][:] = masked
        return bool(masked.any()), grammar

    def fill(self, plan: HostPlan | None, scratch_slot: int) -> None:
        """Write ``plan`` (or an all-padding step when ``None``) into the pinned host buffer."""
        h = self.host_views
        g = self.layout.groups
        n = 0 if plan is None else len(plan.tokens)  # live tokens
        live = 0 if plan is None else len(plan.group_start) - 1  # live groups
        e = 0 if plan is None else plan.num_entries
        h["tokens"][n:] = 0
        h["positions"][n:] = 0
        h["slots"][n:] = scratch_slot
        h["query_pos"][n:] = 0
        h["query_group"][n:] = g  # padding tokens belong to the padding group, which sees nothing
        h["group_start"][live:] = n
        h["last_index"][live:] = 0
        h["num_live"][0] = e
        h["page_ids"][e:] = 0
        h["page_len"][e:] = 1
        h["entry_pos"][:] = -1
        h["entry_shift"][:] = 0
        if plan is not None:
            h["tokens"][:n] = plan.tokens
            h["positions"][:n] = plan.positions
            h["slots"][:n] = plan.slots
            h["query_pos"][:n] = plan.query_pos
            starts = plan.group_start
            h["query_group"][:n] = np.repeat(np.arange(live, dtype=np.int32), np.diff(starts))
            h["group_start"][:live] = starts[:-1]
            h["last_index"][:live] = starts[1:] - 1
            h["page_ids"][:e] = plan.page_ids
            h["page_len"][:e] = plan.page_len
            h["entry_pos"][:live, :e] = plan.entry_pos
            h["entry_shift"][:live, :e] = plan.entry_shift


@dataclass(slots=True)
class PreparedStep:
    """A decode step planned into its bucket's pinned buffers, not yet sent to the device."""

    step: _CapturedStep
    groups: int
    requests: list[SampleRequest]
    masked: bool
    masks: dict[int, np.ndarray]  # request index -> allowed bits, where its grammar masked


@dataclass(slots=True)
class PendingStep:
    """A replayed decode step whose sampled ids have not been read yet."""

    decoder: GraphDecoder
    prepared: PreparedStep

    def result(self) -> tuple[list[int], dict[int, np.ndarray]]:
        """The sampled ids (request order; the one device-to-host sync) and the grammar masks used."""
        t0 = time.perf_counter()
        step, requests = self.prepared.step, self.prepared.requests
        assert step.sampled is not None
        ids = step.sampled[: self.prepared.groups].tolist()
        self.decoder.wait_seconds += time.perf_counter() - t0
        return [ids[r.group] for r in requests], self.prepared.masks


class GraphDecoder:
    """Runs decode forwards of a :class:`~hogwild_agents.runner.runner.ModelRunner` as CUDA graphs.

    The runner asks :meth:`accepts` for every forward; accepted ones go through :meth:`forward`, the
    others run eagerly. Graphs are captured lazily, the first time a bucket is needed (capture time is
    reported in :attr:`capture_seconds`).

    Example:
        >>> decoder = GraphDecoder(runner)  # doctest: +SKIP
        >>> logits = decoder.forward(groups, forward_index)  # [G, V] float32  # doctest: +SKIP

    """

    def __init__(
        self,
        runner: object,
        *,
        max_groups: int = 16,
        shift_cos_sin: bool = False,
        scratch_page: int,
        compile_step: bool = False,
    ) -> None:
        """Prepare graph capture for ``runner`` (a ModelRunner whose store keeps ``scratch_page`` aside).

        Args:
            runner: the owning :class:`~hogwild_agents.runner.runner.ModelRunner`.
            max_groups: most groups a captured decode step serves (larger forwards run eagerly).
            shift_cos_sin: build the per-step cos/sin table of the shifts once, in the graph, for the
                kernel to read (instead of evaluating sin/cos per tile).
            scratch_page: a store page owned by no block, where padding groups write their K/V.
            compile_step: run the model of each captured step through ``torch.compile`` (Inductor with
                coordinate-descent tuning, our attention an opaque op); compiled at the bucket's warm-up,
                before its capture.

        """
        self.runner = runner
        self.store: PagedKVStore = runner.store  # type: ignore[attr-defined]
        self.model: torch.nn.Module = runner.model  # type: ignore[attr-defined]
        self.device: torch.device = runner.device  # type: ignore[attr-defined]
        self.inv_freq: torch.Tensor = runner.geometry.inv_freq.to(self.device)  # type: ignore[attr-defined]
        self.cache_kwarg: str = runner._cache_kwarg  # type: ignore[attr-defined]
        self.max_groups = max_groups
        self.shift_cos_sin = shift_cos_sin
        self.scratch_slot = scratch_page * self.store.page_size
        self.capture_seconds = 0.0
        self.host_seconds = 0.0  # planning and filling the pinned buffers (benchmarks read these)
        self.wait_seconds = 0.0  # waiting for the sampled ids
        self.replays = 0
        self._steps: dict[tuple[int, int, int, bool], _CapturedStep] = {}
        self._pool = torch.cuda.graph_pool_handle()
        self._cache = CACHE_ADAPTER
        self._step_model: torch.nn.Module = self.model
        self._compile_limits: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
        if compile_step:
            # A compiled model may compile again on a new bucket's shape (at its warm-up, never in a replay);
            # past the limit Dynamo would silently run the plain model: raise instead.
            self._compile_limits = functools.partial(
                torch._dynamo.config.patch, recompile_limit=_RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True
            )
            # Static shapes first (one-row products become Inductor's own tuned reductions); a second shape
            # turns the changed sizes dynamic, so a few compiles serve every bucket.
            self._step_model = torch.compile(self.model, options={"coordinate_descent_tuning": True})

    def accepts(self, groups: list[WriteGroup], all_logits: bool) -> bool:
        """Whether the graphs serve this forward: few groups, few tokens (decode steps, short chunks)."""
        return (
            not all_logits
            and 0 < len(groups) <= self.max_groups
            and sum(len(g.token_ids) for g in groups) <= MAX_TOKENS
            and all(g.token_ids for g in groups)
        )

    def forward(self, groups: list[WriteGroup]) -> torch.Tensor:
        """Replay the decode step for ``groups`` (tokens already reserved); ``[G, V] float32`` logits."""
        step = self._prepare(groups)
        assert step.logits is not None
        return step.logits[: len(groups)].clone()

    def forward_sample(
        self, groups: list[WriteGroup], requests: list[SampleRequest]
    ) -> tuple[list[int], dict[int, np.ndarray]]:
        """Replay the decode step with masking and sampling in the graph; one id per request.

        Returns:
            The sampled ids (request order) and, per request whose grammar masked, its allowed bits.
        """
        return self.launch(self.prepare(groups, requests)).result()

    def forward_greedy(self, groups: list[WriteGroup]) -> list[int]:
        """Replay the decode step and return each group's argmax token (one device-to-host copy)."""
        step = self._prepare(groups)
        assert step.tokens is not None
        return step.tokens[: len(groups)].tolist()

    def prepare(self, groups: list[WriteGroup], requests: list[SampleRequest]) -> PreparedStep:
        """Plan a decode step into its bucket's pinned buffers, without sending or replaying it yet.

        The groups' fed tokens may be placeholders: :meth:`launch` can overwrite them (the scheduler
        prepares the next step while the GPU still runs the current one, see ``engine.pipeline``).
        """
        t0 = time.perf_counter()
        sampling = not all(r.takes_argmax for r in requests)
        plan = build_host_plan(self.store, groups)
        g = _bucket(len(groups))
        key = (g, _bucket(len(plan.tokens), g), _bucket(plan.num_entries, MIN_ENTRIES), sampling)
        step = self._steps.get(key) or self._capture(*key)
        step.copied.synchronize()  # the previous step's copy out of the pinned buffers is done
        step.fill(plan, self.scratch_slot)
        masked, grammar = step.fill_samples(requests)
        masks = {i: step.host_bitmask[requests[i].group].numpy().copy() for i in grammar}
        self.host_seconds += time.perf_counter() - t0
        return PreparedStep(step, len(groups), list(requests), masked, masks)

    def launch(self, prepared: PreparedStep, tokens: list[int] | None = None) -> PendingStep:
        """Send the prepared step (with ``tokens`` as the groups' fed tokens, if given) and replay it."""
        step = prepared.step
        if tokens is not None:
            step.host_views["tokens"][: len(tokens)] = tokens
        step.device_flat.copy_(step.host, non_blocking=True)
        step.device_floats.copy_(step.host_floats, non_blocking=True)
        if prepared.masked:  # the bitmask only matters for masked rows: copy it only when there are some
            step.device_bitmask.copy_(step.host_bitmask, non_blocking=True)
        step.copied.record()
        assert step.graph is not None
        step.graph.replay()
        self.replays += 1
        return PendingStep(self, prepared)

    def _prepare(self, groups: list[WriteGroup]) -> _CapturedStep:
        prepared = self.prepare(groups, [])
        self.launch(prepared)
        return prepared.step

    def _body(self, step: _CapturedStep) -> None:
        """Run the captured work: widen ids, build the shift table, run the model, take logits and argmax."""
        g, t = step.layout.groups, step.layout.tokens
        step.longs.copy_(step.device_flat[: 3 * t + g])
        meta = step.plan.meta
        if meta.shift_cos_sin is not None:
            shift_table(meta.entry_shift, self.inv_freq, out=meta.shift_cos_sin)
        ctx = ForwardContext(self.store, step.plan, self.inv_freq, "triton")
        with forward_context(ctx), self._compile_limits():
            out = self._step_model(
                input_ids=step.plan.input_ids,
                position_ids=step.plan.position_ids,
                use_cache=True,
                logits_to_keep=step.plan.last_token_index,
                **{self.cache_kwarg: self._cache},
            )
        logits = out.logits[0]  # [G, V]: each group's last token
        if step.logits is None:
            step.logits = torch.empty(logits.shape, dtype=torch.float32, device=self.device)
            step.tokens = torch.empty(g, dtype=torch.long, device=self.device)
            step.sampled = torch.empty(g, dtype=torch.long, device=self.device)
        step.logits.copy_(logits)
        assert step.tokens is not None and step.sampled is not None
        torch.argmax(step.logits, dim=-1, out=step.tokens)
        dev = step.device_views
        masked = apply_row_masks(step.logits, step.device_bitmask, dev["masked"] != 0)
        picks = sample_rows(
            masked,
            step.device_floats[:g],
            step.device_floats[g:],
            dev["top_k"].long(),
            dev["stream"].long() & 0xFFFFFFFF,
            dev["counter"].long() & 0xFFFFFFFF,
            greedy_only=not step.sampling,
        )
        step.sampled.copy_(picks)

    @torch.no_grad()
    def _capture(self, groups: int, tokens: int, entries: int, sampling: bool) -> _CapturedStep:
        """Allocate a bucket's buffers, warm up eagerly (Triton compiles), then capture the step."""
        t0 = time.perf_counter()
        vocab = self.runner.vocab_size  # type: ignore[attr-defined]
        rot = 2 * self.inv_freq.shape[0]
        layout = _Layout(groups, tokens, entries)
        step = _CapturedStep(layout, self.device, rot, self.shift_cos_sin, vocab, sampling)
        step.fill(None, self.scratch_slot)  # an all-padding step: writes only the scratch page
        step.device_flat.copy_(step.host)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._body(step)
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._body(step)
        torch.cuda.synchronize(self.device)
        step.graph = graph
        self._steps[(groups, tokens, entries, sampling)] = step
        self.capture_seconds += time.perf_counter() - t0
        return step
