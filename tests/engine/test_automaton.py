"""The Aho-Corasick automaton behind stop strings and markup guards, against brute force."""

from __future__ import annotations

import random

from hogwild_agents.text.automaton import StringAutomaton


def _brute(text: str, strings: list[str]) -> tuple[int, int]:
    """(longest suffix of text that begins a string, longest string that text ends with)."""
    prefix = max(n for n in range(len(text) + 1) if any(s.startswith(text[len(text) - n :]) for s in strings))
    ending = max((len(s) for s in strings if text.endswith(s)), default=0)
    return prefix, ending


def test_states_stand_for_the_longest_live_suffix_and_the_longest_match():
    rng = random.Random(0)
    for _ in range(200):
        strings = [
            "".join(rng.choice("ab*[") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 4))
        ]
        automaton = StringAutomaton(strings)
        text, state = "", 0
        for _ in range(30):
            piece = "".join(rng.choice("ab*[ ") for _ in range(rng.randint(1, 3)))
            state = automaton.advance(state, piece)
            text += piece
            assert (automaton.depth[state], automaton.longest[state]) == _brute(text, strings), (
                strings,
                text,
            )


def test_path_steps_and_emptiness():
    automaton = StringAutomaton(["**Bob [", "", "**Al"])
    path = automaton.path("**Bob [")
    assert [automaton.depth[s] for s in path] == list(range(1, 8))
    assert automaton.longest[path[-1]] == 7 and automaton.longest[path[-2]] == 0
    assert automaton.step(path[1], "A") == automaton.path("**Al")[2]
    assert StringAutomaton(["", ""]).empty and not automaton.empty
