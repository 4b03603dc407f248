"""hogwild-agents: several workers of one language model over one shared KV cache, with tools.

Public API: :class:`HogwildEngine`, :class:`HogwildConfig`, :class:`RunResult`, the event types, and the
errors. Everything else is private.
"""

from .api.config import HogwildConfig, WorkerRole
from .api.errors import ContextOverflowError, HogwildError, InvalidRequestError, UnsupportedModelError
from .api.events import (
    AnswerEvent,
    Event,
    FinishedEvent,
    MessageInjectedEvent,
    RunStartedEvent,
    StepCommittedEvent,
    TokenEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
    WorkerStoppedEvent,
)
from .api.results import RunResult, ToolCallRecord, ToolEventRecord, Trace, Usage, WorkerResult
from .engine.engine import HogwildEngine
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
    "MessageInjectedEvent",
    "RunResult",
    "RunStartedEvent",
    "StepCommittedEvent",
    "TokenEvent",
    "Tool",
    "ToolCallFinishedEvent",
    "ToolCallRecord",
    "ToolCallStartedEvent",
    "ToolEventRecord",
    "Trace",
    "Usage",
    "UnsupportedModelError",
    "WorkerResult",
    "WorkerRole",
    "WorkerStoppedEvent",
    "__version__",
]
