"""Which rows a run samples, and how: the sampling request of a worker or of the finisher."""

from __future__ import annotations

from ..runner.sampling import SampleRequest
from .state import FinisherState, RunState, WorkerState

__all__ = ["finisher_sample", "worker_sample"]


def worker_sample(
    run: RunState, worker: WorkerState, group: int, constraint: object | None = None
) -> SampleRequest:
    """The request for ``worker``'s next token, drawn from the last position of ``group``."""
    request = SampleRequest(
        group=group,
        writer=worker.name,
        params=run.sampling,
        stream=worker.stream,
        counter=worker.samples,
        ban=run.worker_ban,
        constraint=constraint,  # type: ignore[arg-type]
    )
    worker.samples += 1
    return request


def finisher_sample(run: RunState, finisher: FinisherState, group: int) -> SampleRequest:
    """The finisher's next token: always greedy, with its own bans and grammar."""
    request = SampleRequest(
        group=group,
        writer="finisher",
        params=run.sampling,
        stream=finisher.stream,
        counter=finisher.samples,
        ban=run.finisher_ban,
        constraint=finisher.constraint,
        greedy=True,
    )
    finisher.samples += 1
    return request
