"""Batched sampling for every row of a forward: masks, greedy and seeded sampling as tensor ops.

Each sampled row carries a :class:`SampleRequest`. What a row may not sample is one packed bitmask per row
(``[R, W] int32``, ``W = ceil(V / 32)``, bit ``j`` of word ``i`` allows token ``32 i + j``, xgrammar's
layout): the run's banned tokens (:class:`BanSet`, precomputed once per run) AND-ed with the row's grammar
mask, which xgrammar's matcher fills on the host. The device applies the masks, takes the argmax, and for
rows with a temperature samples by the Gumbel-max trick over the top-k / top-p filtered distribution.

Randomness is counter-based: the noise of a row is a hash of (the writer's stream key, how many samples
the writer drew before, the token id), computed on the device. A writer's n-th sample therefore depends
only on its seed and ``n``, never on which other rows share the forward, which makes seeded runs
reproducible under batching and lets the whole sampler run inside a captured CUDA graph. The only
device-to-host transfer is the copy of the sampled ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

__all__ = [
    "BanSet",
    "SampleRequest",
    "Sampler",
    "SamplingParams",
    "apply_row_masks",
    "bitmask_words",
    "fill_row_masks",
    "sample_rows",
    "writer_stream",
]

_M32 = 0xFFFFFFFF


def bitmask_words(vocab_size: int) -> int:
    """Int32 words of one row's bitmask for logits of width ``vocab_size``."""
    return -(-vocab_size // 32)


class RowConstraint(Protocol):
    """A grammar matcher of one writer (see :class:`~hogwild_agents.tools.grammar.TokenConstraint`)."""

    def fill(self, bitmask: torch.Tensor, index: int) -> bool:
        """Write the allowed tokens into row ``index`` of a CPU ``[R, W]`` bitmask; True if any is masked."""


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How one run samples: greedy when ``temperature`` is 0; ``seed`` keys every writer's stream."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        """Whether rows with these parameters take the argmax."""
        return self.temperature == 0.0


class BanSet:
    """Token ids a writer may never sample, as sorted ids and as a packed allowed-bits row.

    Args:
        name: how the trace refers to the set (e.g. ``"workers"``).
        ids: the banned token ids.
        vocab_size: the logits width.

    """

    __slots__ = ("ids", "name", "tensor", "words")

    def __init__(self, name: str, ids: Sequence[int], vocab_size: int) -> None:
        self.name = name
        self.ids = tuple(sorted(set(int(i) for i in ids)))
        words = np.full(bitmask_words(vocab_size), -1, dtype=np.int32)
        if self.ids:
            banned = np.asarray(self.ids, dtype=np.int64)
            np.bitwise_and.at(
                words.view(np.uint32), banned >> 5, ~(np.uint32(1) << (banned & 31).astype(np.uint32))
            )
        self.words = words  # [W] int32: bit set = allowed
        self.tensor = torch.tensor(self.ids, dtype=torch.long)  # for the per-row index_fill on CPU


@dataclass(slots=True)
class SampleRequest:
    """One row to sample: from the last position of ``group`` (an index into the forward's groups).

    Attributes:
        group: index of the group whose last fed token's logits are sampled.
        writer: who samples (a worker name, ``"finisher"``); for scripts in tests and the trace.
        params: the run's sampling parameters.
        stream: the writer's 32-bit random stream key (:func:`writer_stream`).
        counter: how many samples the writer drew before this one (its position in the stream).
        ban: tokens the row may never sample, or ``None``.
        constraint: the writer's grammar matcher, or ``None``.
        greedy: take the argmax whatever the temperature (the finisher does).

    """

    group: int
    writer: str
    params: SamplingParams
    stream: int = 0
    counter: int = 0
    ban: BanSet | None = None
    constraint: RowConstraint | None = None
    greedy: bool = False

    @property
    def takes_argmax(self) -> bool:
        """Whether this row is decided by the argmax of its masked logits."""
        return self.greedy or self.params.greedy


def writer_stream(seed: int, writer: str) -> int:
    """The 32-bit stream key of ``writer`` under ``seed`` (stable across processes, unlike ``hash``)."""
    h = (seed ^ (seed >> 32)) & _M32
    for ch in writer.encode():
        h = _mix32_int((h ^ ch) & _M32)
    return _mix32_int(h ^ 0x9E3779B9)


def _mix32_int(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """The murmur3 finaliser on int64 tensors holding values below 2**32 (products wrap, low bits kept)."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def _uniform(stream: torch.Tensor, counter: torch.Tensor, vocab: int) -> torch.Tensor:
    """``[R, V]`` uniforms in (0, 1) keyed by (stream, counter, token id): the rows' random numbers."""
    token = torch.arange(vocab, device=stream.device, dtype=torch.long)
    h = _mix32((counter[:, None] & _M32) ^ _mix32(token[None, :] ^ 0x68E31DA4))
    h = _mix32(h ^ (stream[:, None] & _M32))
    return ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def apply_row_masks(logits: torch.Tensor, bitmask: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Logits with disallowed tokens of masked rows at ``-inf`` (capturable: no host sync).

    Args:
        logits: ``[R, V] float32``.
        bitmask: ``[R, W] int32`` allowed bits (W = ceil(V / 32)).
        masked: ``[R] bool``; rows where it is False are left unchanged whatever their bitmask holds.

    Returns:
        The masked ``[R, V]`` logits (a new tensor).

    """
    rows, vocab = logits.shape
    shifts = torch.arange(32, device=bitmask.device, dtype=torch.int32)
    allowed = ((bitmask.unsqueeze(-1) >> shifts) & 1).view(rows, -1)[:, :vocab].bool()
    return logits.masked_fill(masked[:, None] & ~allowed, float("-inf"))


def sample_rows(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    top_k: torch.Tensor,
    stream: torch.Tensor,
    counter: torch.Tensor,
    greedy_only: bool,
) -> torch.Tensor:
    """One token per row of masked ``[R, V] float32`` logits; ``[R] int64`` ids (capturable).

    Rows whose ``temperature`` is 0 take the argmax. Others sample from ``softmax(logits / temperature)``
    restricted to the ``top_k`` most likely tokens (0: all) and to the smallest prefix whose mass reaches
    ``top_p`` (the most likely token always stays), by the Gumbel-max trick on counter-based noise.

    Args:
        logits: ``[R, V] float32`` masked logits.
        temperature: ``[R] float32``; 0 takes the argmax.
        top_p: ``[R] float32`` nucleus mass.
        top_k: ``[R] int64``; 0 keeps every token.
        stream: ``[R] int64`` the writers' 32-bit stream keys.
        counter: ``[R] int64`` the writers' sample counters.
        greedy_only: every row is greedy: skip the sampling work.

    """
    greedy = logits.argmax(dim=-1)
    if greedy_only:
        return greedy
    rows, vocab = logits.shape
    scaled = logits / temperature.clamp_min(1e-6)[:, None]
    ordered, order = scaled.sort(dim=-1, descending=True)
    rank = torch.arange(vocab, device=logits.device)
    keep = rank[None, :] < torch.where(top_k > 0, top_k, vocab)[:, None]
    probs = torch.softmax(ordered.masked_fill(~keep, float("-inf")), dim=-1)
    keep &= (probs.cumsum(dim=-1) - probs) < top_p[:, None]
    noise = -torch.log(-torch.log(_uniform(stream, counter, vocab).gather(1, order)))
    score = torch.log(probs).masked_fill(~keep, float("-inf")) + noise
    sampled = order.gather(1, score.argmax(dim=-1, keepdim=True))[:, 0]
    return torch.where(temperature == 0, greedy, sampled)


def fill_row_masks(
    requests: Sequence[SampleRequest], bitmask: torch.Tensor, rows: Sequence[int] | None = None
) -> tuple[np.ndarray, list[int]]:
    """Write each request's allowed bits into its row of a CPU ``[N, W] int32`` ``bitmask``.

    Args:
        requests: the rows' requests.
        bitmask: the (pinned) host bitmask.
        rows: the bitmask row of each request (default: request ``i`` fills row ``i``).

    Returns:
        ``masked [len(requests)] bool`` (requests with a ban or an active grammar) and the indices of the
        requests whose grammar masked something (the trace records those masks).

    """
    words = bitmask.numpy()
    masked = np.zeros(len(requests), dtype=np.bool_)
    grammar_rows: list[int] = []
    for i, request in enumerate(requests):
        row = i if rows is None else rows[i]
        ban = request.ban.words if request.ban is not None and request.ban.ids else None
        if request.constraint is not None and request.constraint.fill(bitmask, row):
            grammar_rows.append(i)
            if ban is not None:
                words[row] &= ban
            masked[i] = True
        elif ban is not None:
            words[row] = ban
            masked[i] = True
    return masked, grammar_rows


class Sampler:
    """Samples the rows of an eager forward (the CUDA-graph step runs the same functions in its graph).

    Args:
        vocab_size: the logits width.

    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.last_grammar_masks: dict[int, np.ndarray] = {}  # row -> allowed bits, of the last call

    def sample(self, logits: torch.Tensor, requests: Sequence[SampleRequest]) -> list[int]:
        """One token id per request from its row of ``logits [R, V]`` (float32, row i for request i)."""
        rows = len(requests)
        self.last_grammar_masks = {}
        if not rows:
            return []
        bitmask = torch.full((rows, bitmask_words(self.vocab_size)), -1, dtype=torch.int32)
        grammar_masked: list[int] = []
        if any(r.constraint is not None for r in requests):
            _, grammar_masked = fill_row_masks(requests, bitmask)
        logits = logits.clone() if grammar_masked else logits
        for row, request in enumerate(requests):
            if row in grammar_masked:
                continue
            if request.ban is not None and request.ban.ids:  # bans alone: an index fill is cheaper on CPU
                logits[row].index_fill_(0, request.ban.tensor.to(logits.device), float("-inf"))
        if grammar_masked:
            only = torch.zeros(rows, dtype=torch.bool)
            only[grammar_masked] = True
            logits = apply_row_masks(logits, bitmask.to(logits.device), only.to(logits.device))
            self.last_grammar_masks = {row: bitmask[row].numpy().copy() for row in grammar_masked}
        greedy_only = all(r.takes_argmax for r in requests)
        ids = sample_rows(logits, *self._params(requests, logits.device), greedy_only=greedy_only)
        return ids.tolist()

    @staticmethod
    def _params(requests: Sequence[SampleRequest], device: torch.device) -> list[torch.Tensor]:
        temps = [0.0 if r.takes_argmax else r.params.temperature for r in requests]
        return [
            torch.tensor(temps, dtype=torch.float32, device=device),
            torch.tensor([r.params.top_p for r in requests], dtype=torch.float32, device=device),
            torch.tensor([r.params.top_k for r in requests], dtype=torch.long, device=device),
            torch.tensor([r.stream for r in requests], dtype=torch.long, device=device),
            torch.tensor([r.counter for r in requests], dtype=torch.long, device=device),
        ]
