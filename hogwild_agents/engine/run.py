"""One run of the engine: prefill, the worker loop (plan → forward → postprocess), the finisher."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..api.config import HogwildConfig
from ..api.errors import ContextOverflowError
from ..api.events import (
    AnswerEvent,
    Event,
    FinishedEvent,
    StepCommittedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
    WorkerStoppedEvent,
)
from ..api.results import (
    BlockRecord,
    ForwardRecord,
    GroupRecord,
    RunResult,
    StopReason,
    Trace,
    Usage,
    WorkerResult,
)
from ..cache.layouts import SharedLayoutState, build_view
from ..cache.plan import WriteGroup
from ..cache.store import PagePoolExhausted
from ..runner.sampling import Sampler
from ..text.detokenize import IncrementalText
from ..text.prompts import PromptTexts, step_header
from ..text.steps import contains_final_answer, ends_step
from ..tools import Tool, ToolCall, ToolOutcome
from .scheduler import ForwardRequest, ToolWait
from .tools import ToolSession

if TYPE_CHECKING:
    from .engine import HogwildEngine

__all__ = ["Run"]


@dataclass(slots=True)
class _Worker:
    """Mutable state of one worker during a run."""

    index: int
    name: str
    block: int
    step: int = 1
    pending: list[int] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    generated: int = 0
    since_check: int = 0
    stopped: str = ""
    step_text: IncrementalText | None = None
    feed_only: bool = False  # its next forward only writes tokens (a closed call); the sample is dropped
    call_token: list[int] = field(default_factory=list)  # the unfed token that closed a returned call


class Run:
    """Drives one request to completion, yielding events. Create one per request; not reusable."""

    def __init__(
        self,
        engine: HogwildEngine,
        texts: PromptTexts,
        config: HogwildConfig,
        tools: list[Tool] | None = None,
    ) -> None:
        self.engine = engine
        self.cfg = config
        self.tok = engine.tokenizer
        self.runner = engine.runner
        self.store = engine.runner.store
        self.texts = texts
        self.sampler = Sampler(
            config.temperature,
            config.top_p,
            config.top_k,
            config.seed,
            self.runner.device,
            self.runner.parallel,
        )
        self.trace = Trace()
        self.usage = Usage()
        self.forward_index = 0
        self.started = time.perf_counter()
        self.context_window = min(config.context_window or 10**9, self.runner.geometry.context_window)
        self.eos = engine.eos_token_ids
        self._suppress = self._suppressed_tokens()
        # The finisher never writes '#' header tokens (unless a grammar constrains it anyway); it may end.
        hashes = self.engine.hash_token_ids if config.collaboration and config.ban_header_tokens else []
        self._finisher_suppress = (
            torch.tensor(hashes, device=self.runner.device, dtype=torch.long)
            if hashes and config.response_format is None
            else None
        )
        self._finisher_ids = self._encode(texts.finisher) if config.use_finisher else []
        self._prompt_ids = self._encode(texts.prompt)
        self._check_prompt_fits()
        self.tools = ToolSession(engine, tools or [], config)
        self.block_ids: list[int] = []
        self.suspended = False
        self._resume_outcomes: dict[str, str] | None = None
        self._returned: list[tuple[_Worker | None, ToolCall]] = []
        self._events: Iterator[Event] | None = None
        self._finisher_block: int | None = None
        self._finisher_constraint: Any = None
        self._finisher_results = ""

    # ------------------------------------------------------------------ helpers
    def _encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False)) if text else []

    def _suppressed_tokens(self) -> torch.Tensor | None:
        """Tokens workers may not write.

        With collaboration, tokens holding ``#`` are banned (as in the paper), so workers cannot forge the
        workspace's ``###`` section headers, which small models otherwise copy; and workers may not close
        a think block themselves (the finisher does).
        """
        ids: list[int] = []
        if self.cfg.collaboration and self.cfg.ban_header_tokens:
            ids.extend(self.engine.hash_token_ids)
        if self.cfg.collaboration:
            # As in the paper, collaborating workers cannot end the turn: the run ends through a final
            # answer, a budget or the finisher (small models otherwise stop after one line).
            ids.extend(self.eos)
        if self.texts.opens_think:
            think = self._encode("</think>")
            ids.extend(think if len(think) == 1 else [])
        return torch.tensor(sorted(set(ids)), device=self.runner.device, dtype=torch.long) if ids else None

    def _finisher_reserve(self) -> int:
        return len(self._finisher_ids) + self.cfg.max_answer_tokens if self.cfg.use_finisher else 0

    def _check_prompt_fits(self) -> None:
        headers = sum(len(self._encode(t)) for t in (self.texts.others_header, self.texts.own_header))
        first_steps = self.cfg.workers * (len(self._encode(step_header("Name", 1))) + 4)
        need = len(self._prompt_ids) + headers + first_steps + self._finisher_reserve()
        if need > self.context_window:
            raise ContextOverflowError(
                f"the prompt needs {len(self._prompt_ids)} tokens and the run reserves "
                f"{need - len(self._prompt_ids)} "
                f"more (headers, first steps, finisher), over the context window of {self.context_window}; "
                "shorten the messages or lower max_answer_tokens"
            )
        pages = need // self.store.page_size + 4 * (self.cfg.workers + 4)
        if pages > self.store.num_pages:
            raise ContextOverflowError(
                f"the prompt needs about {pages} KV pages but the store holds {self.store.num_pages}; "
                "raise max_cache_tokens"
            )

    def _new_block(self, author: str, kind: str) -> int:
        block = self.store.new_block(author, kind).id
        self.block_ids.append(block)
        return block

    def _view(self, worker: int | None, own: int) -> list[int]:
        if worker is None:
            return build_view("combined", self.layout, None, own, with_own_header=False)
        return build_view(self.cfg.layout, self.layout, worker, own)

    def _forward(self, groups: list[WriteGroup]) -> Generator[Any, Any, torch.Tensor]:
        """Ask the driver (see :mod:`.scheduler`) for one forward of ``groups``; returns their logits."""
        record = ForwardRecord(index=self.forward_index)
        record.groups = [GroupRecord(g.writer, g.block, list(g.token_ids), list(g.view)) for g in groups]
        self.trace.forwards.append(record)
        logits = yield ForwardRequest(groups, self.forward_index)
        self.forward_index += 1
        self.usage.forwards += 1
        return logits

    # ------------------------------------------------------------------ phases
    def iterate(self) -> Iterator[Event]:
        """Events of this run: from the start, or from where a suspended run stopped."""
        if self._events is None:
            self._events = self.events()
        return self._events

    def close(self) -> None:
        """Abandon the run and release its pages (also for a suspended run)."""
        if self._events is not None:
            self._events.close()
        for block in self.block_ids:
            if block in self.store.blocks:
                self.store.release(block)

    def events(self) -> Iterator[Event]:
        """Run to completion, yielding events; the last one is :class:`FinishedEvent`.

        In return mode a run that hands tool calls to the caller yields a :class:`FinishedEvent` with
        ``tool_calls`` and pauses (``suspended``); :meth:`resume` and iterating again continue it.
        """
        calls: list[ToolCall] = []
        try:
            yield from self._prefill()
            while True:
                reason = yield from self._generate()
                if reason != "tool_calls":
                    break
                yield from self._suspend()
            yield from self._write_late_results()
            for worker in self._active():
                yield from self._stop(worker, "run_ended")
            answer = ""
            if self.cfg.use_finisher:
                pending = list(self._finisher_ids)
                while True:
                    answer, pending = yield from self._finish(pending)
                    calls = self.tools.calls_in_answer(answer)
                    if not calls:
                        break
                    # The finisher itself asked for tools: hand them over, then go on from their results.
                    self._returned = [(None, call) for call in calls]
                    yield from self._suspend()
                    pending += self._encode(self._finisher_results)
                    calls = []
            else:
                answer = self._plain_answer()
            self._record_blocks()
        finally:
            for block in self.block_ids:
                if block in self.store.blocks:
                    self.store.release(block)
        self.usage.wall_time_s = time.perf_counter() - self.started
        yield FinishedEvent(self._result(answer, reason, calls))

    def _suspend(self) -> Iterator[Event]:
        """Return the pending calls to the caller and wait, pages kept, for their results (see resume())."""
        self._record_blocks()
        self.usage.wall_time_s = time.perf_counter() - self.started
        self.suspended = True
        paused = self._result("", "tool_calls", [call for _, call in self._returned])
        paused.trace = self.trace.model_copy(deep=True)  # a snapshot: the live trace grows when resumed
        yield FinishedEvent(paused)
        self.suspended = False
        outcomes = self._resume_outcomes or {}
        # Only what the caller sends back is encoded from here on; everything else is reused in place.
        reused = sum(self.store.blocks[b].length for b in self.block_ids if b in self.store.blocks)
        self.usage = Usage(reused_prompt_tokens=reused)
        self.started = time.perf_counter()
        fmt = self.tools.fmt
        assert fmt is not None

        def result(call: ToolCall) -> ToolOutcome:
            return ToolOutcome(call, outcomes.get(call.id, "Error: the caller sent no result for this call"))

        # Calls of the finisher end its turn: their results come in the template's tool-turn wrapper.
        self._finisher_results = "".join(
            fmt.render_result_block(result(c)) for w, c in self._returned if w is None
        )
        for worker in self.workers:
            mine = [call for owner, call in self._returned if owner is worker]
            if mine:
                worker.pending = list(worker.call_token)
                worker.call_token = []
                yield from self._feed_text(worker, "".join(fmt.inline_result_text(result(c)) for c in mine))
        self._returned.clear()

    @property
    def returned_call_ids(self) -> list[str]:
        """Ids of the calls a suspended run handed to the caller."""
        return [call.id for _, call in self._returned]

    def resume(self, outcomes: dict[str, str]) -> None:
        """Give a suspended run the caller's tool results (call id → content) before iterating it again."""
        self._resume_outcomes = outcomes

    def _prefill(self) -> Iterator[Event]:
        """Encode the prompt and the shared header blocks in one forward, then set up the workers."""
        names = self.cfg.names
        prompt = self._new_block("prompt", "prompt")
        self.layout = SharedLayoutState(prompt=prompt, current=[None] * len(names))
        groups = [WriteGroup("prompt", prompt, self._prompt_ids, [prompt])]
        if self.cfg.collaboration:
            for attr in ("others_header", "separator", "own_header"):
                block = self._new_block("header", attr)
                setattr(self.layout, attr, block)
                groups.append(
                    WriteGroup("header", block, self._encode(getattr(self.texts, attr)), [prompt, block])
                )
        logits = yield from self._forward(groups)
        self.usage.prompt_tokens = sum(len(g.token_ids) for g in groups)
        self.workers = []
        for i, name in enumerate(names):
            worker = _Worker(index=i, name=name, block=self._new_block(name, "step"))
            worker.step_text = IncrementalText(self.tok)
            self.tools.register(name, first=i == 0)
            self.layout.current[i] = worker.block
            self.workers.append(worker)
            if self.cfg.collaboration:
                yield from self._feed_text(worker, step_header(name, 1))
        if not self.cfg.collaboration:
            # Plain generation: each worker's first token comes from the prompt's last position, so the
            # prefill counts as the workers' first forward (max_forwards=N then yields N tokens, as generate).
            self.usage.worker_forwards += 1
            first = logits[:1].expand(len(self.workers), -1).clone()
            picks = self.sampler.sample(first, names, suppress=[self._suppress] * len(names))
            self.trace.forwards[-1].groups[0].sampled = picks[0]
            for worker, token in zip(self.workers, picks, strict=True):
                yield from self._postprocess(worker, token)

    def _feed_text(self, worker: _Worker, text: str, token_ids: list[int] | None = None) -> Iterator[Event]:  # noqa: D417
        """Queue engine-written text (a header, a tool result) for ``worker`` to feed next forward."""
        ids = self._encode(text) if token_ids is None else token_ids
        worker.pending.extend(ids)
        assert worker.step_text is not None
        delta = worker.step_text.add(ids)
        worker.parts.append(delta)
        self.usage.fed_tokens += len(ids)
        yield TokenEvent(worker.name, delta, tuple(ids), self.forward_index, generated=False)

    def _active(self) -> list[_Worker]:
        return [w for w in self.workers if not w.stopped]

    def _budget_reason(self, groups: list[WriteGroup]) -> StopReason | None:
        if self.usage.worker_forwards >= self.cfg.max_forwards:
            return "max_forwards"
        if self.cfg.max_new_tokens is not None and self.usage.generated_tokens >= self.cfg.max_new_tokens:
            return "max_new_tokens"
        return self._room_reason(groups)

    def _room_reason(self, groups: list[WriteGroup]) -> StopReason | None:
        """Why ``groups`` would not fit the context window or the page pool (keeping the finisher's share)."""
        # This run's blocks bound every view of it (other runs and kept runs share the store, not the views).
        mine = sum(self.store.blocks[b].length for b in self.block_ids if b in self.store.blocks)
        total = mine + sum(len(g.token_ids) for g in groups)
        if total + self._finisher_reserve() > self.context_window:
            return "context_window"
        finisher_pages = -(-self._finisher_reserve() // self.store.page_size) + 1
        if self.runner.pages_needed(groups) + finisher_pages > self.store.free_pages:
            return "cache_full"
        return None

    def _collect_results(self) -> Iterator[Event]:
        """Write finished tool results into their callers' steps (the callers resume from them)."""
        for worker in self._active():
            if not self.tools.calling(worker.name):
                continue
            outcomes = self.tools.ready(worker.name)
            if outcomes is None:
                continue
            for o in outcomes:
                yield ToolCallFinishedEvent(
                    worker.name,
                    o.call.id,
                    o.call.name,
                    o.content,
                    o.is_error,
                    o.duration_s,
                    self.forward_index,
                )
            worker.feed_only = False
            yield from self._feed_text(worker, self.tools.result_text(outcomes))

    def _write_late_results(self) -> Iterator[Event]:
        """The run ended with calls in flight: wait for them and write their results before the finisher.

        A call that was started is never dropped: its outcome (or its timeout error) lands in the caller's
        step in one last forward, so the finisher reads it like any other result. The forward is part of
        the finisher's share of the run, so it is not counted against ``max_forwards``; it is skipped only
        when the results no longer fit the context or the page pool (they stay in ``tool_events``).
        """
        if not any(self.tools.calling(w.name) for w in self._active()):
            return
        yield ToolWait(self.tools, every=True)
        for worker in self._active():
            worker.pending = []  # sampled-but-unwritten tokens of other workers go with the ended run
        yield from self._collect_results()
        groups = [
            WriteGroup(w.name, w.block, w.pending, self._view(w.index, w.block))
            for w in self._active()
            if w.pending
        ]
        if groups and self._room_reason(groups) is None:
            try:
                yield from self._forward(groups)
            except PagePoolExhausted:
                pass

    def _generate(self) -> Iterator[Event]:
        """The worker loop: plan, forward, postprocess. Returns why it ended."""
        while True:
            yield from self._collect_results()
            active = [w for w in self._active() if w.pending]
            if not active:
                if not (yield ToolWait(self.tools)):
                    return "all_stopped"
                continue
            groups = [WriteGroup(w.name, w.block, w.pending, self._view(w.index, w.block)) for w in active]
            reason = self._budget_reason(groups)
            if reason is not None:
                return reason
            try:
                logits = yield from self._forward(groups)
            except PagePoolExhausted:
                return "cache_full"
            self.usage.worker_forwards += 1
            for w in active:
                w.pending = []
            constraints = [None if w.feed_only else self.tools.constraint(w.name) for w in active]
            picks = self.sampler.sample(
                logits,
                [w.name for w in active],
                constraints=constraints,
                suppress=[self._suppress] * len(active),
            )
            ended: StopReason | None = None
            for group, worker, token, constraint in zip(
                self.trace.forwards[-1].groups, active, picks, constraints, strict=True
            ):
                if worker.feed_only:  # it only wrote the token that closed its call; it now waits
                    worker.feed_only = False
                    continue
                group.sampled = token
                if constraint is not None and token not in self.eos:
                    constraint.accept(token)
                outcome = yield from self._postprocess(worker, token)
                ended = ended or outcome
            if ended:
                return ended

    def _postprocess(self, worker: _Worker, token: int) -> Iterator[Event]:
        """Take one sampled token of ``worker``: text, tool calls, stop rules, step end and commit."""
        if token in self.eos:
            yield from self._stop(worker, "eos")
            return None
        worker.generated += 1
        worker.since_check += 1
        self.usage.generated_tokens += 1
        assert worker.step_text is not None
        delta = worker.step_text.add([token])
        worker.parts.append(delta)
        yield TokenEvent(worker.name, delta, (token,), self.forward_index - 1)
        calls = self.tools.detect(worker.name, delta)
        if calls:
            return (yield from self._start_calls(worker, token, calls))
        if not self.cfg.use_finisher and self._hit_stop_string(worker):
            yield from self._stop(worker, "stop_string")
            return None
        if ends_step(worker.step_text.text, delta) and not self.tools.in_call(worker.name):
            final = yield from self._commit(worker, token)
            if final and self.cfg.stop_on_final_answer and self.cfg.collaboration:
                return "final_answer"
            return None
        worker.pending = [token]
        return None

    def _start_calls(self, worker: _Worker, token: int, calls: list[ToolCall]) -> Iterator[Event]:
        """A worker closed tool call(s): hand them to the caller (return mode) or run them (execute mode)."""
        for call in calls:
            yield ToolCallStartedEvent(
                worker.name, call.id, call.name, call.arguments, self.forward_index - 1
            )
        if self.cfg.tool_mode == "return":
            worker.call_token = [token]
            self._returned.extend((worker, call) for call in calls)
            return "tool_calls"
        for call in calls:
            self.tools.submit(worker.name, call)
        # The closing token is written next forward (its sample dropped); then the worker waits.
        worker.pending = [token]
        worker.feed_only = True
        return None

    def _hit_stop_string(self, worker: _Worker) -> bool:
        text = "".join(worker.parts)
        for stop in self.cfg.stop:
            cut = text.find(stop)
            if cut >= 0:
                worker.parts = [text[:cut]]
                return True
        return False

    def _commit(self, worker: _Worker, end_token: int) -> Iterator[Event]:
        """Finish ``worker``'s step. Returns whether the step holds a final answer.

        The token that ended the step has not been fed yet; it opens the next block (as in the paper), so
        the committed block's bytes are final and moving its id is the whole commit.
        """
        assert worker.step_text is not None
        text = worker.step_text.text
        worker.steps.append(text)
        yield StepCommittedEvent(worker.name, worker.step, text, self.forward_index - 1)
        if self.cfg.layout != "contiguous":
            self.layout.history.append(worker.block)
            worker.block = self._new_block(worker.name, "step")
            self.layout.current[worker.index] = worker.block
        worker.step += 1
        worker.step_text.reset()
        worker.pending = [end_token]
        worker.step_text.add([end_token])
        if self.cfg.collaboration:
            header = step_header(worker.name, worker.step)
            if self.cfg.self_check_every and worker.since_check >= self.cfg.self_check_every:
                header += self.cfg.self_check_text
                worker.since_check = 0
            yield from self._feed_text(worker, header)
        return contains_final_answer(text)

    def _stop(self, worker: _Worker, reason: str) -> Iterator[Event]:
        worker.stopped = reason
        worker.pending = []
        yield WorkerStoppedEvent(worker.name, reason, self.forward_index - 1)

    def _plain_answer(self) -> str:
        """Without a finisher the first worker's text is the answer (plain generation)."""
        return "".join(self.workers[0].parts)

    def _finish(self, pending: list[int]) -> Iterator[Event]:
        """Let the finisher write (or go on writing) the answer from the whole shared state.

        Returns the answer text of this turn and the sampled-but-unfed last token (for a resumed turn).
        """
        if self._finisher_block is None:
            self._finisher_block = self._new_block("finisher", "finisher")
            self._finisher_constraint = self.tools.finisher_constraint()
        block = self._finisher_block
        constraint = self._finisher_constraint
        if constraint is not None and constraint.is_completed:
            constraint.reset()  # a resumed turn writes a fresh answer (or call)
        view = self._view(None, block)
        self.usage.fed_tokens += len(pending)
        answer = IncrementalText(self.tok)
        streamed = 0  # characters of the answer already sent as AnswerEvents
        # A forced call or JSON answer cut short is worthless: give constrained output room to close.
        limit = self.cfg.max_answer_tokens if constraint is None else max(self.cfg.max_answer_tokens, 256)
        for _ in range(limit):
            try:
                logits = yield from self._forward([WriteGroup("finisher", block, pending, view)])
            except PagePoolExhausted:
                break
            token = self.sampler.sample(
                logits,
                ["finisher"],
                constraints=[constraint],
                suppress=[self._finisher_suppress],
                greedy=[True],
            )[0]
            self.trace.forwards[-1].groups[0].sampled = token
            if token in self.eos:  # the turn's end is rendered by the template if the run resumes
                pending = []
                break
            pending = [token]
            if constraint is not None:
                constraint.accept(token)
            self.usage.answer_tokens += 1
            answer.add([token])
            visible = self._streamable(answer.text, final=False)
            if len(visible) > streamed:
                yield AnswerEvent(visible[streamed:], self.forward_index - 1)
                streamed = len(visible)
            if any(stop in answer.text for stop in self.cfg.stop):
                break
            if constraint is not None and constraint.is_terminated:
                break
        text = self._streamable(answer.text, final=True)
        if len(text) > streamed:  # what was held back as a possible stop string's start, and wasn't one
            yield AnswerEvent(text[streamed:], self.forward_index - 1)
        return text.strip(), pending

    def _streamable(self, text: str, final: bool) -> str:
        """The answer up to the first stop string; unless ``final``, minus a tail that may begin one."""
        for stop in self.cfg.stop:
            text = text.split(stop, 1)[0]
        if not final:
            starts = (k for s in self.cfg.stop for k in range(1, len(s)) if text.endswith(s[:k]))
            text = text[: len(text) - max(starts, default=0)]
        return text

    # ------------------------------------------------------------------ result
    def _record_blocks(self) -> None:
        for block in (self.store.blocks[b] for b in self.block_ids if b in self.store.blocks):
            self.trace.blocks[block.id] = BlockRecord(
                block.id, block.author, block.kind, list(block.token_ids), list(block.written_at)
            )

    def _result(self, answer: str, reason: Any, calls: list[ToolCall] | None = None) -> RunResult:
        workers = [
            WorkerResult(
                name=w.name,
                text="".join(w.parts),
                steps=w.steps,
                generated_tokens=w.generated,
                stop_reason=w.stopped,
            )
            for w in self.workers
        ]
        return RunResult(
            answer=answer,
            workers=workers,
            stop_reason=reason,
            usage=self.usage.model_copy(),
            tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls or []],
            tool_events=list(self.tools.log),
            trace=self.trace,
        )
