"""Evaluation outputs: ``results.json``, a markdown table, an accuracy-vs-budget plot, and RESULTS.md."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from .runner import EvalRecord, SummaryRow

__all__ = ["append_results_md", "markdown_table", "plot_accuracy", "run_metadata", "write_outputs"]


def markdown_table(rows: Sequence[SummaryRow]) -> str:
    """Render summary rows as a markdown table (accuracy is mean per-item accuracy)."""
    lines = [
        "| task | setup | budget | runs | accuracy | all correct | boxed | forwards | wall s "
        "| wall s (correct) | tool calls |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        correct_wall = "–" if r.wall_time_correct_s is None else f"{r.wall_time_correct_s:.1f}"
        lines.append(
            f"| {r.family} | {r.setup} | {r.budget} | {r.runs} | {r.accuracy:.3f} | {r.all_correct:.3f} "
            f"| {r.boxed:.2f} | {r.forwards:.1f} | {r.wall_time_s:.1f} | {correct_wall} "
            f"| {r.tool_calls:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot_accuracy(rows: Sequence[SummaryRow], path: Path) -> Path | None:
    """Plot accuracy against budget, one panel per task family and one line per setup.

    Returns:
        ``path``, or ``None`` when matplotlib is not installed (``pip install 'hogwild-agents[eval]'``).

    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    families = list(dict.fromkeys(r.family for r in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(4.5 * len(families), 3.6), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        mine = [r for r in rows if r.family == family]
        for setup in dict.fromkeys(r.setup for r in mine):
            points = sorted((r.budget, r.accuracy) for r in mine if r.setup == setup)
            ax.plot([b for b, _ in points], [a for _, a in points], marker="o", label=setup)
        ax.set_title(family)
        ax.set_xlabel("budget (sequential forward passes)")
        ax.set_ylabel("per-item accuracy")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_metadata(model: str, command: str) -> dict[str, Any]:
    """Date, model, machine and command of an evaluation run."""
    import os

    import torch

    if torch.cuda.is_available():
        machine = torch.cuda.get_device_name(0)
    else:
        machine = f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores visible)"
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "model": model,
        "machine": machine,
        "torch": torch.__version__,
        "command": command,
    }


def write_outputs(
    records: Sequence[EvalRecord], rows: Sequence[SummaryRow], out_dir: Path, meta: dict[str, Any]
) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``accuracy.png`` (if matplotlib is there) to ``out_dir``.

    Returns:
        The written files by kind (``"json"``, ``"markdown"``, and ``"plot"`` when drawn).

    """
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": meta,
        "summary": [asdict(r) for r in rows],
        "records": [r.to_dict() for r in records],
    }
    files = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    files["json"].write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    files["markdown"].write_text(_header(meta) + "\n" + markdown_table(rows))
    plot = plot_accuracy(rows, out_dir / "accuracy.png")
    if plot is not None:
        files["plot"] = plot
    return files


def _header(meta: dict[str, Any]) -> str:
    return (
        f"eval {meta['date']} model={meta['model']} machine={meta['machine']} torch={meta['torch']} "
        f"cmd={meta['command']}\n"
    )


def append_results_md(path: Path, rows: Sequence[SummaryRow], meta: dict[str, Any], notes: str = "") -> None:
    """Append the table (with date, model, machine, command, and optional notes) to ``path``."""
    block = f"\n## Evaluation (hogwild eval)\n\n{_header(meta)}\n{markdown_table(rows)}"
    if notes:
        block += f"\n{notes.strip()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(block)
