"""Stop strings found incrementally: an Aho-Corasick automaton (:mod:`.automaton`) over the stop strings.

Text is fed piece by piece (token deltas); each character advances the automaton once, so the work per
token is proportional to the token's text, never to the text so far or to a stop string's length
(quadratic checks on the shared scheduler thread would let one request's enormous stop string slow every
other run). The automaton's state is also the longest tail of the text that may still become a stop
string: that is exactly what a stream must hold back.

Semantics: the text stops at the first piece after which it contains a stop string; it is cut at the
earliest start among the stop strings it then contains.
"""

from __future__ import annotations

from collections.abc import Sequence

from .automaton import StringAutomaton

__all__ = ["StopMatcher", "text_before"]


class StopMatcher:
    """Tracks one growing text against a fixed set of stop strings.

    Args:
        stops: the stop strings (empty strings are ignored: validate them before, see the config).

    Attributes:
        cut: index in the text where it must be cut (the earliest start of a stop string found), or
            ``None`` while no stop string has appeared.

    """

    __slots__ = ("_automaton", "_length", "_state", "cut")

    def __init__(self, stops: Sequence[str]) -> None:
        self._automaton = StringAutomaton(stops)
        self._state = 0
        self._length = 0
        self.cut: int | None = None

    @property
    def active(self) -> bool:
        """Whether there are stop strings at all."""
        return not self._automaton.empty

    @property
    def held(self) -> int:
        """Characters at the end of the text that may begin a stop string (a stream holds them back)."""
        return self._automaton.depth[self._state]

    def feed(self, piece: str) -> bool:
        """Add ``piece`` to the text; return whether the text now contains a stop string."""
        if self.cut is not None or not self.active:
            self._length += len(piece)
            return self.cut is not None
        step, longest = self._automaton.step, self._automaton.longest
        state = self._state
        for i, ch in enumerate(piece):
            state = step(state, ch)
            # every stop string ending here: the longest one starts earliest (shorter ones via fail links)
            if longest[state]:
                start = self._length + i + 1 - longest[state]
                self.cut = start if self.cut is None else min(self.cut, start)
        self._state = state
        self._length += len(piece)
        return self.cut is not None


def text_before(text: str, markers: Sequence[str]) -> str:
    """``text`` up to the first of ``markers``, minus a trailing part that may still begin one.

    What a stream may show of a growing text that must not show anything from a marker on (a tool
    call's opening in an answer). Linear in the text: for the short answers and few markers it serves.
    """
    markers = [m for m in markers if m]
    if not markers:
        return text
    starts = [i for i in (text.find(m) for m in markers) if i >= 0]
    if starts:
        return text[: min(starts)]
    for size in range(min(max(map(len, markers)) - 1, len(text)), 0, -1):
        if any(m.startswith(text[-size:]) for m in markers):
            return text[:-size]
    return text
