"""Driving runs: one at a time in the caller's thread, or many at once with their forwards batched.

A :class:`~hogwild_agents.engine.run.Run` never calls the model itself. When it needs logits it yields a
:class:`ForwardRequest` and receives the ``[G, V]`` logits of its groups back (or has
:class:`~hogwild_agents.cache.store.PagePoolExhausted` thrown in); when all its workers wait for tools it
yields a :class:`ToolWait`. Everything else it yields is an :class:`~hogwild_agents.api.events.Event` for the
caller. Two drivers answer those requests:

- :func:`drive` answers them in the caller's thread, one run at a time (tensor-parallel ranks use it, so
  every rank issues the same forwards in the same order);
- :class:`BatchScheduler` steps every active run on one background thread and answers all their forward
  requests with **one** model forward: runs of different requests share the GPU instead of queueing.
  Their views never share blocks, so batching changes no run's attention, only how many rows each
  linear layer processes at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..api.events import Event, FinishedEvent
from ..cache.plan import WriteGroup
from ..cache.store import PagePoolExhausted

if TYPE_CHECKING:
    from ..runner.runner import ModelRunner
    from .run import Run
    from .tools import ToolSession

__all__ = ["BatchScheduler", "ForwardRequest", "RunHandle", "ToolWait", "drive"]

RunSteps = Generator[Any, Any, None]


@dataclass(slots=True)
class ForwardRequest:
    """A run asks for one forward of ``groups`` (tokens not yet reserved), its ``forward_index``-th."""

    groups: list[WriteGroup]
    forward_index: int


@dataclass(slots=True)
class ToolWait:
    """A run has nothing to write until tool calls finish.

    The answer sent back is ``True`` once one of its outstanding calls (every one, with ``every``) has
    finished, and ``False`` at once when it has none outstanding.
    """

    session: ToolSession
    every: bool = False

    def ready(self) -> bool | None:
        """The answer if it can be given now, else ``None`` (the run stays parked)."""
        futures = self.session.outstanding()
        if not futures:
            return False
        done = [f.done() for f in futures]
        return True if (all(done) if self.every else any(done)) else None

    def block(self) -> bool:
        """Wait (in this thread) until :meth:`ready` has an answer and return it."""
        return self.session.wait_for_results(every=self.every)


def drive(steps: RunSteps, runner: ModelRunner) -> Iterator[Event]:
    """Run one request's steps to the end in the caller's thread, yielding its events."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            item = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration:
            return
        reply, error = None, None
        if isinstance(item, ForwardRequest):
            try:
                reply = runner.forward(item.groups, item.forward_index)
            except PagePoolExhausted as e:
                error = e
        elif isinstance(item, ToolWait):
            reply = item.block()
        else:
            yield item


_END = object()
_IDLE_EXIT_S = 2.0


@dataclass(eq=False)
class RunHandle:
    """One run submitted to the scheduler; its events, then an exception or the end mark, go to ``events``."""

    run: Run
    steps: RunSteps
    events: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    request: ForwardRequest | None = None
    waiting: ToolWait | None = None
    reply: Any = None
    error: BaseException | None = None
    cancelled: bool = False
    finished: threading.Event = field(default_factory=threading.Event)


