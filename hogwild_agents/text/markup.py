"""Keeping a writer from writing the workspace's own markup, at the source: by banning tokens.

The shared workspace is laid out with markup the engine writes: step headers (``**Alice [2]:**``), the
marker that ends another worker's unfinished step (``<...>``), the self-check question, section headers.
Small models copy it: a worker writes another worker's header, the finisher answers ``<...>``. A
:class:`MarkupGuard` follows one writer's text through an Aho-Corasick automaton (:mod:`.automaton`)
over the forbidden strings and, before each sample, names the tokens that would *complete* one of them
from where the text stands; the sampler bans those. So no forbidden string can ever appear in what the
writer samples (a prefix of one can, e.g. ``**Bob`` without `` [``), and the text a user reads needs no
clean-up afterwards.

Token texts come from :class:`TokenTexts`: every token decoded on its own, sorted, so "the tokens whose
text starts with s" is a binary search.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .automaton import StringAutomaton

__all__ = ["MarkupGuard", "TokenTexts"]

_MAX_SHARED_TABLES = 256
"""Pattern sets whose guard tables a :class:`TokenTexts` keeps (then it starts over)."""


class TokenTexts:
    """The text of every token id of a tokenizer (decoded alone), with prefix and substring queries.

    Args:
        tokenizer: a Hugging Face tokenizer.
        vocab_size: the logits width (ids past the tokenizer's vocabulary have no text).

    """

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        known = min(len(tokenizer), vocab_size)
        self.texts: list[str] = tokenizer.batch_decode([[i] for i in range(known)], skip_special_tokens=False)
        self.special = frozenset(tokenizer.all_special_ids)
        order = sorted(range(known), key=self.texts.__getitem__)
        self._sorted_ids = np.asarray(order, dtype=np.int64)
        self._sorted_texts = [self.texts[i] for i in order]
        self._containing: dict[str, tuple[int, ...]] = {}
        self.guard_tables: dict[tuple[str, ...], Any] = {}  # patterns -> their MarkupGuard tables
        self.lock = threading.Lock()

    def starting_with(self, prefix: str) -> np.ndarray:
        """Ids of the tokens whose text starts with ``prefix``."""
        lo = bisect.bisect_left(self._sorted_texts, prefix)
        hi = bisect.bisect_left(self._sorted_texts, prefix + "\U0010ffff")
        return self._sorted_ids[lo:hi]

    def containing(self, text: str) -> tuple[int, ...]:
        """Ids of the tokens whose text holds ``text`` somewhere (cached: a scan of the vocabulary)."""
        found = self._containing.get(text)
        if found is None:
            found = tuple(i for i, t in enumerate(self.texts) if text in t and i not in self.special)
            self._containing[text] = found
        return found


class _GuardTables:
    """What every guard over one set of patterns shares.

    The automaton, the pattern prefixes at each state, and the banned tokens found per state so far (a
    memo: the answer for a state never changes).
    """

    __slots__ = ("always", "automaton", "banned", "patterns_at")

    def __init__(self, patterns: Sequence[str], texts: TokenTexts) -> None:
        self.automaton = StringAutomaton(patterns)
        # state -> (pattern, matched length) for every proper prefix of a pattern that the state stands for
        self.patterns_at: list[list[tuple[str, int]]] = [[] for _ in self.automaton.goto]
        for pattern in patterns:
            for matched, state in enumerate(self.automaton.path(pattern)[:-1], start=1):
                self.patterns_at[state].append((pattern, matched))
        self.banned: dict[int, tuple[int, ...]] = {}
        # Tokens holding a whole forbidden string are banned wherever the text stands.
        self.always = tuple(sorted({i for p in patterns for i in texts.containing(p)}))


class MarkupGuard:
    """One writer's position among the forbidden strings, and the tokens that would complete one.

    Guards over the same patterns share their tables (built once per :class:`TokenTexts`: every run
    makes a guard per writer, and building the automaton cost more than a run's own planning).

    Args:
        patterns: the strings the writer must never write.
        texts: the tokenizer's :class:`TokenTexts`.

    """

    __slots__ = ("_tables", "_texts", "state")

    def __init__(self, patterns: Sequence[str], texts: TokenTexts) -> None:
        key = tuple(sorted({p for p in patterns if p}))
        self._texts = texts
        with texts.lock:
            tables = texts.guard_tables.get(key)
            if tables is None:
                if len(texts.guard_tables) >= _MAX_SHARED_TABLES:  # requests may name any workers
                    texts.guard_tables.clear()
                tables = texts.guard_tables[key] = _GuardTables(key, texts)
        self._tables = tables
        self.state = 0

    @property
    def always(self) -> tuple[int, ...]:
        """Tokens holding a whole forbidden string: banned wherever the text stands."""
        return self._tables.always

    def feed(self, text: str) -> None:
        """Advance past ``text`` (sampled or fed by the engine)."""
        self.state = self._tables.automaton.advance(self.state, text)

    def peek(self, text: str) -> int:
        """The state after ``text``, without moving."""
        return self._tables.automaton.advance(self.state, text)

    def banned(self) -> tuple[int, ...]:
        """Tokens that would complete a forbidden string from the current state (with :attr:`always`)."""
        tables = self._tables
        found = tables.banned.get(self.state)
        if found is None:
            ids = set(tables.always)
            state = self.state
            while state:  # every pattern prefix that is a suffix of the text
                for pattern, matched in tables.patterns_at[state]:
                    ids.update(self._texts.starting_with(pattern[matched:]).tolist())
                state = tables.automaton.fail[state]
            found = tuple(sorted(ids - self._texts.special))
            tables.banned[self.state] = found  # the same value whichever thread writes it
        return found
