"""The public API is small and pinned: adding or removing a name is a decision, made here."""

import hogwild_agents

PUBLIC = [
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


def test_the_public_names_are_exactly_these():
    assert sorted(hogwild_agents.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(hogwild_agents, name) is not None, name


def test_every_public_class_has_a_docstring():
    for name in PUBLIC:
        obj = getattr(hogwild_agents, name)
        if isinstance(obj, type):
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
