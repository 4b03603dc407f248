"""The terminal live view of the ``hogwild`` command: one pane per worker, the event log, the progress line.

:func:`render_live` turns a :class:`~hogwild_agents.ui.progress.RunProgress` into a rich renderable sized for
the terminal: panes share the width (at most four per row), each shows the tail of its worker's text that
fits, so the newest tokens are always visible.
"""

from __future__ import annotations

import math

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .progress import LogLine, RunProgress

__all__ = ["format_log_line", "render_live"]

_MAX_COLUMNS = 4
_LOG_LINES = 5
_LOG_STYLES = {
    "commit": "green",
    "tool_call": "bold cyan",
    "tool_result": "cyan",
    "tool_error": "bold red",
    "stop": "dim",
}


def format_log_line(line: LogLine, color: str) -> Text:
    """One event-log line: the forward index, the worker's name in its colour, what happened."""
    text = Text.assemble(
        (f"[{line.forward:>4}] ", "dim"),
        (line.worker, f"bold {color}"),
        " ",
        (line.text, _LOG_STYLES[line.kind]),
    )
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _tail(console: Console, text: str, width: int, lines: int) -> Text:
    """Return the last ``lines`` lines of ``text`` once wrapped to ``width`` cells."""
    wrapped = Text(text.replace("\r", ""), tab_size=4).wrap(console, max(width, 1))
    return Text("\n").join(list(wrapped)[-lines:]) if lines > 0 else Text()


def render_live(progress: RunProgress, console: Console) -> RenderableType:
    """Render ``progress`` to fit ``console``'s current size.

    Args:
        progress: State of the run so far.
        console: The console drawn on (its width and height size the panes).

    Returns:
        A renderable: the worker panes, the event log, the progress line and, once it streams, the answer.

    """
    workers = list(progress.workers.values())
    columns = max(1, min(len(workers), _MAX_COLUMNS))
    rows = max(1, math.ceil(len(workers) / columns))
    answer_lines = min(
        6, max(1, progress.answer.count("\n") + 1 + len(progress.answer) // max(console.width, 1))
    )
    reserved = (_LOG_LINES + 2) + 1 + ((answer_lines + 2) if progress.answer else 0)
    pane_height = max(5, min(20, (console.height - reserved - 1) // rows))
    inner_width = console.width // columns - 4  # borders and padding
    grid = Table.grid(expand=True)
    for _ in range(columns):
        grid.add_column(ratio=1)
    panes = []
    for worker in workers:
        title = Text.assemble((worker.name, f"bold {worker.color}"))
        subtitle = f"step {worker.steps + 1} · {worker.generated} tok" + (
            f" · {worker.stopped}" if worker.stopped else ""
        )
        panes.append(
            Panel(
                _tail(console, worker.text, inner_width, pane_height - 2),
                title=title,
                subtitle=subtitle,
                border_style=worker.color,
                height=pane_height,
            )
        )
    for start in range(0, len(panes), columns):
        row = panes[start : start + columns]
        grid.add_row(*row, *([""] * (columns - len(row))))
    colors = {w.name: w.color for w in workers}
    log = Text("\n").join(
        format_log_line(line, colors.get(line.worker, "white")) for line in progress.log[-_LOG_LINES:]
    )
    parts: list[RenderableType] = [
        grid,
        Panel(log, title="events", border_style="dim", height=_LOG_LINES + 2),
        Text(progress.status_line(), style="bold"),
    ]
    if progress.answer:
        parts.append(
            Panel(
                _tail(console, progress.answer, console.width - 4, answer_lines),
                title="answer",
                border_style="bold green",
            )
        )
    return Group(*parts)
