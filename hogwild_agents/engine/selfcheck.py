"""The self-check cadence of the workers' steps.

Every ``self_check_every`` sampled tokens, a worker's next step opens with the question "am I doing
redundant work? (yes/no):", which the worker answers itself (the paper's prompt).
"""

from __future__ import annotations

from ..api.config import HogwildConfig
from ..text.prompts import step_header
from .state import WorkerState

__all__ = ["step_opening"]


def step_opening(cfg: HogwildConfig, worker: WorkerState) -> str:
    """The text that opens ``worker``'s new step: its header, with the self-check question when due."""
    text = step_header(worker.name, worker.step)
    if cfg.self_check_every and worker.since_check >= cfg.self_check_every:
        text += cfg.self_check_text
        worker.since_check = 0
    return text
