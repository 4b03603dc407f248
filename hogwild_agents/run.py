"""One run of the engine: prefill, the worker loop (plan → forward → postprocess), the finisher."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .cache import PagePoolExhausted
from .config import HogwildConfig
from .decoding import IncrementalText
from .errors import ContextOverflowError
from .events import (
    AnswerEvent,
    Event,
    FinishedEvent,
    StepCommittedEvent,
    TokenEvent,
    WorkerStoppedEvent,
)
from .layouts import SharedLayoutState, build_view
from .plan import WriteGroup
from .prompts import PromptTexts, step_header
from .result import BlockRecord, ForwardRecord, GroupRecord, RunResult, StopReason, Trace, Usage, WorkerResult
from .sampling import Sampler
from .steps import contains_final_answer, ends_step

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


class Run:
    """Drives one request to completion, yielding events. Create one per request; not reusable."""

    def __init__(self, engine: HogwildEngine, texts: PromptTexts, config: HogwildConfig) -> None:
        self.engine = engine
        self.cfg = config
        self.tok = engine.tokenizer
        self.runner = engine.runner
        self.store = engine.runner.store
        self.texts = texts
        self.sampler = Sampler(config.temperature, config.top_p, config.top_k, config.seed, self.runner.device)
        self.trace = Trace()
        self.usage = Usage()
        self.forward_index = 0
        self.started = time.perf_counter()
        self.context_window = min(config.context_window or 10**9, self.runner.geometry.context_window)
        self.eos = engine.eos_token_ids
        self._suppress = self._suppressed_tokens()
        self._finisher_ids = self._encode(texts.finisher) if config.use_finisher else []
        self._prompt_ids = self._encode(texts.prompt)
        self._check_prompt_fits()

    # ------------------------------------------------------------------ helpers
    def _encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False)) if text else []

    def _suppressed_tokens(self) -> torch.Tensor | None:
        """Workers may not close a think block themselves: the finisher does."""
        if not self.texts.opens_think:
            return None
        ids = self._encode("</think>")
        return torch.tensor(ids, device=self.runner.device) if len(ids) == 1 else None

    def _finisher_reserve(self) -> int:
        return len(self._finisher_ids) + self.cfg.max_answer_tokens if self.cfg.use_finisher else 0

    def _check_prompt_fits(self) -> None:
        headers = sum(len(self._encode(t)) for t in (self.texts.others_header, self.texts.own_header))
        first_steps = self.cfg.workers * (len(self._encode(step_header("Name", 1))) + 4)
        need = len(self._prompt_ids) + headers + first_steps + self._finisher_reserve()
        if need > self.context_window:
            raise ContextOverflowError(
                f"the prompt needs {len(self._prompt_ids)} tokens and the run reserves {need - len(self._prompt_ids)} "
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
        return self.store.new_block(author, kind).id

    def _view(self, worker: int | None, own: int) -> list[int]:
        if worker is None:
            return build_view("combined", self.layout, None, own, with_own_header=False)
        return build_view(self.cfg.layout, self.layout, worker, own)

    def _forward(self, groups: list[WriteGroup]) -> torch.Tensor:
        record = ForwardRecord(index=self.forward_index)
        record.groups = [GroupRecord(g.writer, g.block, list(g.token_ids), list(g.view)) for g in groups]
        self.trace.forwards.append(record)
        logits = self.runner.forward(groups, self.forward_index)
        self.forward_index += 1
        self.usage.forwards += 1
        return logits

    # ------------------------------------------------------------------ phases
    def events(self) -> Iterator[Event]:
        """Run to completion, yielding events; the last one is :class:`FinishedEvent`."""
        try:
            yield from self._prefill()
            reason = yield from self._generate()
            answer = yield from self._finish()
        finally:
            self._record_blocks()
            self.store.release_all()
        self.usage.wall_time_s = time.perf_counter() - self.started
        yield FinishedEvent(self._result(answer, reason))

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
                groups.append(WriteGroup("header", block, self._encode(getattr(self.texts, attr)), [prompt, block]))
        logits = self._forward(groups)
        self.usage.prompt_tokens = sum(len(g.token_ids) for g in groups)
        self.workers = []
        for i, name in enumerate(names):
            worker = _Worker(index=i, name=name, block=self._new_block(name, "step"))
            worker.step_text = IncrementalText(self.tok)
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

    def _feed_text(self, worker: _Worker, text: str, token_ids: list[int] | None = None) -> Iterator[Event]:
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
        total = sum(b.length for b in self.store.blocks.values()) + sum(len(g.token_ids) for g in groups)
        if total + self._finisher_reserve() > self.context_window:
            return "context_window"
        finisher_pages = -(-self._finisher_reserve() // self.store.page_size) + 1
        if self.runner.pages_needed(groups) + finisher_pages > self.store.free_pages:
            return "cache_full"
        return None

    def _generate(self) -> Iterator[Event]:
        """The worker loop. Returns why it ended."""
        while True:
            active = [w for w in self._active() if w.pending]
            if not active:
                return "all_stopped"
            groups = [WriteGroup(w.name, w.block, w.pending, self._view(w.index, w.block)) for w in active]
            reason = self._budget_reason(groups)
            if reason is not None:
                return reason
            try:
                logits = self._forward(groups)
            except PagePoolExhausted:
                return "cache_full"
            self.usage.worker_forwards += 1
            for w in active:
                w.pending = []
            picks = self.sampler.sample(
                logits, [w.name for w in active], suppress=[self._suppress] * len(active)
            )
            for group, worker, token in zip(self.trace.forwards[-1].groups, active, picks, strict=True):
                group.sampled = token
            ended: StopReason | None = None
            for worker, token in zip(active, picks, strict=True):
                outcome = yield from self._postprocess(worker, token)
                ended = ended or outcome
            if ended:
                return ended

    def _postprocess(self, worker: _Worker, token: int) -> Iterator[Event]:
        """Take one sampled token of ``worker``: text, stop rules, step end and commit."""
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
        if not self.cfg.use_finisher and self._hit_stop_string(worker):
            yield from self._stop(worker, "stop_string")
            return None
        if ends_step(worker.step_text.text, delta):
            final = yield from self._commit(worker, token)
            if final and self.cfg.stop_on_final_answer and self.cfg.collaboration:
                return "final_answer"
            return None
        worker.pending = [token]
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

    def _finish(self) -> Iterator[Event]:
        """Stop the workers and, if configured, let the finisher write the answer from the shared state."""
        for worker in self._active():
            yield from self._stop(worker, "run_ended")
        if not self.cfg.use_finisher:
            return "".join(self.workers[0].parts)
        block = self._new_block("finisher", "finisher")
        view = self._view(None, block)
        pending = list(self._finisher_ids)
        self.usage.fed_tokens += len(pending)
        answer = IncrementalText(self.tok)
        for _ in range(self.cfg.max_answer_tokens):
            try:
                logits = self._forward([WriteGroup("finisher", block, pending, view)])
            except PagePoolExhausted:
                break
            token = self.sampler.sample(logits, ["finisher"], greedy=[True])[0]
            self.trace.forwards[-1].groups[0].sampled = token
            if token in self.eos:
                break
            self.usage.answer_tokens += 1
            delta = answer.add([token])
            if delta:
                yield AnswerEvent(delta, self.forward_index - 1)
            if any(stop in answer.text for stop in self.cfg.stop):
                break
            pending = [token]
        text = answer.text
        for stop in self.cfg.stop:
            text = text.split(stop, 1)[0]
        return text.strip()

    # ------------------------------------------------------------------ result
    def _record_blocks(self) -> None:
        for block in self.store.blocks.values():
            self.trace.blocks[block.id] = BlockRecord(
                block.id, block.author, block.kind, list(block.token_ids), list(block.written_at)
            )

    def _result(self, answer: str, reason: Any) -> RunResult:
        workers = [
            WorkerResult(
                name=w.name, text="".join(w.parts), steps=w.steps, generated_tokens=w.generated, stop_reason=w.stopped
            )
            for w in self.workers
        ]
        return RunResult(answer=answer, workers=workers, stop_reason=reason, usage=self.usage, trace=self.trace)
