"""Tool use inside one run: per-worker call detection and grammars, running calls, writing their results.

:class:`ToolSession` holds a run's tool state (one detector and one grammar matcher per worker, the calls
in flight, the call budget, the log). The step rules apply it to the run state (:mod:`.steps`,
:mod:`.generate`): a worker that closed a call hands it over (return mode) or starts it and pauses
(execute mode); finished calls are written into their callers' steps, which every worker's view contains.
"""

from __future__ import annotations

from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field

from ..api.config import HogwildConfig
from ..api.results import ToolEventRecord
from ..runner.distributed import ParallelContext
from ..tools import Tool, ToolCall, ToolCallDetector, ToolOutcome, parse_tool_calls, tokenizer_counters
from ..tools.grammar import TokenConstraint
from ..tools.schema import check_tool_choice, finisher_may_call
from .resources import RunResources

__all__ = ["ToolSession"]


@dataclass(slots=True)
class _WorkerTools:
    detector: ToolCallDetector
    constraint: TokenConstraint | None
    calling: list[tuple[ToolCall, Future[ToolOutcome]]] = field(default_factory=list)
    forced: bool = False  # the constraint forces a call now; free text (with valid calls) follows it


class ToolSession:
    """Per-run tool state: one detector and one grammar matcher per worker, the calls, the call budget."""

    def __init__(self, res: RunResources, tools: list[Tool], cfg: HogwildConfig) -> None:
        self.res = res
        self.tools = tools
        self.by_name = {t.name: t for t in tools}
        self.cfg = cfg
        check_tool_choice(cfg.tool_choice, tools)
        self.fmt = res.tool_format if tools else None
        self.parallel: ParallelContext = res.parallel  # tools run on rank 0; their outcomes are broadcast
        self._active = bool(tools) and cfg.tool_choice != "none"
        constrain = self._active and cfg.constrain_tool_calls
        self._worker_grammar = res.grammar_factory.tool_calls(tools, "auto", self.fmt) if constrain else None
        self._workers: dict[str, _WorkerTools] = {}
        self.calls_made = 0
        self.log: list[ToolEventRecord] = []
        self._count, self._truncate = tokenizer_counters(res.tokenizer)

    @property
    def enabled(self) -> bool:
        """Whether workers may call tools in this run."""
        return self._active

    @property
    def may_finish_with_calls(self) -> bool:
        """Whether the finisher may answer with tool calls (see :func:`finisher_may_call`)."""
        return finisher_may_call(self.tools, self.cfg.tool_mode, self.cfg.tool_choice)

    def _state(self, worker: str, first: bool = False) -> _WorkerTools:
        if worker not in self._workers:
            factory = self.res.grammar_factory
            grammar = self._worker_grammar
            # Execute mode with tool_choice required/any/<name>: the first worker opens with a forced call.
            forced = (
                first and self.cfg.tool_mode == "execute" and self.cfg.tool_choice not in ("auto", "none")
            )
            if forced:
                grammar = factory.tool_calls(self.tools, self.cfg.tool_choice, self.fmt)
            constraint = factory.constraint(grammar) if grammar is not None else None
            self._workers[worker] = _WorkerTools(
                ToolCallDetector(self.fmt, self.tools), constraint, forced=forced
            )
        return self._workers[worker]

    def register(self, worker: str, first: bool) -> None:
        """Create the worker's tool state (``first``: the worker a required call is forced on)."""
        if self.enabled:
            self._state(worker, first)

    def constraint(self, worker: str) -> TokenConstraint | None:
        """The worker's grammar matcher (free text until a call starts; then a schema-valid call)."""
        if not self.enabled:
            return None
        state = self._state(worker)
        if state.forced and state.constraint is not None and state.constraint.is_completed:
            state.forced = False
            grammar = self._worker_grammar
            state.constraint = self.res.grammar_factory.constraint(grammar) if grammar is not None else None
        return state.constraint

    def detect(self, worker: str, text: str) -> list[ToolCall]:
        """Feed a worker's new text; return the calls it completed."""
        return self._state(worker).detector.feed(text) if self.enabled else []

    def in_call(self, worker: str) -> bool:
        """Whether the worker is in the middle of writing a call (no step may end there)."""
        return self.enabled and self._state(worker).detector.in_candidate

    def submit(self, worker: str, call: ToolCall) -> None:
        """Start running ``call`` for ``worker`` (or answer at once with an error past the call budget)."""
        state = self._state(worker)
        future: Future[ToolOutcome]
        if not self.parallel.is_leader:
            future = Future()  # never runs here: rank 0 broadcasts the outcome (see ready())
        elif self.calls_made >= self.cfg.max_tool_calls:
            future = Future()
            limit = self.cfg.max_tool_calls
            future.set_result(
                ToolOutcome(call, f"Error: the limit of {limit} tool calls per run is reached", is_error=True)
            )
        else:
            future = self.res.executor.submit(
                call,
                self.by_name.get(call.name),
                timeout_s=self.cfg.tool_timeout_s,
                max_result_tokens=self.cfg.max_tool_result_tokens,
                count_tokens=self._count,
                truncate=self._truncate,
            )
        self.calls_made += 1
        state.calling.append((call, future))

    def calling(self, worker: str) -> bool:
        """Whether the worker has calls whose results it has not read yet."""
        return bool(self.enabled and self._state(worker).calling)

    def ready(self, worker: str) -> list[ToolOutcome] | None:
        """All outcomes of the worker's calls if every one is done (and forget them), else None."""
        state = self._state(worker)
        outcomes: list[ToolOutcome] | None = None
        if self.parallel.is_leader and all(future.done() for _, future in state.calling):
            outcomes = [future.result() for _, future in state.calling]
        outcomes = self.parallel.broadcast_object(outcomes)
        if outcomes is None:
            return None
        state.calling.clear()
        for o in outcomes:
            self.log.append(
                ToolEventRecord(
                    worker=worker,
                    id=o.call.id,
                    name=o.call.name,
                    arguments=o.call.arguments,
                    content=o.content,
                    is_error=o.is_error,
                    truncated=o.truncated,
                    duration_s=round(o.duration_s, 4),
                )
            )
        return outcomes

    def outstanding(self) -> list[Future[ToolOutcome]]:
        """Every call whose result has not been written yet, finished or not."""
        return [f for s in self._workers.values() for _, f in s.calling]

    def cancel_outstanding(self) -> None:
        """Give up the calls in flight (the run is cancelled): their results will not be written."""
        for future in self.outstanding():
            future.cancel()

    def wait_for_results(self, every: bool = False) -> bool:
        """Block until one outstanding call (every one, with ``every``) has finished.

        Returns False at once when no call is outstanding. Rank 0 decides for all ranks.
        """
        futures = self.outstanding() if self.parallel.is_leader else []
        if futures:
            wait(futures, return_when=ALL_COMPLETED if every else FIRST_COMPLETED)
        return self.parallel.broadcast_object(bool(futures))

    def result_text(self, outcomes: list[ToolOutcome]) -> str:
        """The text written into the caller's step after its call(s)."""
        assert self.fmt is not None
        return "".join(self.fmt.inline_result_text(o) for o in outcomes)

    def finisher_constraint(self) -> TokenConstraint | None:
        """The finisher's grammar: a JSON schema answer, a forced call, or free text with valid calls."""
        factory = self.res.grammar_factory
        if self.cfg.response_format is not None:
            return factory.constraint(factory.json_schema(self.cfg.response_format))
        if not self.may_finish_with_calls:
            return None
        return factory.constraint(factory.tool_calls(self.tools, self.cfg.tool_choice, self.fmt))

    def calls_in_answer(self, text: str) -> list[ToolCall]:
        """Calls the finisher wrote (return mode), parsed leniently; malformed ones are dropped."""
        if not self.may_finish_with_calls:
            return []
        try:
            return [c for c in parse_tool_calls(text, self.tools, self.fmt) if c.error is None]
        except ValueError:
            return []
