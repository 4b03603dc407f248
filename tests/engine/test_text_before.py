"""``text_before``: what a stream may show of a growing text that must show nothing from a marker on."""

from __future__ import annotations

import pytest

from hogwild_agents.text.stops import text_before

OPENERS = ("<tool_call>", "```", '{"name"')


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Sure, here it is", "Sure, here it is"),
        ("Sure. <tool_call>\n{", "Sure. "),  # cut at the opener
        ("Sure. <tool", "Sure. "),  # a tail that may still become one is held back
        ("Sure. <b>", "Sure. <b>"),  # ... until it cannot
        ('x ``` y {"name"', "x "),  # the earliest opener wins
        ('a {"na', "a "),
        ("", ""),
    ],
)
def test_text_is_shown_up_to_a_marker_or_a_tail_that_may_begin_one(text, shown):
    assert text_before(text, OPENERS) == shown


def test_no_markers_show_everything():
    assert text_before("<tool_call>", ()) == text_before("<tool_call>", ("",)) == "<tool_call>"


def test_growing_text_never_shows_what_it_later_takes_back():
    full = 'The sum is 5. <tool_call>{"name": "add"}</tool_call>'
    shown = [text_before(full[:i], OPENERS) for i in range(len(full) + 1)]
    assert all(b.startswith(a) for a, b in zip(shown, shown[1:]))
    assert shown[-1] == "The sum is 5. "
