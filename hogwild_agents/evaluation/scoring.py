r"""Scoring an answer against exact integers: the last complete ``\boxed{...}``, item by item.

The answer must hold a complete box (balanced braces). Its content is split on commas or semicolons (no
thousands separators: our answers are small), and item *i* is compared with expected value *i*. Each
item's value is the last number in it, so ``f(3) = 11`` reads as 11 and ``$42`` as 42. Missing items and
anything that is not a number are wrong. No box, or a box that never closes, scores zero on every item.

Example:
    >>> score_answer("so \\boxed{12, 7}", (12, 8)).fraction
    0.5

"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Score", "extract_boxed", "score_answer"]

_BOXED = re.compile(r"\\boxed\s*\{")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Score:
    """How an answer scored.

    Attributes:
        correct: Items answered correctly.
        total: Items expected.
        boxed: Whether a complete box was found.
        items: Per expected item, whether it was right.
    """

    correct: int
    total: int
    boxed: bool
    items: tuple[bool, ...]

    @property
    def fraction(self) -> float:
        """Per-item accuracy in [0, 1]."""
        return self.correct / self.total if self.total else 0.0


def extract_boxed(text: str) -> str | None:
    r"""Return the content of the last complete ``\boxed{...}`` in ``text``, or ``None``.

    Braces inside the box must balance (``\boxed{\frac{1}{2}}`` gives ``\frac{1}{2}``); a box that is
    never closed is ignored.
    """
    found = None
    for match in _BOXED.finditer(text):
        depth = 1
        for end in range(match.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                found = text[match.end() : end]
                break
    return found


def _item_value(item: str) -> float | None:
    numbers = _NUMBER.findall(item.replace(" ", ""))
    if not numbers:
        return None
    return float(numbers[-1])


def score_answer(answer: str, expected: tuple[int, ...] | list[int]) -> Score:
    """Score ``answer`` against ``expected``, per item.

    Args:
        answer: The model's final answer text.
        expected: The exact values, in order.

    Returns:
        The :class:`Score`; an answer without a complete box scores zero.

    """
    content = extract_boxed(answer)
    total = len(expected)
    if content is None:
        return Score(0, total, False, (False,) * total)
    parts = re.split(r"[;,]", content)
    items = []
    for i, want in enumerate(expected):
        got = _item_value(parts[i]) if i < len(parts) else None
        items.append(got is not None and got == float(want))
    return Score(sum(items), total, True, tuple(items))
