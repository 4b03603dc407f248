"""hogwild-agents: several workers of one language model over one shared KV cache, with tools.

Public API: :class:`HogwildEngine`, :class:`HogwildConfig`, :class:`RunResult`, the event types, and the
errors. Everything else is private.
"""

from .config import HogwildConfig
from .engine import HogwildEngine
from .errors import ContextOverflowError, HogwildError, InvalidRequestError, UnsupportedModelError
from .events import (
    AnswerEvent,
    Event,
    FinishedEvent,
    StepCommittedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
    WorkerStoppedEvent,
)
from .result import RunResult, Trace, Usage, WorkerResult
from .tools import Tool

__version__ = "0.1.0"

__all__ = [
    "AnswerEvent",
    "ContextOverflowError",
    "Event",
    "FinishedEvent",
    "HogwildConfig",
    "HogwildEngine",
    "HogwildError",
    "InvalidRequestError",
    "RunResult",
    "StepCommittedEvent",
    "TokenEvent",
    "Tool",
    "ToolCallFinishedEvent",
    "ToolCallStartedEvent",
    "Trace",
    "Usage",
    "UnsupportedModelError",
    "WorkerResult",
    "WorkerStoppedEvent",
    "__version__",
]
