"""Run task sets through setups (baseline, Hogwild at W workers and each layout, self-consistency) per budget.

Protocol (after the paper, §4.6/§5): the budget is the number of sequential forward passes the workers may
take (``max_forwards``); the engine's finisher then writes the answer, and its tokens do not count against
the budget. Every setup ends with the same finisher text, greedily decoded:

- ``baseline``: one worker, plain chat prompt (``collaboration=False``), then the engine's finisher
  (``finisher=True``). With a tool task this is the sequential agent loop: the worker stops while the tool
  runs, reads the result, goes on.
- ``hogwild``: ``workers`` workers with the collaboration prompt in ``layout``, then the finisher.
- ``self_consistency``: ``workers`` independent single-worker runs (plain prompt, no finisher, sampled at
  ``sc_temperature`` with distinct seeds, each with the full budget), then one plain greedy generation
  over the conversation ``[user: task, assistant: "Attempt 1: ... Attempt 2: ...", user: FINISHER_REQUEST]``
  of at most ``max_answer_tokens`` tokens. That is the token sequence the engine's finisher would see with
  one worker whose text is both chains (the same request text; a test keeps it equal to the engine's).
  Its forwards are the longest chain's (the chains are independent, so they could share each forward
  pass); its wall time is that of the chains run one after the other plus the final generation.

Example:
    >>> tasks = arithmetic_tasks(2, seed=0, k=2)
    >>> records = run_eval(engine, tasks, standard_setups(), [64])  # doctest: +SKIP
    >>> summarize(records)  # doctest: +SKIP

"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..api.config import Layout
from .scoring import score_answer
from .tasks import EvalTask

if TYPE_CHECKING:
    from ..engine.engine import HogwildEngine

__all__ = [
    "FINISHER_REQUEST",
    "EvalRecord",
    "EvalSetup",
    "SummaryRow",
    "run_eval",
    "run_one",
    "standard_setups",
    "summarize",
]

FINISHER_REQUEST = (
    "Stop here. Considering all the work above, write the final answer to my request now, "
    "complete and self-contained."
)
"""The request of the engine's finisher turn (``prompts._finisher_turn``), reused by self-consistency."""

SetupKind = Literal["baseline", "hogwild", "self_consistency"]


@dataclass(frozen=True, slots=True)
class EvalSetup:
    """One way of spending a budget.

    Attributes:
        kind: ``"baseline"``, ``"hogwild"`` or ``"self_consistency"`` (see the module docstring).
        workers: Workers (Hogwild) or independent chains (self-consistency); 1 for the baseline.
        layout: Cache layout (Hogwild only).
    """

    kind: SetupKind
    workers: int = 1
    layout: Layout = "combined"

    @property
    def name(self) -> str:
        """Short label, e.g. ``"W=2 combined"``, ``"W=1 baseline"``, ``"SC x2"``."""
        if self.kind == "baseline":
            return "W=1 baseline"
        if self.kind == "self_consistency":
            return f"SC x{self.workers}"
        return f"W={self.workers} {self.layout}"


def standard_setups(
    workers: Sequence[int] = (1, 2, 4), layouts: Sequence[Layout] = ("combined",), sc_chains: int = 2
) -> list[EvalSetup]:
    """The paper's comparison: W=1 baseline, Hogwild at each W>1, other layouts at W=2, self-consistency.

    Args:
        workers: Worker counts; 1 means the baseline, each W>1 a Hogwild run in the ``"combined"`` layout.
        layouts: Layouts tried at W=2 (``"combined"`` is already covered by W=2 in ``workers``).
        sc_chains: Independent chains for self-consistency; 0 leaves it out.

    Raises:
        ValueError: A worker count below 1, or ``sc_chains`` of 1.

    """
    if any(w < 1 for w in workers):
        raise ValueError(f"worker counts must be >= 1, got {list(workers)}")
    if sc_chains == 1 or sc_chains < 0:
        raise ValueError(f"self-consistency needs >= 2 chains (or 0 to leave it out), got {sc_chains}")
    setups = [EvalSetup("baseline") if w == 1 else EvalSetup("hogwild", w) for w in dict.fromkeys(workers)]
    for layout in dict.fromkeys(layouts):
        setup = EvalSetup("hogwild", 2, layout)
        if setup not in setups:
            setups.append(setup)
    if sc_chains:
        setups.append(EvalSetup("self_consistency", sc_chains))
    return setups


