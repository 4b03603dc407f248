"""The step rule: when a worker's paragraph ends, and when a committed step holds the final answer."""

from __future__ import annotations

import re

__all__ = ["SENTENCE_END", "contains_final_answer", "ends_step"]

SENTENCE_END = tuple(".?!。۔؟।॥…‽།᠃։჻¶❧")
_FENCES = ("```", "~~~", "$$")
_BOXED = re.compile(r"\\boxed\{")


def _open_fence(text: str) -> bool:
    return any(text.count(fence) % 2 == 1 for fence in _FENCES)


def ends_step(step_text: str, token_text: str) -> bool:
    """Whether the token just sampled (``token_text``, already appended to ``step_text``) ends the step.

    A step ends when the token contains a blank line, the text before the last blank line ends a
    sentence, and no code or math fence is open.
    """
    if "\n\n" not in token_text:
        return False
    before = step_text[: step_text.rfind("\n\n")].rstrip()
    return bool(before) and before.endswith(SENTENCE_END) and not _open_fence(before)


def contains_final_answer(text: str) -> bool:
    r"""Whether ``text`` holds a complete ``\boxed{...}`` (balanced braces)."""
    for match in _BOXED.finditer(text):
        depth = 1
        for ch in text[match.end() :]:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if depth == 0:
                return True
    return False
