"""Which requests get the team: ``collaboration="auto"`` decides from the request itself.

A greeting or a one-line question costs several times its plain answer when it goes through the team
(the collaboration rules alone are ~400 prompt tokens, then steps, then the finisher). Sub-2B models
cannot judge this themselves (a yes/no probe of the 0.5B model gave the same answer for "Hello" and a
two-part sum; bench/RESULTS.md), so the rule is plain and visible: a request gets the team when its last
user message has numbers, code or several lines, at least ``MIN_WORDS`` words, or when tools are bound;
anything else (a greeting, a short question) is answered by one worker as plain generation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["MIN_WORDS", "needs_team"]

MIN_WORDS = 12
_TEAM_SIGNS = re.compile(r"\d|```|\n\s*\S|[=+*/^%]")


def needs_team(messages: Sequence[dict[str, Any]], has_tools: bool) -> bool:
    """Whether a request (normalized messages) should be worked on by several workers."""
    if has_tools:
        return True
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text = str(last.get("content") or "") if last is not None else ""
    return bool(_TEAM_SIGNS.search(text.strip())) or len(text.split()) >= MIN_WORDS
