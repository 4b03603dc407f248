"""Suspend and resume (``tool_mode="return"``): hand tool calls to the caller, keep the pages, go on later.

A run whose worker (or finisher) writes a call in return mode ends its turn with a
:class:`~hogwild_agents.api.events.FinishedEvent` carrying the calls, and keeps every block. When the
caller comes back with the same conversation plus the tool results, :class:`KeptRuns` finds the run and
:func:`resume` writes only the results: everything else is reused in place.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

from ..api.config import HogwildConfig
from ..api.events import FinishedEvent
from ..api.results import Usage
from ..text.untrusted import join_pieces
from ..tools import Tool, ToolCall, ToolOutcome
from .protocol import Phase
from .results import build_result
from .state import RunState
from .steps import feed_text
from .trace import record_blocks

__all__ = ["KeptRuns", "resume", "suspend"]


def suspend(run: RunState, resume_phase: Phase) -> None:
    """Return the run's pending calls to the caller; the run waits, pages kept, for their results."""
    record_blocks(run)
    run.usage.wall_time_s = time.perf_counter() - run.started
    paused = build_result(run, "", "tool_calls", [call for _, call in run.returned])
    paused.trace = run.trace.model_copy(deep=True)  # a snapshot: the live trace grows when resumed
    run.phase = Phase.SUSPENDED
    run.resume_phase = resume_phase
    run.emit(FinishedEvent(paused))


def resume(run: RunState, outcomes: dict[str, str]) -> None:
    """Give a suspended run the caller's tool results (call id → content) and make it runnable again."""
    assert run.phase is Phase.SUSPENDED and run.resume_phase is not None
    store = run.res.store
    # Only what the caller sends back is encoded from here on; everything else is reused in place.
    run.usage = Usage(
        reused_prompt_tokens=sum(store.blocks[b].length for b in run.blocks if b in store.blocks)
    )
    run.started = time.perf_counter()
    fmt = run.tools.fmt
    assert fmt is not None

    def result(call: ToolCall) -> ToolOutcome:
        return ToolOutcome(call, outcomes.get(call.id, "Error: the caller sent no result for this call"))

    # Calls of the finisher end its turn: their results come in the template's tool-turn wrapper.
    # The caller's result contents are untrusted: encoded as plain text, only the wrappers as control tokens.
    finisher_results, finisher_spans = join_pieces(
        [p for w, c in run.returned if w is None for p in fmt.result_block_pieces(result(c))]
    )
    for worker in run.workers:
        mine = [call for owner, call in run.returned if owner is worker]
        if mine:
            worker.pending = list(worker.call_token)
            worker.call_token = []
            text, spans = join_pieces([p for c in mine for p in fmt.inline_result_pieces(result(c))])
            feed_text(run, worker, text, untrusted=spans)
    run.returned.clear()
    run.phase, run.resume_phase = run.resume_phase, None
    if run.finisher is not None and finisher_results:
        run.finisher.pending += run.res.encode_marked(finisher_results, finisher_spans)
        run.finisher.forwards_left = -1  # a new turn starts at the next plan (see finisher.begin_turn)


def conversation_key(messages: list[dict[str, Any]], tools: list[Tool], cfg: HogwildConfig) -> str:
    """Identity of a conversation prefix: roles, contents, call ids, tool schemas and configuration."""

    def canon(m: dict[str, Any]) -> tuple[Any, ...]:
        ids = tuple(c.get("id", "") for c in m.get("tool_calls") or [])
        return (m["role"], m.get("content") or "", ids, m.get("tool_call_id", ""))

    return json.dumps(
        [[canon(m) for m in messages], [t.to_openai_schema() for t in tools], cfg.model_dump(mode="json")],
        sort_keys=True,
        default=str,
    )


class KeptRuns:
    """Suspended runs by conversation, least recently used first, at most ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._runs: OrderedDict[str, RunState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def keep(self, messages: list[dict[str, Any]], run: RunState) -> list[RunState]:
        """Keep a suspended ``run`` under its conversation plus the calls it returned; return evicted runs."""
        calls = [{"id": call.id} for _, call in run.returned]
        convo = [*messages, {"role": "assistant", "content": "", "tool_calls": calls}]
        self._runs[conversation_key(convo, run.tools.tools, run.cfg)] = run
        evicted = []
        while len(self._runs) > self.limit:
            evicted.append(self._runs.popitem(last=False)[1])
        return evicted

    def take(self, messages: list[dict[str, Any]], tools: list[Tool], cfg: HogwildConfig) -> RunState | None:
        """The suspended run that ``messages`` continue (its conversation, then only tool results)."""
        n_tools = 0
        while n_tools < len(messages) and messages[len(messages) - 1 - n_tools]["role"] == "tool":
            n_tools += 1
        if not n_tools:
            return None
        prefix, results = messages[: len(messages) - n_tools], messages[len(messages) - n_tools :]
        run = self._runs.pop(conversation_key(prefix, tools, cfg), None)
        if run is not None:
            resume(run, {str(m.get("tool_call_id", "")): str(m.get("content", "")) for m in results})
        return run

    def pop_oldest(self) -> RunState | None:
        """Forget the least recently kept run (its caller frees its pages)."""
        return self._runs.popitem(last=False)[1] if self._runs else None

    def drain(self) -> list[RunState]:
        """Forget every kept run."""
        runs = list(self._runs.values())
        self._runs.clear()
        return runs
