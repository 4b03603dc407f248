"""The only part of the engine that runs the model: one batched forward pass for all writers."""

from __future__ import annotations

import dataclasses
import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hogwild_kernels.dispatch import resolve_backend
from hogwild_kernels.metadata import with_shift_table

from ..api.errors import UnsupportedModelError
from ..cache.plan import ForwardPlan, WriteGroup, plan_forward
from ..cache.store import PagedKVStore, PagePoolExhausted
from .attention import ATTENTION_NAME, CACHE_ADAPTER, ForwardContext, forward_context
from .distributed import SINGLE_PROCESS, ParallelContext
from .fused import FusedOps, apply_fused_ops
from .graphs import GraphDecoder
from .sampling import Sampler, SampleRequest
from .support import ModelGeometry, inspect_model

__all__ = ["ModelRunner", "PendingForward", "PreparedForward", "SampledTokens"]


@dataclass(slots=True)
class SampledTokens:
    """The tokens sampled in one forward: one id per sample request, and the grammar masks that applied.

    Attributes:
        ids: one token id per request, in request order.
        grammar_masks: request index -> packed allowed bits (``[W] int32``) where a grammar masked.
    """

    ids: list[int]
    grammar_masks: dict[int, np.ndarray] = field(default_factory=dict)


class PreparedForward:
    """A forward planned by :meth:`ModelRunner.prepare`; :meth:`launch` starts it."""

    __slots__ = ("_prepared", "groups", "runner", "samples")

    def __init__(
        self, runner: ModelRunner, groups: list[WriteGroup], samples: list[SampleRequest], prepared: Any
    ) -> None:
        self.runner = runner
        self.groups = groups
        self.samples = samples
        self._prepared = prepared  # the graph step's pinned buffers, or None for an eager forward

    def launch(self, tokens: list[int] | None) -> PendingForward:
        """Start the forward; ``tokens`` (one per group) replace the groups' placeholder fed tokens."""
        if tokens is not None:
            for group, token in zip(self.groups, tokens, strict=True):
                group.token_ids[0] = token
        runner = self.runner
        if self._prepared is not None and runner.graphs is not None:
            return PendingForward(runner, runner.graphs.launch(self._prepared, tokens), bool(self.samples))
        with torch.no_grad():
            return PendingForward(runner, runner._eager(self.groups, self.samples), bool(self.samples))


class PendingForward:
    """A forward in flight; :meth:`result` waits for its sampled ids (under TP: rank 0's, broadcast)."""

    __slots__ = ("_pending", "_sampled", "runner")

    def __init__(self, runner: ModelRunner, pending: Any, sampled: bool) -> None:
        self.runner = runner
        self._pending = pending
        self._sampled = sampled

    def result(self) -> SampledTokens:
        """The sampled tokens (one device-to-host copy for a graph step)."""
        if isinstance(self._pending, SampledTokens):
            out = self._pending
        else:
            ids, masks = self._pending.result()
            out = SampledTokens(ids, masks)
        if not self._sampled:
            return SampledTokens([], out.grammar_masks)
        return SampledTokens(self.runner.parallel.broadcast_tokens(out.ids), out.grammar_masks)


