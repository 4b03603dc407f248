"""Layouts: the rule that orders each worker's view of the shared blocks (own block always last)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..api.config import Layout

__all__ = ["SharedLayoutState", "build_view"]


@dataclass(slots=True)
class SharedLayoutState:
    """The block ids a layout arranges.

    Attributes:
        prompt: the shared prompt block.
        history: committed blocks in commit order (steps and tool results).
        current: each worker's current block id (``None`` once it has none).
        others_header: shared header before the other workers' current steps (``None``: no headers).
        separator: shared marker placed after each other worker's unfinished step.
        own_header: shared header right before the worker's own step.
    """

    prompt: int
    history: list[int] = field(default_factory=list)
    current: list[int | None] = field(default_factory=list)
    others_header: int | None = None
    separator: int | None = None
    own_header: int | None = None


def _headed(header: int | None) -> list[int]:
    return [] if header is None else [header]


def _others(state: SharedLayoutState, me: int | None) -> list[int]:
    blocks: list[int] = []
    for w, block in enumerate(state.current):
        if w != me and block is not None:
            blocks.append(block)
            blocks.extend(_headed(state.separator))
    return blocks


def build_view(
    layout: Layout, state: SharedLayoutState, worker: int | None, own_block: int, with_own_header: bool = True
) -> list[int]:
    """The ordered block ids worker ``worker`` attends to, ending with ``own_block``.

    ``worker=None`` builds the finisher's view: every worker's unfinished step is among the "others"
    (pass ``with_own_header=False`` there: the finisher has no step of its own).

    - ``combined``: prompt, history, others-header, the others' current steps (each followed by the
      separator), own-header, own block.
    - ``interleaved``: prompt, history, own-header, own block (others' unfinished steps are invisible).
    - ``contiguous``: prompt, the others' blobs (each followed by the separator), own-header, own blob;
      blobs are never committed, so ``history`` holds only tool results.
    """
    if layout == "combined":
        others = _others(state, worker)
        middle = [*_headed(state.others_header), *others] if others else []
        view = [state.prompt, *state.history, *middle]
    elif layout == "interleaved":
        view = [state.prompt, *state.history]
    elif layout == "contiguous":
        view = [state.prompt, *state.history, *_others(state, worker)]
    else:  # pragma: no cover - guarded by the config's Literal
        raise ValueError(f"unknown layout {layout!r}")
    own_header = _headed(state.own_header) if with_own_header else []
    return [*view, *own_header, own_block]
