"""Encoding text whose parts are untrusted: control tokens only where the engine or the template put them.

A tokenizer asked to parse special tokens turns the *string* ``<|im_end|>`` into the end-of-turn token
wherever it appears; a user message, a tool result or a retrieved document holding that string would then
close its turn and open a forged one (``<|im_start|>system ...``) in the shared cache. Here a text comes
with the character spans that are untrusted: special-token strings outside those spans (the template's own
structure) become their control tokens, and everything else is encoded with special tokens split, as plain
text.

The split happens only at special tokens, where Hugging Face tokenizers split anyway: every fragment
between two control tokens is encoded on its own in both cases, so a text whose untrusted spans hold no
special-token string gets exactly the ids ``tokenizer.encode(text)`` gives (the tests pin this).
Non-special added tokens (Qwen's ``<tool_call>``) are ordinary vocabulary the model itself writes; they
are not control tokens and are kept as the tokenizer encodes them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["Spans", "encode_marked", "join_pieces", "special_tokens", "structural_specials"]

Spans = Sequence[tuple[int, int]]
"""Half-open ``(start, end)`` character ranges of a text that are untrusted."""

_CACHE: dict[int, tuple[Any, dict[str, int], re.Pattern[str] | None]] = {}
_LOCK = threading.Lock()


def special_tokens(tokenizer: Any) -> tuple[dict[str, int], re.Pattern[str] | None]:
    """The tokenizer's special (control) token strings → ids, and a pattern finding them (longest first)."""
    with _LOCK:
        cached = _CACHE.get(id(tokenizer))
        if cached is not None and cached[0] is tokenizer:
            return cached[1], cached[2]
    specials: dict[str, int] = {}
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False) and added.content:
            specials[str(added.content)] = int(token_id)
    for token in getattr(tokenizer, "all_special_tokens", ()):
        if token and token not in specials:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int):
                specials[token] = token_id
    names = sorted(specials, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(n) for n in names)) if names else None
    with _LOCK:
        _CACHE[id(tokenizer)] = (tokenizer, specials, pattern)
    return specials, pattern


def _inside(start: int, end: int, spans: Spans) -> bool:
    return any(s < end and start < e for s, e in spans)


def structural_specials(tokenizer: Any, text: str, spans: Spans) -> list[tuple[int, int, int]]:
    """``(start, end, id)`` of every special-token string in ``text`` outside the untrusted ``spans``."""
    specials, pattern = special_tokens(tokenizer)
    if pattern is None:
        return []
    return [
        (m.start(), m.end(), specials[m.group()])
        for m in pattern.finditer(text)
        if not _inside(m.start(), m.end(), spans)
    ]


def encode_marked(tokenizer: Any, text: str, spans: Spans = ()) -> list[int]:
    """Token ids of ``text``: control tokens only outside ``spans``, plain text everywhere else."""
    ids: list[int] = []
    pos = 0
    for start, end, token_id in structural_specials(tokenizer, text, spans):
        ids.extend(_plain(tokenizer, text[pos:start]))
        ids.append(token_id)
        pos = end
    ids.extend(_plain(tokenizer, text[pos:]))
    return ids


def _plain(tokenizer: Any, text: str) -> list[int]:
    if not text:
        return []
    return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))


def join_pieces(pieces: Sequence[tuple[str, bool]]) -> tuple[str, list[tuple[int, int]]]:
    """Join ``(text, untrusted)`` pieces; return the text and its untrusted spans."""
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for text, untrusted in pieces:
        if untrusted and text:
            spans.append((pos, pos + len(text)))
        parts.append(text)
        pos += len(text)
    return "".join(parts), spans