def _local_geometry(geometry: ModelGeometry, parallel: ParallelContext) -> ModelGeometry:
    """The geometry one rank sees: ``Hkv / world`` KV heads (and ``Hq / world`` query heads).

    Column-wise sharded ``q_proj``/``k_proj``/``v_proj`` give each rank whole heads; the GQA group size is
    unchanged, so the attention kernel runs as is on the rank's share of the store.
    """
    if not parallel.enabled:
        return geometry
    if geometry.num_kv_heads % parallel.world_size:
        raise UnsupportedModelError(
            f"the model has {geometry.num_kv_heads} KV heads, which do not split over {parallel.world_size} "
            "tensor-parallel ranks; use a world size that divides the KV head count"
        )
    return dataclasses.replace(geometry, num_kv_heads=geometry.num_kv_heads // parallel.world_size)


class ModelRunner:
    """Owns the model, the shared paged store and the attention backend choice."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        page_size: int,
        max_cache_tokens: int,
        attention_backend: str = "auto",
        trust_model_support: bool = False,
        cuda_graphs: bool = True,
        tensor_parallel_graphs: bool = False,
        parallel: ParallelContext = SINGLE_PROCESS,
        fused_ops: FusedOps = "none",
    ) -> None:
        """Prepare ``model`` for the engine and allocate the shared store (once, for the runner's life).

        Args:
            model: the Hugging Face causal LM (its attention is switched to ours).
            page_size: tokens per KV page.
            max_cache_tokens: capacity of the shared store.
            attention_backend: ``"auto"``, ``"triton"`` or ``"reference"``.
            trust_model_support: skip the model-family allow-list.
            cuda_graphs: replay decode forwards as CUDA graphs (CUDA and the Triton backend only).
            tensor_parallel_graphs: also capture them when ``parallel`` is enabled (NCCL collectives inside
                the graph; every rank replays the same bucket in lockstep).
            parallel: the tensor-parallel group ``model`` is sharded over (its tensor-parallel plan applied):
                the store then holds this rank's share of the KV heads.
            fused_ops: fused decoder ops to apply (see :mod:`.fused`); what was applied is ``self.fused_ops``.

        Raises:
            UnsupportedModelError: the model cannot be served, or its KV heads do not split evenly.
        """
        self.parallel = parallel
        self.geometry: ModelGeometry = _local_geometry(
            inspect_model(model, trust_model_support, context_limit=max_cache_tokens), parallel
        )
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        model.set_attn_implementation(ATTENTION_NAME)
        model.eval()
        use_graphs = (
            cuda_graphs
            and (tensor_parallel_graphs or not parallel.enabled)
            and self.device.type == "cuda"
            and resolve_backend(attention_backend, self.device) == "triton"
        )
        if fused_ops == "compile" and not use_graphs:
            raise UnsupportedModelError(
                "fused_ops='compile' compiles the CUDA-graph decode step, and this runner captures none "
                "(that needs a CUDA device, the Triton backend, cuda_graphs=True and, under tensor "
                "parallelism, tensor_parallel_graphs=True); use fused_ops='auto' or 'none'"
            )
        self.fused_ops = apply_fused_ops(
            model, fused_ops, self.device, resolve_backend(attention_backend, self.device)
        )
        self.store = PagedKVStore(
            num_layers=self.geometry.num_layers,
            num_pages=-(-max_cache_tokens // page_size) + (1 if use_graphs else 0),  # + a scratch page
            page_size=page_size,
            num_kv_heads=self.geometry.num_kv_heads,
            head_dim=self.geometry.head_dim,
            dtype=self.dtype,
            device=self.device,
        )
        self.backend = attention_backend
        self._kernel_backend = resolve_backend(attention_backend, self.device)
        self._cache = CACHE_ADAPTER
        # transformers renamed the cache argument (past_key_values -> cache); use what this version takes.
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.sampler = Sampler(self.vocab_size)
        self.eager_forwards = 0  # forwards that ran eagerly, and their wall time (benchmarks read these)
        self.eager_seconds = 0.0
        self.graphs: GraphDecoder | None = None
        if use_graphs:
            self.graphs = GraphDecoder(
                self,
                scratch_page=self.store.take_scratch_page(),
                shift_cos_sin=True,
                compile_step=self.fused_ops == "compile",
            )

    def reserve(self, groups: list[WriteGroup], forward: int) -> None:
        """Append every group's tokens to its block, filling ``slots`` and ``first_position``.

        All or nothing: when the pool cannot hold every group, nothing is reserved.

        Raises:
            PagePoolExhausted: too few free pages for all the groups.
        """
        need = self.pages_needed(groups)
        if need > self.store.free_pages:
            raise PagePoolExhausted(
                f"the KV page pool has {self.store.free_pages} free pages, {need} needed; "
                "raise max_cache_tokens"
            )
        for group in groups:
            block = self.store.blocks[group.block]
            group.first_position = block.length
            group.slots = self.store.reserve(block, group.token_ids, forward)

    def pages_needed(self, groups: list[WriteGroup]) -> int:
        """Pages that reserving ``groups`` would take."""
        return sum(self.store.pages_needed(self.store.blocks[g.block], len(g.token_ids)) for g in groups)

    @torch.no_grad()  # not inference_mode: samplers and grammars mask the returned logits in place
    def forward(self, groups: list[WriteGroup], forward: int, all_logits: bool = False) -> torch.Tensor:
        """Run one forward pass for ``groups`` (tokens not yet reserved).

        Returns:
            ``[G, V] float32`` logits of each group's last token, or ``[T, V]`` for every token when
            ``all_logits``.

        """
        self.reserve(groups, forward)
        return self.forward_reserved(groups, all_logits)

    @torch.no_grad()
    def forward_reserved(self, groups: list[WriteGroup], all_logits: bool = False) -> torch.Tensor:
        """:meth:`forward` for groups already reserved (the scheduler reserves run by run, then batches)."""
        if self.graphs is not None and self.graphs.accepts(groups, all_logits):
            return self.graphs.forward(groups)
        plan = plan_forward(self.store, groups, self.device)
        if self._kernel_backend == "triton" and plan.meta is not None:  # shifts' cos/sin once per forward
            plan.meta = with_shift_table(plan.meta, self.geometry.inv_freq)
        return self.run_plan(plan, all_logits)

    def forward_sample(self, groups: list[WriteGroup], samples: list[SampleRequest]) -> SampledTokens:
        """Run one forward of reserved ``groups`` and sample the requested rows (one host sync: the ids)."""
        return self.launch(groups, samples).result()

    def prepare(self, groups: list[WriteGroup], samples: list[SampleRequest]) -> PreparedForward:
        """Plan a forward of reserved ``groups`` whose single fed tokens may still be placeholders.

        A decode step that a CUDA graph serves is planned into its pinned buffers now (while the GPU may
        still run the previous step); :meth:`PreparedForward.launch` then only writes the tokens, copies
        and replays. Other forwards are planned when launched.
        """
        graphed = self.graphs is not None and self.graphs.accepts(groups, all_logits=False)
        prepared = self.graphs.prepare(groups, samples) if graphed and self.graphs is not None else None
        return PreparedForward(self, groups, samples, prepared)

    def launch(self, groups: list[WriteGroup], samples: list[SampleRequest]) -> PendingForward:
        """Start one forward of reserved ``groups`` (tokens final); its ids are read by ``result()``.

        A decode step (every group feeds one token) replays its CUDA graph, sampling included, and
        returns at once; other forwards run eagerly and compute logits only at the sampled groups' last
        positions.
        """
        return self.prepare(groups, samples).launch(None)

    @torch.no_grad()
    def _eager(self, groups: list[WriteGroup], samples: list[SampleRequest]) -> SampledTokens:
        t0 = time.perf_counter()
        plan = plan_forward(self.store, groups, self.device)
        if self._kernel_backend == "triton" and plan.meta is not None:  # shifts' cos/sin once per forward
            plan.meta = with_shift_table(plan.meta, self.geometry.inv_freq)
        sampled = sorted({s.group for s in samples}) or [0]
        row_of = {g: i for i, g in enumerate(sampled)}
        keep = plan.last_token_index[torch.tensor(sampled, device=plan.last_token_index.device)]
        logits = self.run_plan(plan, keep=keep)
        rows = logits[[row_of[s.group] for s in samples]] if samples else logits[:0]
        ids = self.sampler.sample(rows, samples)
        self.eager_forwards += 1
        self.eager_seconds += time.perf_counter() - t0
        return SampledTokens(ids, self.sampler.last_grammar_masks)

    def run_plan(
        self, plan: ForwardPlan, all_logits: bool = False, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run the model on a prepared plan; logits at ``keep`` (default: every group's last token)."""
        ctx = ForwardContext(self.store, plan, self.geometry.inv_freq, self.backend)
        if keep is None:
            keep = 0 if all_logits else plan.last_token_index
        with forward_context(ctx):
            out = self.model(
                input_ids=plan.input_ids,
                position_ids=plan.position_ids,
                use_cache=True,
                logits_to_keep=keep,
                **{self._cache_kwarg: self._cache},
            )
        return out.logits[0].float()
