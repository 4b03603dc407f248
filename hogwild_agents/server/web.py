"""The live web view: one HTML page (no build step) and the JSON form of the engine's events it reads.

The page posts a task to ``/hogwild/runs`` and reads the reply as server-sent events, one engine event each
(:func:`event_json`): tokens fill each worker's pane as they are written, commits and tool calls/results
are marked in the pane of the worker that made them, and the finisher's answer fills the answer pane.
"""

from __future__ import annotations

import dataclasses
import html
from functools import cache
from importlib import resources
from typing import Any

from ..api.config import HogwildConfig
from ..api.events import (
    AnswerEvent,
    Event,
    FinishedEvent,
    MessageInjectedEvent,
    StepCommittedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
    WorkerStoppedEvent,
)
from .schemas import WebRunRequest

__all__ = ["WEB_DEFAULTS", "event_json", "page_html", "web_run_overrides"]

WEB_DEFAULTS: dict[str, Any] = {
    **HogwildConfig.CHAT_DEFAULTS,
    "collaboration": True,  # the page is there to watch the team, so a run is always a team
    "max_forwards": 128,
    "max_answer_tokens": 128,
}

_TYPES = {
    TokenEvent: "token",
    StepCommittedEvent: "commit",
    WorkerStoppedEvent: "stopped",
    ToolCallStartedEvent: "tool_call",
    ToolCallFinishedEvent: "tool_result",
    AnswerEvent: "answer",
    MessageInjectedEvent: "injected",
}


def event_json(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of one event: ``type`` plus the event's fields (a summary for the last one)."""
    if isinstance(event, FinishedEvent):
        r = event.result
        return {
            "type": "finished",
            "answer": r.answer,
            "stop_reason": r.stop_reason,
            "usage": r.usage.model_dump(mode="json"),
        }
    body = dataclasses.asdict(event)
    body.pop("token_ids", None)
    return {"type": _TYPES.get(type(event), type(event).__name__), **body}


def web_run_overrides(body: WebRunRequest) -> tuple[str, list[Any], dict[str, Any]]:
    """The task, the tools (built-ins the engine runs in the shared cache) and the run's options."""
    from ..tools.builtins import calculator_tool

    tools = [calculator_tool() for name in dict.fromkeys(body.tools) if name == "calculator"]
    overrides = dict(WEB_DEFAULTS)
    for name in ("workers", "max_forwards", "max_answer_tokens", "temperature", "early_exit"):
        value = getattr(body, name)
        if value is not None:
            overrides[name] = value
    if tools:
        overrides["tool_mode"] = "execute"
        overrides["tool_choice"] = body.tool_choice
    return body.task, tools, overrides


@cache
def _template() -> str:
    return resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")


def page_html(model_name: str) -> str:
    """The page, with the served model's name filled in."""
    return _template().replace("{{MODEL}}", html.escape(model_name))
