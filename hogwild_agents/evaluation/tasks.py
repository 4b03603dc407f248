r"""Task sets with exact, checkable integer answers, generated from templates with a seed (no downloads).

Three families, each answered as one box ``\boxed{a1, a2, ..., ak}`` and scored per item:

- ``arithmetic``: k independent one-step word problems (additions and subtractions) in one prompt, the
  paper's GSM8k×5 idea at a size a small model can attempt;
- ``affine``: evaluate a small affine function ``f(x) = a*x + b`` at each x of a list;
- ``tool``: look up the values of k keys in a seeded table through a ``lookup`` tool that sleeps
  ``delay_s`` seconds per call (to measure latency hiding), then add a constant to each.

Example:
    >>> tasks = arithmetic_tasks(n=2, seed=0, k=2)
    >>> len(tasks), len(tasks[0].expected)
    (2, 2)
    >>> tasks == arithmetic_tasks(n=2, seed=0, k=2)
    True

"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..tools import Tool

__all__ = [
    "TASK_FAMILIES",
    "EvalTask",
    "affine_tasks",
    "arithmetic_tasks",
    "lookup_table",
    "lookup_tool",
    "make_tasks",
    "tool_tasks",
]

TASK_FAMILIES: tuple[str, ...] = ("arithmetic", "affine", "tool")

_NAMES = ("Mia", "Noah", "Lena", "Omar", "Sara", "Tom", "Ivy", "Ben", "Zoe", "Ravi", "Ana", "Leo")
_ITEMS = ("apples", "stickers", "marbles", "books", "coins", "pencils", "cards", "shells")
_KEYS = (
    "amber",
    "birch",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "grove",
    "haven",
    "iris",
    "jade",
    "kelp",
    "lotus",
)


@dataclass(frozen=True, slots=True)
class EvalTask:
    """One evaluation item: the prompt, the expected numbers in order, and how it was made.

    Attributes:
        family: ``"arithmetic"``, ``"affine"`` or ``"tool"``.
        id: Unique, stable name, e.g. ``"arithmetic-s0-3"`` (family, seed, index).
        prompt: The user message.
        expected: The exact answers, in the order the box must list them.
        seed: The generation seed.
        tool_delay_s: For ``tool`` tasks, the seconds each ``lookup`` call sleeps (else ``0``).
        table: For ``tool`` tasks, the key → value table behind ``lookup``.
    """

    family: str
    id: str
    prompt: str
    expected: tuple[int, ...]
    seed: int
    tool_delay_s: float = 0.0
    table: dict[str, int] = field(default_factory=dict, compare=False)

    def tools(self) -> list[Tool]:
        """The tools this task offers (a ``lookup`` tool for ``tool`` tasks, else none)."""
        return [lookup_tool(self.table, self.tool_delay_s)] if self.family == "tool" else []


def _answer_format(k: int) -> str:
    slots = ", ".join(f"a{i}" for i in range(1, k + 1))
    return f"\\boxed{{{slots}}}"


def _word_problem(rng: random.Random) -> tuple[str, int]:
    """One addition/subtraction problem with a non-negative integer answer."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(5, 60), rng.randint(2, 40)
    kind = rng.randrange(3)
    if kind == 0:
        return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b
    if kind == 1:
        b = rng.randint(1, a - 1)
        return f"{name} has {a} {item} and gives away {b}. How many {item} does {name} have left?", a - b
    c = rng.randint(1, a + b - 1)
    text = f"{name} has {a} {item}, finds {b} more, then loses {c}. How many {item} does {name} have now?"
    return text, a + b - c


def arithmetic_tasks(n: int, seed: int, k: int = 5) -> list[EvalTask]:
    """``n`` prompts of ``k`` independent word problems each, all to be answered in one box.

    Args:
        n: Number of prompts.
        seed: Generation seed; the same seed gives the same tasks.
        k: Problems per prompt.

    Returns:
        The tasks; ``expected`` holds the ``k`` answers in order.

    """
    _check_sizes(n=n, k=k)
    rng = random.Random(f"arithmetic-{seed}")
    tasks = []
    for i in range(n):
        problems = [_word_problem(rng) for _ in range(k)]
        lines = "\n".join(f"{j}. {text}" for j, (text, _) in enumerate(problems, 1))
        prompt = (
            f"Solve all {k} problems below.\n{lines}\n\n"
            f"Give the {k} answers in order, as numbers, in one box at the end: {_answer_format(k)}."
        )
        tasks.append(
            EvalTask("arithmetic", f"arithmetic-s{seed}-{i}", prompt, tuple(a for _, a in problems), seed)
        )
    return tasks


