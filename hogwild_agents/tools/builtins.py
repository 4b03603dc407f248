"""Two small tools for the ``hogwild`` command and the cookbook: a calculator and a local-folder search.

``calculator`` evaluates arithmetic by walking a whitelisted syntax tree: numbers, ``+ - * / // % **``,
parentheses and unary signs. It never calls ``eval``; names, calls, attributes, strings and everything else
are rejected, and operations whose result would be enormous (``9**9**9``) are refused before they run.

:class:`LocalCorpus` splits the ``.txt`` and ``.md`` files of a folder into passages (blank-line separated
paragraphs) and ranks them for a query with BM25. :func:`search_tool` wraps it as a tool.

Example:
    >>> calculator("(17 + 25) * 2")
    '84'
    >>> calculator_tool().name  # doctest: +SKIP
    'calculator'

"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Tool

__all__ = [
    "BUILTIN_TOOL_NAMES",
    "MAX_EXPRESSION_CHARS",
    "MAX_RESULT_DIGITS",
    "LocalCorpus",
    "Passage",
    "calculator",
    "calculator_tool",
    "search_tool",
]

BUILTIN_TOOL_NAMES: tuple[str, ...] = ("calculator", "search")
MAX_EXPRESSION_CHARS = 300
"""Longer expressions are rejected (also bounds the parser's recursion)."""
MAX_RESULT_DIGITS = 1000
"""Integer results (and intermediate values) may have at most this many decimal digits."""

_Number = int | float
_BINARY: dict[type[ast.operator], Callable[[_Number, _Number], _Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[_Number], _Number]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the result.

    Supports numbers, + - * / // % ** (power), parentheses and unary minus, e.g. "(17 + 25) * 2 ** 3".

    Args:
        expression: The arithmetic expression to evaluate, e.g. "12 * (3 + 4)".

    Returns:
        The value as text: integers exactly, other numbers with up to 15 significant digits.

    Raises:
        ValueError: The expression is not plain arithmetic, divides by zero, or its result is too large.

    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(
            f"expression is {len(expression)} characters long; the limit is {MAX_EXPRESSION_CHARS}"
        )
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise ValueError("empty expression; pass arithmetic such as '12 * (3 + 4)'")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as e:
        raise ValueError(f"not a valid arithmetic expression: {expression!r}") from e
    try:
        return _format_number(_evaluate(tree.body))
    except OverflowError as e:  # a tower such as 2**10**400: its size check itself overflows a float
        raise ValueError(f"the numbers in {expression[:80]!r} are too large to compute with") from e
    except RecursionError as e:
        raise ValueError(f"the expression {expression[:80]!r} is nested too deeply") from e


def _evaluate(node: ast.AST) -> _Number:
    """Evaluate one whitelisted node; anything outside the whitelist raises ``ValueError``."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"only numbers are allowed, got {value!r}")
        _check_size(value)  # a literal such as 1e400 is already infinite
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        elif isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
            raise ValueError(f"division by zero in '{_format_number(left)} {_SYMBOLS[type(node.op)]} 0'")
        try:
            result = _BINARY[type(node.op)](left, right)
        except OverflowError as e:
            raise ValueError("the result is too large to represent") from e
        if isinstance(result, complex):
            raise ValueError("the result is not a real number (fractional power of a negative number)")
        _check_size(result)
        return result
    raise ValueError(
        f"unsupported syntax {_describe(node)}; only numbers, + - * / // % **, parentheses allowed"
    )


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"name {node.id!r} (variables and functions are not allowed)"
    if isinstance(node, ast.Call):
        return "function call"
    if isinstance(node, ast.Attribute):
        return f"attribute access '.{node.attr}'"
    return type(node).__name__


def _check_power(base: _Number, exponent: _Number) -> None:
    """Refuse powers whose result would have more than :data:`MAX_RESULT_DIGITS` digits."""
    if base == 0 and exponent < 0:
        raise ValueError("zero cannot be raised to a negative power")
    magnitude = abs(base)
    if magnitude in (0, 1) or exponent <= 0:
        return
    digits = exponent * math.log10(magnitude)
    if digits > MAX_RESULT_DIGITS:
        raise ValueError(
            f"{_format_number(base)} ** {_format_number(exponent)} would have about {digits:.3g} digits; "
            f"the limit is {MAX_RESULT_DIGITS}"
        )


def _check_size(value: _Number) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_DIGITS * 3.33:
        raise ValueError(f"the result has more than {MAX_RESULT_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("the result is not a finite number")


def _format_number(value: _Number) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value) if isinstance(value, int) else format(value, ".15g")


# ---------------------------------------------------------------------------------------------- search
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SUFFIXES = ("ing", "ed", "es", "s")


def _terms(text: str) -> list[str]:
    """Lower-cased words with a few common English suffixes stripped (so "engines" matches "engine")."""
    out = []
    for word in _WORD.findall(text.lower()):
        for suffix in _SUFFIXES:
            if len(word) > len(suffix) + 2 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        out.append(word)
    return out


@dataclass(frozen=True, slots=True)
class Passage:
    """One paragraph of a corpus file."""

    source: str
    """Path of the file, relative to the corpus folder."""
    text: str


class LocalCorpus:
    """The ``.txt`` and ``.md`` files of a folder, split into paragraphs and ranked with BM25.

    Args:
        folder: Directory searched recursively.
        max_passage_chars: Longer paragraphs are split into pieces of about this size.

    Raises:
        FileNotFoundError: ``folder`` does not exist or is not a directory.

    """

    def __init__(self, folder: str | Path, max_passage_chars: int = 600) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(
                f"search corpus folder {str(self.folder)!r} does not exist or is not a folder"
            )
        self.passages: list[Passage] = []
        for path in sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in (".txt", ".md")):
            text = path.read_text(encoding="utf-8", errors="replace")
            for paragraph in re.split(r"\n\s*\n", text):
                for piece in _split_long(" ".join(paragraph.split()), max_passage_chars):
                    self.passages.append(Passage(str(path.relative_to(self.folder)), piece))
        self._counts = [Counter(_terms(p.text)) for p in self.passages]
        self._lengths = [sum(c.values()) for c in self._counts]
        self._avg_length = sum(self._lengths) / len(self._lengths) if self._lengths else 0.0
        self._doc_freq: Counter[str] = Counter()
        for counts in self._counts:
            self._doc_freq.update(counts.keys())

    def rank(
        self, query: str, top_k: int = 3, k1: float = 1.5, b: float = 0.75
    ) -> list[tuple[float, Passage]]:
        """Return up to ``top_k`` ``(score, passage)`` pairs with a positive BM25 score, best first."""
        n = len(self.passages)
        scored: list[tuple[float, Passage]] = []
        query_terms = set(_terms(query))
        for counts, length, passage in zip(self._counts, self._lengths, self.passages, strict=True):
            score = 0.0
            for term in query_terms:
                tf = counts.get(term, 0)
                if tf:
                    idf = math.log(1 + (n - self._doc_freq[term] + 0.5) / (self._doc_freq[term] + 0.5))
                    score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / self._avg_length))
            if score > 0:
                scored.append((score, passage))
        scored.sort(key=lambda pair: -pair[0])
        return scored[:top_k]

    def search(self, query: str, top_k: int = 3) -> str:
        """Return the best passages for ``query`` as text, one ``[source] passage`` paragraph each."""
        hits = self.rank(query, top_k)
        if not hits:
            return f"No passage matches {query!r}."
        return "\n\n".join(f"[{p.source}] {p.text}" for _, p in hits)


def _split_long(text: str, limit: int) -> list[str]:
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    sentences = re.split(r"(?<=[.!?])\s+", text)
    pieces, current = [], ""
    for sentence in sentences:
        if current and len(current) + len(sentence) + 1 > limit:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def calculator_tool() -> Tool:
    """Wrap :func:`calculator` as a :class:`~hogwild_agents.Tool`."""
    from . import Tool

    return Tool.from_function(calculator)


def search_tool(folder: str | Path, top_k: int = 3) -> Tool:
    """Build a ``search`` tool over the ``.txt``/``.md`` files of ``folder`` (indexed once, now).

    Args:
        folder: Directory of the corpus.
        top_k: Passages returned per query.

    Raises:
        FileNotFoundError: ``folder`` does not exist.

    """
    from . import Tool

    corpus = LocalCorpus(folder)

    def search(query: str) -> str:
        """Search the local document collection and return the most relevant passages.

        Args:
            query: Keywords to look for, e.g. "boiling point of water".

        """
        return corpus.search(query, top_k)

    return Tool.from_function(search)
