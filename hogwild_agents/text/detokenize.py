"""Incremental detokenization: text deltas that never split a multi-byte character."""

from __future__ import annotations

from typing import Any

__all__ = ["IncrementalText"]


class IncrementalText:
    """Accumulates token ids of one stretch of text (one step) and yields the text each token adds.

    Byte-level tokenizers can split a character across tokens; a delta is held back while the decoded
    text ends in a replacement character, and released once the character completes.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.token_ids: list[int] = []
        self.text = ""

    def add(self, token_ids: list[int]) -> str:
        """Append ``token_ids``; return the newly completed text (possibly empty)."""
        self.token_ids.extend(token_ids)
        decoded = self._tokenizer.decode(self.token_ids, skip_special_tokens=False)
        if decoded.endswith("\ufffd"):
            return ""
        delta = decoded[len(self.text) :]
        self.text = decoded
        return delta

    def reset(self) -> None:
        """Start a new stretch of text."""
        self.token_ids = []
        self.text = ""
