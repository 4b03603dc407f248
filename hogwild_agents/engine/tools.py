"""Tool use inside one run: detecting calls per worker, constraining decoding, running tools concurrently."""

from __future__ import annotations

import json
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..api.config import HogwildConfig
from ..api.errors import InvalidRequestError
from ..tools import Tool, ToolCall, ToolCallDetector, ToolOutcome, parse_tool_calls, tokenizer_counters
from ..tools.grammar import TokenConstraint

if TYPE_CHECKING:
    from .engine import HogwildEngine

__all__ = ["ToolSession", "finisher_may_call", "normalize_tools"]


def finisher_may_call(tools: list[Tool], cfg: HogwildConfig) -> bool:
    """Whether the finisher may answer with tool calls: tools bound, returned to the caller, not 'none'."""
    return bool(tools) and cfg.tool_mode == "return" and cfg.tool_choice != "none"


def normalize_tools(tools: list[Any] | None, mode: str) -> list[Tool]:
    """Accept :class:`Tool` objects or OpenAI function schemas; execute mode needs callables."""
    out: list[Tool] = []
    for i, tool in enumerate(tools or []):
        if isinstance(tool, Tool):
            out.append(tool)
        elif isinstance(tool, dict) and isinstance(tool.get("function", tool), dict):
            spec = tool.get("function", tool)
            if "name" not in spec:
                raise InvalidRequestError(f"tool {i} has no 'name': {json.dumps(tool)[:120]}")
            out.append(
                Tool(
                    name=spec["name"],
                    description=spec.get("description", ""),
                    parameters=spec.get("parameters") or {"type": "object", "properties": {}},
                )
            )
        else:
            raise InvalidRequestError(
                f"tool {i} must be a hogwild_agents.Tool or an OpenAI function schema dict, "
                f"got {type(tool).__name__}"
            )
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"tool names must be unique, got {names}")
    if mode == "execute":
        missing = [t.name for t in out if t.func is None]
        if missing:
            raise InvalidRequestError(
                f"tool_mode='execute' needs callables, but {missing} have none; pass Tool objects "
                "with func=, "
                "or use tool_mode='return' to get the calls back"
            )
    return out


@dataclass(slots=True)
class _WorkerTools:
    detector: ToolCallDetector
    constraint: TokenConstraint | None
    calling: list[tuple[ToolCall, Future[ToolOutcome]]] = field(default_factory=list)
    forced: bool = False  # the constraint forces a call now; free text (with valid calls) follows it


class ToolSession:
    """Per-run tool state: one detector and one grammar matcher per worker, the executor, the call budget."""

    def __init__(self, engine: HogwildEngine, tools: list[Tool], cfg: HogwildConfig) -> None:
        self.engine = engine
        self.tools = tools
        self.by_name = {t.name: t for t in tools}
        self.cfg = cfg
        self.fmt = engine.tool_format if tools else None
        self.parallel = engine.runner.parallel  # tools run on rank 0 only; their outcomes are broadcast
        choice = cfg.tool_choice
        if tools and choice not in ("auto", "none", "required", "any") and choice not in self.by_name:
            raise InvalidRequestError(
                f"tool_choice {choice!r} is not 'auto', 'none', 'required', 'any' or one of the tools "
                f"{sorted(self.by_name)}"
            )
        self._active = bool(tools) and choice != "none"
        constrain = self._active and cfg.constrain_tool_calls
        self._worker_grammar = (
            engine.grammar_factory.tool_calls(tools, "auto", self.fmt) if constrain else None
        )
        self._workers: dict[str, _WorkerTools] = {}
        self.calls_made = 0
        self.log: list[dict[str, Any]] = []
        self.returned: list[ToolCall] = []
        self._count, self._truncate = tokenizer_counters(engine.tokenizer)

    @property
    def enabled(self) -> bool:
        """Whether workers may call tools in this run."""
        return self._active

    def _state(self, worker: str, first: bool = False) -> _WorkerTools:
        if worker not in self._workers:
            factory = self.engine.grammar_factory
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
            state.constraint = (
                self.engine.grammar_factory.constraint(grammar) if grammar is not None else None
            )
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
            future.set_result(
                ToolOutcome(
                    call,
                    f"Error: the limit of {self.cfg.max_tool_calls} tool calls per run is reached",
                    is_error=True,
                )
            )
        else:
            future = self.engine.tool_executor.submit(
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
        for outcome in outcomes:
            self.log.append(
                {
                    "worker": worker,
                    "id": outcome.call.id,
                    "name": outcome.call.name,
                    "arguments": outcome.call.arguments,
                    "content": outcome.content,
                    "is_error": outcome.is_error,
                    "truncated": outcome.truncated,
                    "duration_s": round(outcome.duration_s, 4),
                }
            )
        return outcomes

    def outstanding(self) -> list[Future[ToolOutcome]]:
        """Every call whose result has not been written yet, finished or not."""
        return [f for s in self._workers.values() for _, f in s.calling]

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
        factory = self.engine.grammar_factory
        if self.cfg.response_format is not None:
            return factory.constraint(factory.json_schema(self.cfg.response_format))
        if not finisher_may_call(self.tools, self.cfg):
            return None
        return factory.constraint(factory.tool_calls(self.tools, self.cfg.tool_choice, self.fmt))

    def calls_in_answer(self, text: str) -> list[ToolCall]:
        """Calls the finisher wrote (return mode), parsed leniently; malformed ones are dropped."""
        if not finisher_may_call(self.tools, self.cfg):
            return []
        try:
            return [c for c in parse_tool_calls(text, self.tools, self.fmt) if c.error is None]
        except ValueError:
            return []
