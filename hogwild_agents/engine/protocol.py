"""What a run tells the scheduler each step: a :class:`Plan` to run, or a :class:`Wait` on its tools.

A leaf of the engine package: the run rules produce these, the scheduler consumes them, and neither
imports the other for it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..cache.plan import WriteGroup
from ..runner.sampling import SampleRequest

__all__ = ["Phase", "Plan", "Wait"]


class Phase(enum.Enum):
    """Where a run is. The scheduler steps runs in PREFILL, GENERATE, DRAIN and FINISH."""

    PREFILL = "prefill"
    """The prompt and the shared headers are encoded (one forward)."""
    GENERATE = "generate"
    """The workers write, call tools, commit steps."""
    DRAIN = "drain"
    """Generation ended with tool calls in flight: wait for them and write their results once."""
    FINISH = "finish"
    """The finisher writes the answer (or tool calls for the caller)."""
    SUSPENDED = "suspended"
    """Tool calls were handed to the caller; pages kept until the results come back."""
    DONE = "done"
    """Finished: the result is set and the pages are released."""


@dataclass(slots=True)
class Plan:
    """One run's part of the next forward.

    Attributes:
        groups: the writers' tokens and views (reserved by the scheduler before the forward).
        samples: the rows to sample; ``SampleRequest.group`` indexes ``groups``.
    """

    groups: list[WriteGroup]
    samples: list[SampleRequest] = field(default_factory=list)


@dataclass(slots=True)
class Wait:
    """Nothing to write until a tool call finishes (``every``: until every outstanding one has)."""

    every: bool = False
