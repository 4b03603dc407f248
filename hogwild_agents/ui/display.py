"""Notebook display: a finished run as HTML (``RunResult._repr_html_``) and a live view, :func:`watch`.

Every piece of text that reaches the HTML (worker names, their writing, tool arguments and results, the
answer) goes through :func:`html.escape`, so a model writing ``<script>`` shows it instead of running it.

Example:
    >>> from hogwild_agents.ui.display import watch  # doctest: +SKIP
    >>> result = watch(engine, "What is 17 + 25?", max_forwards=80)  # doctest: +SKIP
    >>> result  # the last expression of a cell renders as HTML  # doctest: +SKIP

"""

from __future__ import annotations

import contextlib
import html
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..api.events import FinishedEvent
from ..api.results import RunResult, set_html_renderer
from .progress import RunProgress, worker_color

if TYPE_CHECKING:
    from ..api.results import WorkerResult
    from ..engine.engine import HogwildEngine, Messages

__all__ = ["render_progress_html", "render_run_html", "watch"]

_STYLE = (
    "<style>"
    ".hw-run{font-family:system-ui,sans-serif;font-size:13px;line-height:1.4}"
    ".hw-workers{display:flex;gap:8px;flex-wrap:wrap;align-items:flex-start}"
    ".hw-worker{flex:1 1 260px;min-width:220px;border:1px solid #8884;border-radius:6px;padding:6px}"
    ".hw-name{font-weight:bold;margin-bottom:4px}"
    ".hw-step{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px;padding:4px;"
    "border-top:1px dashed #8886}"
    ".hw-commit{font-size:11px;opacity:.75}"
    ".hw-tail{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px;padding:4px;"
    "border-top:1px dashed #8886;opacity:.8}"
    ".hw-tools{margin-top:8px}"
    ".hw-tool{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap}"
    ".hw-answer{margin-top:8px;border:2px solid #009E73;border-radius:6px;padding:6px;white-space:pre-wrap}"
    ".hw-meta{font-size:11px;opacity:.75;margin-top:4px}"
    "</style>"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _name(name: str, color: str) -> str:
    return f'<span style="color:{color};font-weight:bold">{_e(name)}</span>'


def _split_committed(worker: WorkerResult) -> tuple[list[str], str]:
    """Split a worker's text into its committed steps and what it wrote after the last commit."""
    committed = "".join(worker.steps)
    tail = worker.text[len(committed) :] if worker.text.startswith(committed) else ""
    if not worker.steps:
        tail = worker.text
    return list(worker.steps), tail


def _worker_html(worker: WorkerResult, color: str) -> str:
    steps, tail = _split_committed(worker)
    parts = [f'<div class="hw-worker" style="border-top:4px solid {color}">']
    parts.append(f'<div class="hw-name">{_name(worker.name, color)}</div>')
    for k, step in enumerate(steps, start=1):
        parts.append(
            f'<div class="hw-step">{_e(step.strip())}<div class="hw-commit" style="color:{color}">'
            f"&#10003; step {k} committed</div></div>"
        )
    if tail.strip():
        parts.append(
            f'<div class="hw-tail">{_e(tail.strip())}<div class="hw-commit">not committed</div></div>'
        )
    meta = f"{worker.generated_tokens} tokens"
    if worker.stop_reason:
        meta += f" · stopped: {worker.stop_reason}"
    parts.append(f'<div class="hw-meta">{_e(meta)}</div></div>')
    return "".join(parts)


def _tool_event_html(event: dict[str, Any], colors: dict[str, str]) -> str:
    worker = str(event.get("worker", ""))
    who = _name(worker, colors.get(worker, "inherit")) + " " if worker else ""
    args = event.get("arguments", {})
    args_text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    content = event.get("content", event.get("result", ""))
    error = " (error)" if event.get("is_error") else ""
    return (
        f'<div class="hw-tool">{who}&#8594; {_e(event.get("name", "?"))}({_e(args_text)})\n'
        f"&#8592;{_e(error)} {_e(content)}</div>"
    )


def render_run_html(result: RunResult) -> str:
    """Render a finished run as self-contained HTML.

    One column per worker in its colour, its committed steps separated and marked, the uncommitted rest
    after them; then the tool calls with their results, the answer, and the usage.

    Args:
        result: The run to show.

    Returns:
        An HTML fragment (with its own ``<style>``) with all text escaped.

    """
    colors = {w.name: worker_color(i) for i, w in enumerate(result.workers)}
    parts = [_STYLE, '<div class="hw-run"><div class="hw-workers">']
    parts += [_worker_html(w, colors[w.name]) for w in result.workers]
    parts.append("</div>")
    if result.tool_events or result.tool_calls:
        parts.append('<div class="hw-tools"><b>Tool calls</b>')
        parts += [_tool_event_html(ev.model_dump(), colors) for ev in result.tool_events]
        for call in result.tool_calls:
            shown = {**call.model_dump(), "content": "(returned to the caller)"}
            parts.append(_tool_event_html(shown, colors))
        parts.append("</div>")
    parts.append(f'<div class="hw-answer"><b>Answer</b>\n{_e(result.answer)}</div>')
    u = result.usage
    parts.append(
        f'<div class="hw-meta">stop: {_e(result.stop_reason)} · forwards {u.forwards} · '
        f"tokens {u.generated_tokens} generated, {u.prompt_tokens} prompt, {u.answer_tokens} answer · "
        f"{u.wall_time_s:.1f} s</div></div>"
    )
    return "".join(parts)


set_html_renderer(render_run_html)


def render_progress_html(progress: RunProgress, tail_chars: int = 1200) -> str:
    """Render a run in progress: each worker's latest text, the event log and the progress line.

    Args:
        progress: State folded from the run's events so far.
        tail_chars: Characters of each worker's text to show (the end of it).

    Returns:
        An HTML fragment with all text escaped.

    """
    if progress.result is not None:
        return render_run_html(progress.result)
    parts = [_STYLE, '<div class="hw-run"><div class="hw-workers">']
    for worker in progress.workers.values():
        text = worker.text[-tail_chars:]
        parts.append(
            f'<div class="hw-worker" style="border-top:4px solid {worker.color}">'
            f'<div class="hw-name">{_name(worker.name, worker.color)} '
            f'<span class="hw-commit">{worker.steps} committed</span></div>'
            f'<div class="hw-tail">{_e(text)}</div></div>'
        )
    parts.append("</div>")
    if progress.log:
        colors = {w.name: w.color for w in progress.workers.values()}
        lines = [
            f"{_name(line.worker, colors.get(line.worker, 'inherit'))} {_e(line.text)}"
            for line in progress.log
        ]
        parts.append('<div class="hw-tools hw-tool">' + "\n".join(lines[-8:]) + "</div>")
    if progress.answer:
        parts.append(f'<div class="hw-answer"><b>Answer</b>\n{_e(progress.answer)}</div>')
    parts.append(f'<div class="hw-meta">{_e(progress.status_line())}</div></div>')
    return "".join(parts)


def _ipython_display() -> Any | None:
    """IPython's ``display`` function when running inside an IPython kernel or shell, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    return display if get_ipython() is not None else None


def watch(
    engine: HogwildEngine,
    messages: Messages,
    *,
    tools: Sequence[Any] | None = None,
    refresh_s: float = 0.3,
    **overrides: Any,
) -> RunResult:
    """Run a request while showing the workers write, live, in the notebook cell's output.

    Outside IPython it runs the request and displays nothing. Interrupting the kernel cancels the run
    (the stream is closed, so the engine frees its pages).

    Args:
        engine: The engine to run on.
        messages: A user message or chat messages, as for :meth:`HogwildEngine.run`.
        tools: Tools the workers may call.
        refresh_s: Least seconds between two redraws.
        **overrides: Per-run :class:`~hogwild_agents.HogwildConfig` fields.

    Returns:
        The run's :class:`~hogwild_agents.RunResult`; its HTML replaces the live view at the end.

    """
    display = _ipython_display()
    try:
        cfg = engine.config.with_overrides(**overrides)
        progress = RunProgress.for_workers(cfg.names, cfg.max_forwards)
    except ValueError:  # the engine reports the bad option itself, below
        progress = RunProgress()
    handle = None
    if display is not None:
        from IPython.display import HTML

        handle = display(HTML(render_progress_html(progress)), display_id=True)
    last_draw = time.perf_counter()
    result: RunResult | None = None
    with contextlib.closing(engine.stream(messages, tools=tools, **overrides)) as events:
        for event in events:
            progress.update(event)
            if isinstance(event, FinishedEvent):
                result = event.result
            if handle is not None and time.perf_counter() - last_draw >= refresh_s:
                handle.update(HTML(render_progress_html(progress)))
                last_draw = time.perf_counter()
    if result is None:  # pragma: no cover - the stream always ends with FinishedEvent
        raise RuntimeError("the run ended without a result")
    if handle is not None:
        handle.update(HTML(render_run_html(result)))
    return result
