"""The engine step: ``schedule()`` → ``forward()`` → ``postprocess()`` over every active run at once.

One scheduler thread owns the model. Each step it asks every active run for its part of the next forward
(:func:`.run.plan`: decode tokens, headers, tool results, finisher tokens), reserves their pages, runs all
of them as **one** batched forward with sampling on the device, and hands each run its sampled ids
(:func:`.run.apply`: step rule, self-check, tools, stop strings, budgets, commits, events). Runs of
different requests never share blocks, so batching changes no run's tokens, only how many rows each
linear layer processes at once. A run that fails, is cancelled or waits for its tools does not hold up
the others; a request whose prompt does not fit the free pages yet waits until other runs free them.

:func:`drive` is the same loop for one run in the caller's thread (tensor-parallel ranks use it, so every
rank issues the same forwards in the same order).
"""

from __future__ import annotations

import atexit
import dataclasses
import queue
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from typing import Any

from ..api.errors import ContextOverflowError
from ..api.events import Event
from ..cache.store import PagePoolExhausted
from ..runner.runner import ModelRunner, PendingForward, SampledTokens
from ..runner.sampling import SampleRequest
from .pipeline import Continuation
from .protocol import Phase, Plan, Wait
from .run import apply, close, plan, reserve_failed
from .state import RunState

__all__ = ["RunHandle", "Scheduler", "drive"]

_END = object()
_IDLE_EXIT_S = 2.0
_TOOL_POLL_S = 0.05  # longest sleep while every run waits for tools (new runs and cancels wake it sooner)


@dataclass(eq=False)
class RunHandle:
    """One run submitted to the scheduler; its events, then an exception or the end mark, go to ``events``."""

    run: RunState
    events: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False
    injections: list[tuple[str, str]] = field(default_factory=list)  # (role, text), guarded by the cv
    finished: threading.Event = field(default_factory=threading.Event)


