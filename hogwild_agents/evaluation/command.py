"""The ``hogwild eval`` subcommand: arguments, the run, and the files it writes.

Example::

    hogwild eval --tasks arithmetic,affine,tool --workers 1,2,4 --budgets 32,64 --seeds 0,1 --n 4 \
        --out bench/eval

writes ``results.json``, ``results.md`` and ``accuracy.png`` under ``--out`` and appends the table to
``--results-md`` (default ``bench/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, get_args

from ..api.config import Layout
from .tasks import TASK_FAMILIES

__all__ = ["add_eval_arguments", "run_eval_command"]


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def _names(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in names if x not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {bad or text!r}; choose from {','.join(allowed)}")
        return names

    return parse


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``hogwild eval`` options to ``parser``."""
    parser.add_argument("--tasks", type=_names(TASK_FAMILIES), default=["arithmetic"], help="task families")
    parser.add_argument("--workers", type=_ints, default=[1, 2], help="worker counts (1 = baseline)")
    parser.add_argument(
        "--layouts", type=_names(get_args(Layout)), default=["combined"], help="layouts tried at W=2"
    )
    parser.add_argument("--sc-chains", type=int, default=0, help="self-consistency chains (0 = leave out)")
    parser.add_argument("--budgets", type=_ints, default=[32, 64], help="worker forward budgets")
    parser.add_argument("--seeds", type=_ints, default=[0], help="task-generation seeds")
    parser.add_argument("--n", type=int, default=4, help="prompts per task family and seed")
    parser.add_argument("--k", type=int, help="items per prompt (default: 5 problems, 4 points, 2 keys)")
    parser.add_argument("--tool-delay", type=float, default=2.0, help="seconds per lookup call (tool tasks)")
    parser.add_argument("--max-answer-tokens", type=int, default=64, help="tokens the finisher may write")
    parser.add_argument("--temperature", type=float, default=0.0, help="workers' temperature (0 = greedy)")
    parser.add_argument("--model", help="model (default: packaged Qwen 0.5B)")
    parser.add_argument("--dtype", default=None, help="weights dtype, e.g. float32 (default: bfloat16)")
    parser.add_argument("--out", type=Path, default=Path("bench/eval"), help="output folder")
    parser.add_argument(
        "--results-md",
        type=Path,
        default=Path("bench/RESULTS.md"),
        help="markdown log the table is appended to",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load(model: str | None, dtype: str | None) -> Any:
    from ..api.config import HogwildConfig
    from ..engine.engine import HogwildEngine
    from ..models.testing import TINY_TEST_MODEL, tiny_random_qwen2

    if model == TINY_TEST_MODEL:
        tiny, tokenizer = tiny_random_qwen2()
        return HogwildEngine(tiny, tokenizer, HogwildConfig())
    return HogwildEngine.from_pretrained(model, dtype=dtype)


def run_eval_command(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Path]:
    """Run ``hogwild eval`` from parsed ``args``; return the files written.

    Raises:
        ValueError: Bad sizes or budgets (reported by the CLI as a user error).

    """
    from .report import append_results_md, run_metadata, write_outputs
    from .runner import run_eval, standard_setups, summarize
    from .tasks import make_tasks

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    setups = standard_setups(args.workers, args.layouts, args.sc_chains)
    tasks = [
        task
        for family in args.tasks
        for seed in args.seeds
        for task in make_tasks(family, args.n, seed, args.k, args.tool_delay)
    ]
    engine = _load(args.model, args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "records.jsonl"  # one line per finished run: a long eval that stops keeps its runs
    partial.write_text("")

    def save(record: Any) -> None:
        with partial.open("a") as fh:
            fh.write(json.dumps(record.to_dict()) + "\n")

    records = run_eval(
        engine,
        tasks,
        setups,
        args.budgets,
        temperature=args.temperature,
        max_answer_tokens=args.max_answer_tokens,
        show_progress=not args.no_progress,
        on_record=save,
    )
    rows = summarize(records)
    command = "hogwild " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = run_metadata(args.model or "Qwen2.5-Coder-0.5B-Instruct (packaged default)", command)
    meta.update(n=args.n, seeds=args.seeds, budgets=args.budgets, setups=[s.name for s in setups])
    files = write_outputs(records, rows, args.out, meta)
    append_results_md(args.results_md, rows, meta)
    files["results_md"] = args.results_md
    return files
