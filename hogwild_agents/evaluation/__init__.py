"""Accuracy-vs-budget evaluation: seeded task sets with exact answers, the setups of the paper, reports.

Example:
    >>> from hogwild_agents.evaluation import make_tasks, run_eval, standard_setups, summarize
    >>> tasks = make_tasks("arithmetic", n=4, seed=0, k=2)
    >>> rows = summarize(run_eval(engine, tasks, standard_setups((1, 2)), [48, 96]))  # doctest: +SKIP

"""

from .report import append_results_md, markdown_table, plot_accuracy, write_outputs
from .runner import (
    FINISHER_REQUEST,
    EvalRecord,
    EvalSetup,
    SummaryRow,
    run_eval,
    run_one,
    standard_setups,
    summarize,
)
from .scoring import Score, extract_boxed, score_answer
from .tasks import TASK_FAMILIES, EvalTask, make_tasks

__all__ = [
    "FINISHER_REQUEST",
    "TASK_FAMILIES",
    "EvalRecord",
    "EvalSetup",
    "EvalTask",
    "Score",
    "SummaryRow",
    "append_results_md",
    "extract_boxed",
    "make_tasks",
    "markdown_table",
    "plot_accuracy",
    "run_eval",
    "run_one",
    "score_answer",
    "standard_setups",
    "summarize",
    "write_outputs",
]
