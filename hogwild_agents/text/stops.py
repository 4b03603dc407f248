"""Stop strings found incrementally: an Aho-Corasick automaton over the stop strings.

Text is fed piece by piece (token deltas); each character advances the automaton once, so the work per
token is proportional to the token's text, never to the text so far or to a stop string's length
(quadratic checks on the shared scheduler thread would let one request's enormous stop string slow every
other run). The automaton's state is also the longest tail of the text that may still become a stop
string: that is exactly what a stream must hold back.

Semantics: the text stops at the first piece after which it contains a stop string; it is cut at the
earliest start among the stop strings it then contains.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

__all__ = ["StopMatcher", "text_before"]


class StopMatcher:
    """Tracks one growing text against a fixed set of stop strings.

    Args:
        stops: the stop strings (empty strings are ignored: validate them before, see the config).

    Attributes:
        cut: index in the text where it must be cut (the earliest start of a stop string found), or
            ``None`` while no stop string has appeared.

    """

    __slots__ = ("_depth", "_fail", "_goto", "_length", "_out", "_state", "cut")

    def __init__(self, stops: Sequence[str]) -> None:
        self._goto: list[dict[str, int]] = [{}]
        self._depth = [0]
        self._out: list[int] = [0]  # longest stop string ending at this state (0: none)
        for stop in (s for s in stops if s):
            state = 0
            for ch in stop:
                nxt = self._goto[state].get(ch)
                if nxt is None:
                    nxt = len(self._goto)
                    self._goto[state][ch] = nxt
                    self._goto.append({})
                    self._depth.append(self._depth[state] + 1)
                    self._out.append(0)
                state = nxt
            self._out[state] = max(self._out[state], len(stop))
        self._fail = [0] * len(self._goto)
        queue = deque(self._goto[0].values())
        while queue:
            state = queue.popleft()
            for ch, nxt in self._goto[state].items():
                queue.append(nxt)
                fall = self._fail[state]
                while fall and ch not in self._goto[fall]:
                    fall = self._fail[fall]
                target = self._goto[fall].get(ch, 0)
                self._fail[nxt] = target if target != nxt else 0
                # a stop string ending at the fallback state ends here too
                self._out[nxt] = max(self._out[nxt], self._out[self._fail[nxt]])
        self._state = 0
        self._length = 0
        self.cut: int | None = None

    @property
    def active(self) -> bool:
        """Whether there are stop strings at all."""
        return len(self._goto) > 1

    @property
    def held(self) -> int:
        """Characters at the end of the text that may begin a stop string (a stream holds them back)."""
        return self._depth[self._state]

    def feed(self, piece: str) -> bool:
        """Add ``piece`` to the text; return whether the text now contains a stop string."""
        if self.cut is not None or not self.active:
            self._length += len(piece)
            return self.cut is not None
        goto, fail, out = self._goto, self._fail, self._out
        state = self._state
        for i, ch in enumerate(piece):
            while state and ch not in goto[state]:
                state = fail[state]
            state = goto[state].get(ch, 0)
            # every stop string ending here: the longest one starts earliest (shorter ones via fail links)
            if out[state]:
                start = self._length + i + 1 - out[state]
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
