"""Tool use inside one run: per-worker call detection and grammars, running calls, writing their results.

:class:`ToolSession` holds a run's tool state (one detector and one grammar matcher per worker, the calls
in flight, the call budget, the log). The step rules apply it to the run state (:mod:`.steps`,
:mod:`.generate`): a worker that closed a call hands it over (return mode) or starts it and pauses
(execute mode); finished calls are written into their callers' steps, which every worker's view contains.
"""

from __future__ import annotations

from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from ..api.config import HogwildConfig
from ..api.errors import InvalidRequestError
from ..api.results import ToolEventRecord
from ..runner.distributed import ParallelContext
from ..text.untrusted import join_pieces
from ..tools import Tool, ToolCall, ToolCallDetector, ToolOutcome, parse_tool_calls, tokenizer_counters
from ..tools.grammar import TokenConstraint
from ..tools.schema import check_tool_choice, finisher_may_call, grammar_error
from .resources import RunResources

__all__ = ["ToolSession"]


def tag_openings(pieces: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Markup to ban for wrappers like ``<tool_call>``: their opening (``<tool_call``).

    Variants with attributes or spaces (``<tool_call name=...>``, ``<tool_response >``) are banned too.
    """
    out = []
    for piece in pieces:
        piece = piece.strip()
        if piece.startswith("<") and piece.endswith(">") and len(piece) > 2:
            piece = piece[:-1]
        if piece:
            out.append(piece)
    return tuple(dict.fromkeys(out))


@dataclass(slots=True)
class _WorkerTools:
    tools: list[Tool]  # the tools this worker may call (its role's, or all)
    detector: ToolCallDetector
    constraint: TokenConstraint | None
    auto_grammar: Any  # its free-text-until-a-call grammar (None: calls parsed from free text)
    calling: list[tuple[ToolCall, Future[ToolOutcome]]] = field(default_factory=list)
    forced: bool = False  # the constraint forces a call now; free text (with valid calls) follows it


class ToolSession:
    """Per-run tool state: one detector and one grammar matcher per worker, the calls, the call budget.

    Each worker may call the tools of its role (all tools without roles); its grammar and its call
    detection know only those, so it cannot call another worker's tool even when forced.
    """

    def __init__(self, res: RunResources, tools: list[Tool], cfg: HogwildConfig) -> None:
        self.res = res
        self.tools = tools
        self.by_name = {t.name: t for t in tools}
        self.cfg = cfg
        check_tool_choice(cfg.tool_choice, tools)
        self.fmt = res.tool_format if tools else None
        self.parallel: ParallelContext = res.parallel  # tools run on rank 0; their outcomes are broadcast
        self._choices = self._worker_choices(tools, cfg)
        self._active = bool(tools) and cfg.tool_choice != "none" and any(t for t, _ in self._choices.values())
        self._grammars: dict[tuple[str, ...], Any] = {}
        self._workers: dict[str, _WorkerTools] = {}
        self.calls_made = 0
        self.log: list[ToolEventRecord] = []
        self._count, self._truncate = tokenizer_counters(res.tokenizer)
        self._compile_up_front()
        self._answer: TokenConstraint | None = None
        if cfg.response_format is not None and not cfg.use_finisher:
            # Plain generation: the first worker's text is the answer, so the schema constrains it.
            if self._active:
                raise InvalidRequestError(
                    "response_format together with tools needs the finisher to write the answer: pass "
                    "collaboration=True (or finisher=True), or tool_choice='none'"
                )
            factory = res.grammar_factory
            self._answer = factory.constraint(factory.json_schema(cfg.response_format))

    def _compile_up_front(self) -> None:
        """Compile every grammar the workers may need now (later uses hit the cache).

        A schema the compiler refuses is then a request error before any forward, not a failure on the
        scheduler thread.
        """
        if not self._active:
            return
        for mine, choice in self._choices.values():
            if not mine:
                continue
            try:
                if self.cfg.constrain_tool_calls:
                    self._grammar(mine, "auto")
                if choice not in ("auto", "none"):
                    self._grammar(mine, choice)
            except InvalidRequestError:
                raise
            except Exception as e:  # xgrammar raises RuntimeError naming the schema problem
                raise grammar_error(f"the tools' schemas ({', '.join(t.name for t in mine)})", e) from e

    def _worker_choices(self, tools: list[Tool], cfg: HogwildConfig) -> dict[str, tuple[list[Tool], str]]:
        """Each worker's tools and first-step tool_choice, validated against the run's tools."""
        if not cfg.roles:
            # Without roles every worker has every tool; the first worker's first step is forced in execute
            # mode, and in return mode when no finisher runs (the finisher's grammar forces it otherwise).
            forced = cfg.tool_choice if self._workers_force(cfg) else "auto"
            return {name: (list(tools), forced if i == 0 else "auto") for i, name in enumerate(cfg.names)}
        out = {}
        for role in cfg.roles:
            if role.tools is None:
                mine = list(tools)
            else:
                unknown = sorted(set(role.tools) - set(self.by_name))
                if unknown:
                    raise InvalidRequestError(
                        f"role {role.name!r} names tools {unknown} that the request does not have "
                        f"(tools: {', '.join(sorted(self.by_name)) or 'none'})"
                    )
                mine = [self.by_name[n] for n in role.tools]
            if role.tool_choice != "auto":
                try:
                    check_tool_choice(role.tool_choice, mine)
                except InvalidRequestError as e:
                    raise InvalidRequestError(f"role {role.name!r}: {e}") from e
            choice = role.tool_choice if self._workers_force(cfg) else "auto"
            out[role.name] = ([] if role.tool_choice == "none" else mine, choice)
        return out

    @staticmethod
    def _workers_force(cfg: HogwildConfig) -> bool:
        """Whether a forcing ``tool_choice`` applies to the workers (else to the finisher's answer)."""
        return cfg.tool_mode == "execute" or not cfg.use_finisher

    @property
    def enabled(self) -> bool:
        """Whether workers may call tools in this run."""
        return self._active

    @property
    def may_finish_with_calls(self) -> bool:
        """Whether the finisher may answer with tool calls (see :func:`finisher_may_call`)."""
        return finisher_may_call(self.tools, self.cfg.tool_mode, self.cfg.tool_choice)

    def _grammar(self, tools: list[Tool], choice: str) -> Any:
        key = (choice, *(t.name for t in tools))
        if key not in self._grammars:
            self._grammars[key] = self.res.grammar_factory.tool_calls(tools, choice, self.fmt)
        return self._grammars[key]

    def _state(self, worker: str) -> _WorkerTools | None:
        state = self._workers.get(worker)
        if state is None and self._active:
            mine, choice = self._choices.get(worker, ([], "auto"))
            if not mine:
                return None
            factory = self.res.grammar_factory
            auto = self._grammar(mine, "auto") if self.cfg.constrain_tool_calls else None
            forced = choice not in ("auto", "none")
            grammar = self._grammar(mine, choice) if forced else auto
            constraint = factory.constraint(grammar) if grammar is not None else None
            state = _WorkerTools(mine, ToolCallDetector(self.fmt, mine), constraint, auto, forced=forced)
            self._workers[worker] = state
        return state

    def worker_markup(self, worker: str) -> tuple[str, ...]:
        """Tool markup ``worker`` may not write.

        Result wrappers always (results are the engine's to write); call wrappers when the worker has no
        tools of its own (its "call" would never run, and small models then invent its result).
        """
        if self.fmt is None:
            return ()
        pieces = [self.fmt.inline_prefix, self.fmt.inline_suffix]
        if not self._choices.get(worker, ([], "auto"))[0]:
            pieces += [self.fmt.call_prefix, self.fmt.call_suffix]
        return tag_openings(pieces)

    def register(self, worker: str) -> None:
        """Create the worker's tool state (its grammar starts a forced call if its tool_choice says so)."""
        self._state(worker)

    def constraint(self, worker: str) -> TokenConstraint | None:
        """The worker's grammar matcher (free text until a call starts; then a schema-valid call).

        In plain generation with ``response_format`` the first worker's answer grammar.
        """
        if self._answer is not None and worker == self.cfg.names[0]:
            return self._answer
        state = self._state(worker)
        if state is None:
            return None
        if state.forced and state.constraint is not None and state.constraint.is_completed:
            state.forced = False
            grammar = state.auto_grammar
            state.constraint = self.res.grammar_factory.constraint(grammar) if grammar is not None else None
        return state.constraint

    def cut_short(self, worker: str) -> bool:
        """Whether ``worker``'s grammar was left mid-way (a JSON answer or a call the budget cut)."""
        if self._answer is not None and worker == self.cfg.names[0]:
            return not self._answer.is_completed
        state = self._workers.get(worker)
        if state is None or state.constraint is None:
            return False
        return not state.constraint.is_completed

    def detect(self, worker: str, text: str) -> list[ToolCall]:
        """Feed a worker's new text; return the calls it completed."""
        state = self._state(worker)
        return state.detector.feed(text) if state is not None else []

    def in_call(self, worker: str) -> bool:
        """Whether the worker is in the middle of writing a call (no step may end there)."""
        state = self._state(worker)
        return state is not None and state.detector.in_candidate

    def submit(self, worker: str, call: ToolCall) -> None:
        """Start running ``call`` for ``worker`` (or answer at once with an error past the call budget)."""
        state = self._state(worker)
        assert state is not None, "only a worker with tools detects calls"
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
            mine = {t.name: t for t in state.tools}  # another worker's tool is an unknown tool here
            future = self.res.executor.submit(
                call,
                mine.get(call.name),
                timeout_s=self.cfg.tool_timeout_s,
                max_result_tokens=self.cfg.max_tool_result_tokens,
                count_tokens=self._count,
                truncate=self._truncate,
            )
        self.calls_made += 1
        state.calling.append((call, future))

    def calling(self, worker: str) -> bool:
        """Whether the worker has calls whose results it has not read yet."""
        state = self._workers.get(worker)
        return bool(state is not None and state.calling)

    def ready(self, worker: str) -> list[ToolOutcome] | None:
        """All outcomes of the worker's calls if every one is done (and forget them), else None."""
        state = self._workers[worker]
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

    def all_finished(self) -> bool:
        """Whether every call in flight has returned (or failed). Rank 0 decides for all ranks."""
        futures = self.outstanding()  # the same calls on every rank (only rank 0's futures run)
        if not futures:
            return True
        return self.parallel.broadcast_object(
            all(f.done() for f in futures) if self.parallel.is_leader else None
        )

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

    def result_text(self, outcomes: list[ToolOutcome]) -> tuple[str, list[tuple[int, int]]]:
        """The text written into the caller's step after its call(s), and its untrusted spans (contents)."""
        assert self.fmt is not None
        return join_pieces([p for o in outcomes for p in self.fmt.inline_result_pieces(o)])

    def finisher_constraint(self) -> TokenConstraint | None:
        """The finisher's grammar: a JSON schema answer, a forced call, or free text with valid calls."""
        factory = self.res.grammar_factory
        if self.cfg.response_format is not None:
            return factory.constraint(factory.json_schema(self.cfg.response_format))
        if not self.may_finish_with_calls:
            return None
        return factory.constraint(factory.tool_calls(self.tools, self.cfg.tool_choice, self.fmt))

    def call_openers(self) -> tuple[str, ...]:
        """What opens a call in the finisher's answer, in the formats parsing accepts.

        The tagged prefix, a fenced block, bare JSON; empty when the finisher may not answer with calls.
        """
        if not self.may_finish_with_calls or self.fmt is None:
            return ()
        return tuple(o for o in (self.fmt.call_prefix.strip(), "```", '{"name"') if o)

    def plain_call_openers(self) -> tuple[str, ...]:
        """In plain generation whose calls go back to the caller: what opens one in the worker's text.

        The worker's calls are found by the format's opening (its grammar starts there), so that alone.
        Empty with a finisher, in execute mode, or without tools.
        """
        if self.cfg.use_finisher or self.cfg.tool_mode != "return" or not self._active or self.fmt is None:
            return ()
        prefix = self.fmt.call_prefix.strip()
        return (prefix,) if prefix else ()

    def calls_in_answer(self, text: str) -> list[ToolCall]:
        """Calls the finisher wrote (return mode), parsed leniently; malformed ones are dropped."""
        if not self.may_finish_with_calls:
            return []
        try:
            return [c for c in parse_tool_calls(text, self.tools, self.fmt) if c.error is None]
        except ValueError:
            return []