class BatchScheduler:
    """Steps every active run on one daemon thread; their forward requests become one batched forward.

    A round advances each run until it asks for a forward, parks on its tools, or ends; then the
    requests of the round are reserved run by run (a run whose pages run out gets the error, the others
    go on) and run as one forward whose logits are split back. Runs join and leave between rounds.
    """

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self._cv = threading.Condition()
        self._handles: list[RunHandle] = []
        self._thread: threading.Thread | None = None
        self.batched_forwards = 0  # forwards that served more than one run (for tests and benchmarks)

    # ------------------------------------------------------------------ caller side
    def submit(self, run: Run) -> RunHandle:
        """Start (or continue, for a resumed run) ``run`` on the scheduler thread."""
        handle = RunHandle(run, run.iterate())
        with self._cv:
            self._handles.append(handle)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="hogwild-scheduler", daemon=True)
                self._thread.start()
            self._cv.notify()
        return handle

    def events(self, handle: RunHandle) -> Iterator[Event]:
        """The run's events as they come; leaving early cancels the run and waits until its pages are free."""
        done = False
        try:
            while True:
                item = handle.events.get()
                if item is _END:
                    done = True
                    return
                if isinstance(item, BaseException):
                    done = True
                    raise item
                yield item
        finally:
            if not done:
                self.cancel(handle)

    def cancel(self, handle: RunHandle) -> None:
        """Stop ``handle``'s run at the next round boundary and wait until its pages are released."""
        with self._cv:
            handle.cancelled = True
            self._cv.notify()
        handle.finished.wait()

    # ------------------------------------------------------------------ scheduler thread
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._handles:
                    # Idle: end the thread after a while, so an engine nobody uses can be freed; the next
                    # submit starts a new one.
                    if not self._cv.wait(timeout=_IDLE_EXIT_S) and not self._handles:
                        self._thread = None
                        return
                handles = list(self._handles)
            try:
                self._round(handles)
            except BaseException as e:  # a bug here must not leave callers waiting forever: fail their runs
                for handle in handles:
                    handle.events.put(e)
                    self._end(handle, close=True)

    def _round(self, handles: list[RunHandle]) -> None:
        asking = [h for h in handles if self._advance(h)]
        if asking:
            self._forward(asking)
        elif self._handles:  # every run waits for tools: sleep until one of their calls finishes
            futures = [f for h in handles if h.waiting for f in h.waiting.session.outstanding()]
            wait(futures, timeout=0.05, return_when=FIRST_COMPLETED)

    def _advance(self, handle: RunHandle) -> bool:
        """Step ``handle`` until it asks for a forward (→ True), parks on tools, or ends (→ False)."""
        if handle.cancelled:
            self._end(handle, close=True)
            return False
        if handle.waiting is not None:
            answer = handle.waiting.ready()
            if answer is None:
                return False
            handle.waiting, handle.reply = None, answer
        while True:
            try:
                if handle.error is not None:
                    item = handle.steps.throw(handle.error)
                else:
                    item = handle.steps.send(handle.reply)
            except StopIteration:
                self._end(handle)
                return False
            except BaseException as e:  # the run failed: its caller gets the error, the others go on
                handle.events.put(e)
                self._end(handle, close=True)
                return False
            handle.reply, handle.error = None, None
            if isinstance(item, ForwardRequest):
                handle.request = item
                return True
            if isinstance(item, ToolWait):
                answer = item.ready()
                if answer is None:
                    handle.waiting = item
                    return False
                handle.reply = answer
                continue
            handle.events.put(item)
            if isinstance(item, FinishedEvent):  # done, or suspended with pages kept until resumed
                self._end(handle)
                return False

    def _forward(self, asking: list[RunHandle]) -> None:
        served: list[tuple[RunHandle, ForwardRequest]] = []
        for handle in asking:
            request, handle.request = handle.request, None
            assert request is not None
            try:
                self.runner.reserve(request.groups, request.forward_index)
            except PagePoolExhausted as e:
                handle.error = e
                continue
            served.append((handle, request))
        if not served:
            return
        try:
            logits = self.runner.forward_reserved([g for _, r in served for g in r.groups])
        except BaseException as e:  # e.g. out of memory: every run of this forward gets the error
            for handle, _ in served:
                handle.error = e
            return
        if len(served) > 1:
            self.batched_forwards += 1
        for (handle, _), part in zip(served, logits.split([len(r.groups) for _, r in served]), strict=True):
            handle.reply = part

    def _end(self, handle: RunHandle, close: bool = False) -> None:
        if close:
            handle.run.close()
        with self._cv:
            if handle in self._handles:
                self._handles.remove(handle)
        if not handle.finished.is_set():
            handle.events.put(_END)
            handle.finished.set()