@dataclass(slots=True)
class EvalRecord:
    """One task run in one setup at one budget."""

    family: str
    task_id: str
    seed: int
    setup: str
    budget: int
    correct: int
    total: int
    boxed: bool
    forwards: int
    """Sequential worker forward passes used (the budget axis; finisher excluded)."""
    wall_time_s: float
    stop_reason: str
    tool_calls: int
    answer: str
    expected: list[int]

    @property
    def accuracy(self) -> float:
        """Per-item accuracy of this run."""
        return self.correct / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with ``accuracy``)."""
        return {**asdict(self), "accuracy": self.accuracy}


def _run_kwargs(task: EvalTask) -> dict[str, Any]:
    tools = task.tools()
    return {"tools": tools} if tools else {}


def _self_consistency(
    engine: HogwildEngine,
    task: EvalTask,
    setup: EvalSetup,
    budget: int,
    seed: int,
    sc_temperature: float,
    max_answer_tokens: int,
) -> tuple[str, int, str, int]:
    """Run the chains and the final generation; return (answer, forwards, stop reason, tool calls)."""
    chains = []
    for i in range(setup.workers):
        chains.append(
            engine.run(
                task.prompt,
                workers=1,
                collaboration=False,
                finisher=False,
                max_forwards=budget,
                temperature=sc_temperature,
                seed=seed * 1000 + i,
                **_run_kwargs(task),
            )
        )
    attempts = "\n\n".join(f"Attempt {i}:\n{r.workers[0].text.strip()}" for i, r in enumerate(chains, 1))
    messages = [
        {"role": "user", "content": task.prompt},
        {"role": "assistant", "content": attempts},
        {"role": "user", "content": FINISHER_REQUEST},
    ]
    final = engine.run(
        messages,
        workers=1,
        collaboration=False,
        finisher=False,
        max_forwards=max_answer_tokens,
        temperature=0.0,
    )
    forwards = max(r.usage.worker_forwards for r in chains)
    reasons = ",".join(sorted({r.stop_reason for r in chains}))
    return final.answer, forwards, reasons, sum(len(r.tool_events) for r in chains)


def run_one(
    engine: HogwildEngine,
    task: EvalTask,
    setup: EvalSetup,
    budget: int,
    *,
    temperature: float = 0.0,
    sc_temperature: float = 0.7,
    max_answer_tokens: int = 64,
) -> EvalRecord:
    """Run ``task`` in ``setup`` with ``budget`` worker forwards and score the finisher's answer.

    Args:
        engine: The engine (its model is used for every setup).
        task: The task.
        setup: How to spend the budget.
        budget: ``max_forwards`` for the workers.
        temperature: Workers' sampling temperature (baseline and Hogwild; 0 is greedy).
        sc_temperature: Chains' temperature for self-consistency (greedy chains would be identical).
        max_answer_tokens: Tokens the finisher (or the self-consistency final generation) may write.

    Returns:
        The scored :class:`EvalRecord`.

    """
    start = time.perf_counter()
    if setup.kind == "self_consistency":
        answer, forwards, reason, calls = _self_consistency(
            engine, task, setup, budget, task.seed, sc_temperature, max_answer_tokens
        )
    else:
        hogwild = setup.kind == "hogwild"
        result = engine.run(
            task.prompt,
            workers=setup.workers,
            layout=setup.layout,
            collaboration=hogwild,
            finisher=True,
            max_forwards=budget,
            max_answer_tokens=max_answer_tokens,
            temperature=temperature,
            seed=task.seed,
            **_run_kwargs(task),
        )
        answer, forwards, reason = result.answer, result.usage.worker_forwards, result.stop_reason
        calls = len(result.tool_events)
    wall = time.perf_counter() - start
    score = score_answer(answer, task.expected)
    return EvalRecord(
        family=task.family,
        task_id=task.id,
        seed=task.seed,
        setup=setup.name,
        budget=budget,
        correct=score.correct,
        total=score.total,
        boxed=score.boxed,
        forwards=forwards,
        wall_time_s=wall,
        stop_reason=reason,
        tool_calls=calls,
        answer=answer,
        expected=list(task.expected),
    )


def run_eval(
    engine: HogwildEngine,
    tasks: Sequence[EvalTask],
    setups: Sequence[EvalSetup],
    budgets: Sequence[int],
    *,
    temperature: float = 0.0,
    sc_temperature: float = 0.7,
    max_answer_tokens: int = 64,
    show_progress: bool = True,
    on_record: Callable[[EvalRecord], None] | None = None,
) -> list[EvalRecord]:
    """Run every task in every setup at every budget; a rich progress bar tracks the runs.

    Args:
        engine: The engine.
        tasks: The tasks (any mix of families and seeds).
        setups: The setups, e.g. :func:`standard_setups`.
        budgets: Worker forward budgets (``max_forwards``).
        temperature: See :func:`run_one`.
        sc_temperature: See :func:`run_one`.
        max_answer_tokens: See :func:`run_one`.
        show_progress: Draw a progress bar on stderr.
        on_record: Called with each record as soon as its run ends (e.g. to save partial results).

    Returns:
        One record per (task, setup, budget), in that nesting order (budget innermost).

    Raises:
        ValueError: A budget below 1, or nothing to run.

    """
    if not tasks or not setups or not budgets:
        raise ValueError("run_eval needs at least one task, one setup and one budget")
    if any(b < 1 for b in budgets):
        raise ValueError(f"budgets are forward-pass counts and must be >= 1, got {list(budgets)}")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    jobs = [(t, s, b) for t in tasks for s in setups for b in budgets]
    records = []
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
    )
    with progress:
        bar = progress.add_task("eval", total=len(jobs))
        for task, setup, budget in jobs:
            progress.update(bar, description=f"{task.id} {setup.name} B={budget}")
            record = run_one(
                engine,
                task,
                setup,
                budget,
                temperature=temperature,
                sc_temperature=sc_temperature,
                max_answer_tokens=max_answer_tokens,
            )
            records.append(record)
            if on_record is not None:
                on_record(record)
            progress.advance(bar)
    return records


@dataclass(slots=True)
class SummaryRow:
    """Aggregate of the records of one (family, setup, budget)."""

    family: str
    setup: str
    budget: int
    runs: int
    accuracy: float
    """Mean per-item accuracy."""
    all_correct: float
    """Fraction of runs with every item right."""
    boxed: float
    """Fraction of answers holding a complete box."""
    forwards: float
    """Mean worker forwards used."""
    wall_time_s: float
    """Mean wall time per run."""
    wall_time_correct_s: float | None
    """Mean wall time of the fully correct runs (None when none was)."""
    tool_calls: float
    """Mean tool calls per run."""


def summarize(records: Sequence[EvalRecord]) -> list[SummaryRow]:
    """Group records by (family, setup, budget), in first-seen order, and average them."""
    groups: dict[tuple[str, str, int], list[EvalRecord]] = {}
    for r in records:
        groups.setdefault((r.family, r.setup, r.budget), []).append(r)
    rows = []
    for (family, setup, budget), rs in groups.items():
        n = len(rs)
        correct_walls = [r.wall_time_s for r in rs if r.correct == r.total]
        rows.append(
            SummaryRow(
                family=family,
                setup=setup,
                budget=budget,
                runs=n,
                accuracy=sum(r.accuracy for r in rs) / n,
                all_correct=sum(r.correct == r.total for r in rs) / n,
                boxed=sum(r.boxed for r in rs) / n,
                forwards=sum(r.forwards for r in rs) / n,
                wall_time_s=sum(r.wall_time_s for r in rs) / n,
                wall_time_correct_s=sum(correct_walls) / len(correct_walls) if correct_walls else None,
                tool_calls=sum(r.tool_calls for r in rs) / n,
            )
        )
    return rows