def affine_tasks(n: int, seed: int, k: int = 4) -> list[EvalTask]:
    """``n`` prompts asking for ``f(x)`` at ``k`` points, with ``f(x) = a*x + b`` given in the prompt.

    Args:
        n: Number of prompts.
        seed: Generation seed.
        k: Points per prompt.

    Returns:
        The tasks; ``expected`` holds ``f(x)`` for each x in order.

    """
    _check_sizes(n=n, k=k)
    rng = random.Random(f"affine-{seed}")
    tasks = []
    for i in range(n):
        a, b = rng.randint(2, 5), rng.randint(-9, 12)
        xs = [rng.randint(0, 12) for _ in range(k)]
        sign = "+" if b >= 0 else "-"
        prompt = (
            f"Let f(x) = {a}*x {sign} {abs(b)}. Compute f(x) for each x in [{', '.join(map(str, xs))}].\n\n"
            f"Give the {k} values in order, as numbers, in one box at the end: {_answer_format(k)}."
        )
        tasks.append(EvalTask("affine", f"affine-s{seed}-{i}", prompt, tuple(a * x + b for x in xs), seed))
    return tasks


def lookup_table(seed: int) -> dict[str, int]:
    """The seeded key → value table behind the ``lookup`` tool (12 keys, values 10..99)."""
    rng = random.Random(f"table-{seed}")
    return {key: rng.randint(10, 99) for key in _KEYS}


def lookup_tool(table: dict[str, int], delay_s: float) -> Tool:
    """A ``lookup(key)`` tool over ``table`` that takes ``delay_s`` seconds per call.

    Args:
        table: Key → value.
        delay_s: Seconds each call sleeps before answering (a slow API stand-in).

    Returns:
        The tool; an unknown key returns an error text naming the known keys.

    """
    from ..tools import Tool

    def lookup(key: str) -> str:
        """Look up the stored integer value of a key in the database.

        Args:
            key: The key to look up, e.g. "amber".

        """
        time.sleep(delay_s)
        name = key.strip().strip("'\"").lower()
        if name not in table:
            return f"unknown key {key!r}; known keys: {', '.join(sorted(table))}"
        return str(table[name])

    return Tool.from_function(lookup, timeout_s=max(30.0, 4 * delay_s))


def tool_tasks(n: int, seed: int, k: int = 2, delay_s: float = 2.0) -> list[EvalTask]:
    """``n`` prompts asking for ``value(key) + c`` for ``k`` keys, the values only reachable via ``lookup``.

    Args:
        n: Number of prompts.
        seed: Generation seed (also seeds the table).
        k: Keys per prompt.
        delay_s: Seconds each ``lookup`` call takes.

    Returns:
        The tasks; ``expected`` holds ``table[key] + c`` per key in order.

    """
    _check_sizes(n=n, k=k)
    if k > len(_KEYS):
        raise ValueError(f"tool tasks support at most {len(_KEYS)} keys per prompt, got k={k}")
    if delay_s < 0:
        raise ValueError(f"delay_s must be >= 0, got {delay_s}")
    rng = random.Random(f"tool-{seed}")
    table = lookup_table(seed)
    tasks = []
    for i in range(n):
        keys = rng.sample(_KEYS, k)
        offsets = [rng.randint(1, 20) for _ in keys]
        lines = "\n".join(
            f'{j}. the value of key "{key}" plus {c}' for j, (key, c) in enumerate(zip(keys, offsets), 1)
        )
        prompt = (
            f"Use the lookup tool to find the stored values, then compute:\n{lines}\n\n"
            f"Give the {k} results in order, as numbers, in one box at the end: {_answer_format(k)}."
        )
        expected = tuple(table[key] + c for key, c in zip(keys, offsets, strict=True))
        tasks.append(EvalTask("tool", f"tool-s{seed}-{i}", prompt, expected, seed, delay_s, table))
    return tasks


_GENERATORS: dict[str, Callable[..., list[EvalTask]]] = {
    "arithmetic": arithmetic_tasks,
    "affine": affine_tasks,
    "tool": tool_tasks,
}


def make_tasks(family: str, n: int, seed: int, k: int | None = None, delay_s: float = 2.0) -> list[EvalTask]:
    """Generate ``n`` tasks of ``family`` with ``seed``.

    Args:
        family: One of :data:`TASK_FAMILIES`.
        n: Number of prompts.
        seed: Generation seed.
        k: Items per prompt; ``None`` uses the family's default (5 problems, 4 points, 2 keys).
        delay_s: Seconds per ``lookup`` call (``tool`` only).

    Raises:
        ValueError: Unknown family or bad sizes.

    """
    if family not in _GENERATORS:
        raise ValueError(f"unknown task family {family!r}; choose from {', '.join(TASK_FAMILIES)}")
    kwargs: dict[str, object] = {} if k is None else {"k": k}
    if family == "tool":
        kwargs["delay_s"] = delay_s
    return _GENERATORS[family](n=n, seed=seed, **kwargs)


def _check_sizes(n: int, k: int) -> None:
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 prompts and k >= 1 items per prompt, got n={n}, k={k}")
