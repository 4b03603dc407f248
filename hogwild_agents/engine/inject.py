"""Messages injected mid-run: a block in the shared history that every worker sees from the next forward.

``RunStream.inject(text)`` hands a message to the scheduler; at the run's next forward it becomes a
block of the shared history (after the steps committed so far), written by the engine attending to the
prompt and that history, so every worker's view (and the finisher's) holds it from that forward on.
The message is untrusted text: it is encoded with special tokens split, never as control tokens.
"""

from __future__ import annotations

from ..api.events import MessageInjectedEvent
from ..cache.plan import WriteGroup
from .state import RunState
from .steps import new_block

__all__ = ["INJECTED", "write_injections"]

INJECTED = "injected"


def _text(role: str, message: str) -> str:
    who = "the user" if role == "user" else role
    return f"\n\n[A new message from {who}]: {message.strip()}\n\n"


def write_injections(run: RunState, groups: list[WriteGroup]) -> None:
    """Turn the run's pending messages into history blocks written by ``groups`` (which then come first)."""
    assert run.layout is not None
    layout = run.layout
    written = []
    for role, message in run.injections:
        block = new_block(run, INJECTED, "message")
        text = _text(role, message)
        ids = run.res.encode_untrusted(text)
        view = [layout.prompt, *layout.history, block]
        layout.history.append(block)
        written.append(WriteGroup(INJECTED, block, ids, view))
        run.usage.fed_tokens += len(ids)
        run.emit(MessageInjectedEvent(message, role, run.forward_index))
    run.injections = []
    groups[:0] = written
