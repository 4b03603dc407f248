"""An Aho-Corasick automaton over a set of strings: the shared machinery of stop strings and markup guards.

A trie of the strings with failure links. A state is the longest suffix of the text read so far that is a
prefix of one of the strings, so reading a character costs amortised O(1), however long the text or the
strings: what both users need on the scheduler thread, where one request's long strings must not slow
the others.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["StringAutomaton"]


class StringAutomaton:
    """The automaton of ``strings`` (empty ones ignored).

    Attributes:
        goto: per state, the trie edges (character → state); state 0 is the root.
        fail: per state, the state of its longest proper suffix that is in the trie.
        depth: per state, the length of the prefix it stands for.
        longest: per state, the length of the longest string ending there, through failure links
            included (0: none).

    """

    __slots__ = ("depth", "fail", "goto", "longest")

    def __init__(self, strings: Iterable[str]) -> None:
        self.goto: list[dict[str, int]] = [{}]
        self.depth = [0]
        self.longest = [0]
        for string in (s for s in strings if s):
            state = 0
            for ch in string:
                nxt = self.goto[state].get(ch)
                if nxt is None:
                    nxt = len(self.goto)
                    self.goto[state][ch] = nxt
                    self.goto.append({})
                    self.depth.append(self.depth[state] + 1)
                    self.longest.append(0)
                state = nxt
            self.longest[state] = max(self.longest[state], len(string))
        self.fail = [0] * len(self.goto)
        queue = deque(self.goto[0].values())
        while queue:  # breadth first: a state's fallback is final before its children's are computed
            state = queue.popleft()
            for ch, nxt in self.goto[state].items():
                queue.append(nxt)
                fall = self.fail[state]
                while fall and ch not in self.goto[fall]:
                    fall = self.fail[fall]
                target = self.goto[fall].get(ch, 0)
                self.fail[nxt] = target if target != nxt else 0
                # a string ending at the fallback state ends here too
                self.longest[nxt] = max(self.longest[nxt], self.longest[self.fail[nxt]])

    @property
    def empty(self) -> bool:
        """Whether there are no strings at all."""
        return len(self.goto) == 1

    def step(self, state: int, ch: str) -> int:
        """The state after reading ``ch`` in ``state``."""
        goto, fail = self.goto, self.fail
        while state and ch not in goto[state]:
            state = fail[state]
        return goto[state].get(ch, 0)

    def advance(self, state: int, text: str) -> int:
        """The state after reading ``text`` from ``state``."""
        goto, fail = self.goto, self.fail
        for ch in text:
            while state and ch not in goto[state]:
                state = fail[state]
            state = goto[state].get(ch, 0)
        return state

    def path(self, string: str) -> list[int]:
        """The trie states along ``string`` (one per character), which must be one of the strings."""
        states, state = [], 0
        for ch in string:
            state = self.goto[state][ch]
            states.append(state)
        return states
