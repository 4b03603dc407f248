"""Which rows a run samples, and how: the sampling request of a worker or of the finisher."""

from __future__ import annotations

from ..runner.sampling import BanSet, SampleRequest
from ..text.markup import MarkupGuard
from .state import FinisherState, RunState, WorkerState

__all__ = ["finisher_sample", "guarded_ban", "worker_sample"]


def guarded_ban(run: RunState, base: BanSet | None, guard: MarkupGuard | None) -> BanSet | None:
    """The writer's bans now: the run's set plus the tokens its markup guard forbids from here."""
    if guard is None:
        return base
    extra = guard.banned()
    if not extra:
        return base
    ids = tuple(sorted(set(base.ids if base is not None else ()) | set(extra)))
    name = f"{base.name if base is not None else 'none'}+markup@{guard.state}"
    return run.res.ban_set(name, ids)


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
        ban=guarded_ban(run, run.worker_ban, worker.guard),
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
        ban=guarded_ban(run, run.finisher_ban, finisher.guard),
        constraint=finisher.constraint,
        greedy=True,
    )
    finisher.samples += 1
    return request
