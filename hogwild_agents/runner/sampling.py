"""Batched sampling for all writers of a forward: greedy or temperature / top-k / top-p, seeded per worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from .distributed import SINGLE_PROCESS, ParallelContext

__all__ = ["LogitsConstraint", "Sampler"]


class LogitsConstraint(Protocol):
    """A per-writer constraint (a grammar matcher, say) that masks logits and follows accepted tokens."""

    def apply(self, logits: torch.Tensor) -> None:
        """Mask disallowed tokens of one ``[V]`` logits row in place (set to ``-inf``)."""

    def accept(self, token_id: int) -> None:
        """Advance past ``token_id``."""

    @property
    def is_terminated(self) -> bool:
        """True once the constrained output is complete."""


class Sampler:
    """Samples one token per row. Each writer has its own seeded generator, so runs are reproducible."""

    def __init__(
        self,
        temperature: float,
        top_p: float,
        top_k: int,
        seed: int | None,
        device: torch.device,
        parallel: ParallelContext = SINGLE_PROCESS,
    ):
        self.parallel = parallel  # tensor-parallel ranks all take rank 0's picks
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.seed = seed
        self.device = device
        self._generators: dict[str, torch.Generator] = {}

    def _generator(self, writer: str) -> torch.Generator:
        if writer not in self._generators:
            gen = torch.Generator(device=self.device)
            if self.seed is None:
                gen.seed()
            else:
                # A stable per-writer seed (not Python's salted hash), so runs reproduce across processes.
                gen.manual_seed(
                    self.seed * 1_000_003 + sum(ord(c) * 31**i for i, c in enumerate(writer)) % 2**31
                )
            self._generators[writer] = gen
        return self._generators[writer]

    def sample(
        self,
        logits: torch.Tensor,
        writers: Sequence[str],
        constraints: Sequence[LogitsConstraint | None] | None = None,
        suppress: Sequence[torch.Tensor | None] | None = None,
        greedy: Sequence[bool] | None = None,
    ) -> list[int]:
        """Pick one token per row of ``logits [G, V]``.

        Args:
            logits: float32 logits, modified in place by masks.
            writers: writer name per row (selects the row's generator).
            constraints: optional per-row constraint applied before sampling.
            suppress: optional per-row token ids that may not be sampled.
            greedy: per-row override forcing greedy decoding (the finisher is always greedy).

        Returns:
            One token id per row; under tensor parallelism rank 0's picks, broadcast to every rank (the
            ranks' logits may differ in the last bits, their tokens may not).
        """
        return self.parallel.broadcast_tokens(self._pick(logits, writers, constraints, suppress, greedy))

    def _pick(
        self,
        logits: torch.Tensor,
        writers: Sequence[str],
        constraints: Sequence[LogitsConstraint | None] | None,
        suppress: Sequence[torch.Tensor | None] | None,
        greedy: Sequence[bool] | None,
    ) -> list[int]:
        for row in range(logits.shape[0]):
            if suppress and suppress[row] is not None:
                logits[row, suppress[row]] = float("-inf")
            if constraints and constraints[row] is not None:
                constraints[row].apply(logits[row])
        picks = logits.argmax(dim=-1).tolist()
        if self.temperature == 0.0:
            return picks
        for row in range(logits.shape[0]):
            if greedy and greedy[row]:
                continue
            probs = self._filtered_probs(logits[row] / self.temperature)
            picks[row] = int(torch.multinomial(probs, 1, generator=self._generator(writers[row])).item())
        return picks

    def _filtered_probs(self, scaled: torch.Tensor) -> torch.Tensor:
        if self.top_k > 0:
            kth = torch.topk(scaled, min(self.top_k, scaled.shape[-1])).values[-1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            drop = sorted_probs.cumsum(-1) - sorted_probs >= self.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return probs / probs.sum()
