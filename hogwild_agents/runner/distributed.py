"""Tensor parallelism across the GPUs of one host: who this process is, and the two broadcasts it needs.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank loads the model with transformers' tensor-parallel plan
(attention heads and MLP columns split across ranks; the full logits gathered on every rank) and runs the
engine's loop SPMD: same plans, same forwards, each rank holding its heads' share of the shared paged KV
cache. Two things could make ranks drift apart, and both are decided once, on rank 0, then broadcast:
the sampled tokens of every forward (one small tensor), and tool outcomes (tools run on rank 0 only).
With one process every helper is the identity, so single-GPU behaviour is unchanged.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["SINGLE_PROCESS", "ParallelContext"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ParallelContext:
    """This process's place in a tensor-parallel group (``world_size`` 1: no parallelism).

    Attributes:
        rank: this process's rank in ``group`` (rank 0 samples, runs tools and consumes results).
        world_size: number of ranks sharing the model.
        group: the process group (``None``: the default group).
        device: where broadcast tensors live (CUDA for NCCL, CPU for gloo).
    """

    rank: int = 0
    world_size: int = 1
    group: Any = None
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """Whether more than one rank shares the model."""
        return self.world_size > 1

    @property
    def is_leader(self) -> bool:
        """Whether this rank decides (samples, runs tools) and consumes events and results."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> ParallelContext:
        """The context of a ``torchrun`` launch, initialising the default process group if needed.

        Returns :data:`SINGLE_PROCESS` when ``WORLD_SIZE`` is unset or 1. Uses NCCL when CUDA is available
        (one GPU per local rank), else gloo. NVLink multicast (NVLS) is switched off unless the launcher set
        ``NCCL_NVLS_ENABLE`` itself: the lent multi-GPU hosts do not support it.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return SINGLE_PROCESS
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
            atexit.register(_destroy_process_group)  # we made it, we end it: no rank left in a barrier
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), group=None, device=device)

    def broadcast_tokens(self, tokens: list[int]) -> list[int]:
        """Rank 0's ``tokens`` on every rank (one small int64 broadcast; identity with one rank)."""
        if not self.enabled:
            return tokens
        buf = torch.tensor(tokens, dtype=torch.long, device=self.device)
        dist.broadcast(buf, src=0, group=self.group)
        return buf.tolist()

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` (any picklable object) on every rank; identity with one rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group, device=self.device)
        return box[0]


SINGLE_PROCESS = ParallelContext()
"""The context of an ordinary single-process engine."""


def _destroy_process_group() -> None:
    """End the default process group at exit (a group left open makes ranks hang in their last barrier)."""
    if dist.is_initialized():
        dist.destroy_process_group()