class Scheduler:
    """Steps every active run on one daemon thread; their forwards become one batched forward per step."""

    def __init__(self, runner: ModelRunner, overlap: bool = True) -> None:
        _LIVE.add(self)
        self.runner = runner
        self.overlap = overlap  # plan the next decode step while the GPU runs this one (engine.pipeline)
        self._inflight: tuple[list[tuple[RunHandle, Plan]], PendingForward] | None = None
        self.overlapped_steps = 0
        self._cv = threading.Condition()
        self._handles: list[RunHandle] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batched_forwards = 0  # forwards that served more than one run, overlapped ones included
        self.steps = 0

    # ------------------------------------------------------------------ caller side
    def submit(self, run: RunState) -> RunHandle:
        """Start (or continue, for a resumed run) ``run`` on the scheduler thread."""
        handle = RunHandle(run)
        with self._cv:
            if self._closed:
                raise RuntimeError("the engine is closed; create a new HogwildEngine")
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
                yield from item  # one step's events arrive together: one wake-up of the caller per step
        finally:
            if not done:
                self.cancel(handle)

    def cancel(self, handle: RunHandle, wait_freed: bool = True) -> None:
        """Stop ``handle``'s run at the next step (by default also wait until its pages are free)."""
        with self._cv:
            handle.cancelled = True
            self._cv.notify()
        if wait_freed:
            handle.finished.wait()

    def inject(self, handle: RunHandle, role: str, text: str) -> None:
        """Queue a message for ``handle``'s run; it is written at the run's next forward."""
        with self._cv:
            handle.injections.append((role, text))
            self._cv.notify()

    def close(self) -> None:
        """Cancel every run and stop the thread (the engine is being closed)."""
        with self._cv:
            self._closed = True
            for handle in self._handles:
                handle.cancelled = True
            self._cv.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    # ------------------------------------------------------------------ scheduler thread
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._handles:
                    # Idle: end the thread after a while, so an engine nobody uses can be freed; the next
                    # submit starts a new one.
                    if self._closed or (not self._cv.wait(timeout=_IDLE_EXIT_S) and not self._handles):
                        self._thread = None
                        return
                handles = list(self._handles)
            try:
                self.step(handles)
            except BaseException as e:  # a bug here must not leave callers waiting forever: fail their runs
                for handle in handles:
                    self._fail(handle, e)

    def step(self, handles: list[RunHandle]) -> None:
        """One engine step over ``handles``: schedule, forward, postprocess.

        When the step in flight was guessed during the previous one (see :mod:`.pipeline`), scheduling
        is already done; and while the GPU runs this step, the next one is guessed and prepared. If the
        tokens confirm the guess, the next forward is launched before this step's postprocess runs.
        """
        if self._inflight is not None:
            batch, pending = self._inflight
            self._inflight = None
        else:
            batch = self.schedule(handles)
            if not batch:
                self._sleep_on_tools()
                return
            pending = self.forward(batch)
        guess = Continuation.guess([h.run for h, _ in batch], self.runner) if self.overlap else None
        try:
            sampled = self._split(batch, pending.result())
        except BaseException as e:  # e.g. out of memory: every run of this forward gets the error
            if guess is not None:
                guess.undo()
            for handle, _ in batch:
                self._fail(handle, e)
            return
        self.steps += 1
        if guess is None or not self._unchanged(batch):
            if guess is not None:
                guess.undo()
            self.postprocess(batch, sampled)
            return
        next_batch = [(h, g.plan) for (h, _), g in zip(batch, guess.guesses, strict=True)]
        if guess.holds(sampled):
            # Quiet tokens: the guess is what the rules will plan. Launch first; postprocess meanwhile.
            self._inflight = (next_batch, guess.launch(sampled))
            self.batched_forwards += len(next_batch) > 1
            self.postprocess(batch, sampled)
            live = [not h.finished.is_set() for h, _ in batch]
            guess.guesses = [g for g, ok in zip(guess.guesses, live, strict=True) if ok]
            if not guess.matches([s for s, ok in zip(sampled, live, strict=True) if ok]):
                raise RuntimeError("overlap check failed: the step rules planned otherwise than the guess")
            guess.adopt()
            self.overlapped_steps += 1
            return
        # Not quiet: apply first; the guess still stands if the rules left every run where it assumed.
        self.postprocess(batch, sampled)
        if all(not h.finished.is_set() for h, _ in batch) and guess.matches(sampled):
            self._inflight = (next_batch, guess.launch(sampled))
            self.batched_forwards += len(next_batch) > 1
            guess.adopt()
            self.overlapped_steps += 1
            return
        guess.undo()

    def _unchanged(self, batch: list[tuple[RunHandle, Plan]]) -> bool:
        """Whether the batch's runs are exactly the active ones and none was cancelled."""
        with self._cv:
            return {id(h) for h, _ in batch} == {id(h) for h in self._handles} and not any(
                h.cancelled or h.injections for h in self._handles
            )

    def schedule(self, handles: list[RunHandle]) -> list[tuple[RunHandle, Plan]]:
        """Every active run's part of the next forward, pages reserved; ends runs that are over."""
        batch = []
        for handle in handles:
            if handle.cancelled:
                self._end(handle, close_run=True)
                continue
            if handle.injections:
                with self._cv:
                    handle.run.injections.extend(handle.injections)
                    handle.injections.clear()
            try:
                step = self._plan(handle)
            except BaseException as e:  # the run failed: its caller gets the error, the others go on
                self._fail(handle, e)
                continue
            self._deliver(handle)
            if handle.run.phase in (Phase.DONE, Phase.SUSPENDED):
                self._end(handle)
            elif step is not None:
                batch.append((handle, step))
        return batch

    def _plan(self, handle: RunHandle) -> Plan | None:
        """The run's plan with its pages reserved, or ``None`` (it waits for tools or pages, or ended)."""
        run = handle.run
        while True:
            # A prefill that found no room keeps its plan and tries again at the next step.
            step = run.inflight if run.phase is Phase.PREFILL and run.inflight else plan(run)
            if step is None or isinstance(step, Wait):
                return None
            try:
                self.runner.reserve(step.groups, run.forward_index)
            except PagePoolExhausted as e:
                if run.phase is not Phase.PREFILL:
                    reserve_failed(run)
                    continue
                if not any(h.run.blocks and h is not handle for h in self._handles):
                    raise ContextOverflowError(
                        f"the prompt does not fit the free KV pages ({e}); raise max_cache_tokens"
                    ) from e
                return None  # other runs hold the pages: wait for them
            run.written += sum(len(g.token_ids) for g in step.groups)
            return step

    def forward(self, batch: list[tuple[RunHandle, Plan]]) -> PendingForward:
        """Launch one forward for every plan of ``batch`` (its sampled ids are read by ``result()``)."""
        groups = []
        samples: list[SampleRequest] = []
        for _, step in batch:
            offset = len(groups)
            groups.extend(step.groups)
            samples.extend(
                s if not offset else dataclasses.replace(s, group=s.group + offset) for s in step.samples
            )
        if len(batch) > 1:
            self.batched_forwards += 1
        return self.runner.launch(groups, samples)

    @staticmethod
    def _split(batch: list[tuple[RunHandle, Plan]], out: SampledTokens) -> list[SampledTokens]:
        """Each plan's share of a batched forward's sampled tokens, in batch order."""
        parts, start = [], 0
        for _, step in batch:
            n = len(step.samples)
            masks = {i - start: m for i, m in out.grammar_masks.items() if start <= i < start + n}
            parts.append(SampledTokens(out.ids[start : start + n], masks))
            start += n
        return parts

    def postprocess(self, batch: list[tuple[RunHandle, Plan]], sampled: list[SampledTokens]) -> None:
        """Apply each run's sampled tokens; deliver its events; end the runs that finished or paused."""
        for (handle, _), tokens in zip(batch, sampled, strict=True):
            if handle.finished.is_set():  # failed or cancelled while its forward was in flight
                continue
            try:
                apply(handle.run, tokens.ids, tokens.grammar_masks, self.runner.vocab_size)
            except BaseException as e:
                self._fail(handle, e)
                continue
            self._deliver(handle)
            if handle.run.phase in (Phase.DONE, Phase.SUSPENDED):
                self._end(handle)

    def _sleep_on_tools(self) -> None:
        """Every run waits (for tools or pages): sleep until a call finishes, or a run arrives or leaves."""
        with self._cv:
            handles = list(self._handles)
        futures = [f for h in handles for f in h.run.tools.outstanding()]
        if futures:
            wait(futures, timeout=_TOOL_POLL_S, return_when=FIRST_COMPLETED)
        elif handles:
            with self._cv:
                self._cv.wait(timeout=_TOOL_POLL_S)

    # ------------------------------------------------------------------ delivery
    @staticmethod
    def _deliver(handle: RunHandle) -> None:
        run = handle.run
        if run.outbox:
            handle.events.put(run.outbox)
            run.outbox = []

    def _fail(self, handle: RunHandle, error: BaseException) -> None:
        handle.events.put(error)
        self._end(handle, close_run=True)

    def _end(self, handle: RunHandle, close_run: bool = False) -> None:
        if close_run:
            close(handle.run)
        with self._cv:
            if handle in self._handles:
                self._handles.remove(handle)
        if not handle.finished.is_set():
            handle.events.put(_END)
            handle.finished.set()


_LIVE: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _stop_threads_at_exit() -> None:
    # A daemon thread still inside torch or a tokenizer when the interpreter finalises aborts the process
    # ("terminate called without an active exception", seen with idle engines alive at exit): stop them.
    for scheduler in list(_LIVE):
        scheduler.close()


def drive(run: RunState, runner: ModelRunner) -> Iterator[Event]:
    """Run one run to its end (or suspension) in the caller's thread, yielding its events."""
    try:
        while True:
            step = plan(run)
            yield from _drain(run)
            if step is None:
                return
            if isinstance(step, Wait):
                run.tools.wait_for_results(every=step.every)
                continue
            try:
                runner.reserve(step.groups, run.forward_index)
            except PagePoolExhausted:
                if run.phase is Phase.PREFILL:
                    raise
                reserve_failed(run)
                continue
            run.written += sum(len(g.token_ids) for g in step.groups)
            out = runner.forward_sample(step.groups, step.samples)
            apply(run, out.ids, out.grammar_masks, runner.vocab_size)
            yield from _drain(run)
    finally:
        if run.phase not in (Phase.DONE, Phase.SUSPENDED):
            close(run)


def _drain(run: RunState) -> Iterator[Event]:
    events, run.outbox = run.outbox, []
    yield from events
