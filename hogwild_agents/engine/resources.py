"""What a run needs from its engine, as one frozen object: never the engine itself.

Everything here is shared by all runs of one engine and fixed for its life. The costly parts (the tool
format read from the chat template, xgrammar's compiler, the tool executor's threads, the table of
``#`` tokens) are built on first use, once, under a lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..cache.store import PagedKVStore
from ..runner.distributed import ParallelContext
from ..runner.sampling import BanSet
from ..text.markup import TokenTexts
from ..text.untrusted import Spans, encode_marked
from ..tools import GrammarFactory, ToolExecutor, ToolFormat

__all__ = ["RunResources"]


@dataclass(frozen=True)
class RunResources:
    """The engine's shared, read-only equipment that runs use.

    Attributes:
        tokenizer: the model's tokenizer.
        store: the shared paged KV store (runs create and release their blocks in it).
        eos_ids: token ids that end a turn.
        vocab_size: width of the model's logits.
        context_window: the model's longest sequence.
        parallel: the tensor-parallel group (rank 0 decides; identity with one process).
        executor_factory: builds the tool executor the first time a run calls a tool.
    """

    tokenizer: Any
    store: PagedKVStore
    eos_ids: frozenset[int]
    vocab_size: int
    context_window: int
    parallel: ParallelContext
    executor_factory: Callable[[], ToolExecutor] = ToolExecutor
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def encode(self, text: str) -> list[int]:
        """Token ids of engine-written ``text`` (headers, the finisher turn); no special tokens added."""
        return list(self.tokenizer.encode(text, add_special_tokens=False)) if text else []

    def encode_untrusted(self, text: str) -> list[int]:
        """Token ids of untrusted ``text`` as plain text: special-token strings in it are split."""
        return encode_marked(self.tokenizer, text, [(0, len(text))]) if text else []

    def encode_marked(self, text: str, spans: Spans) -> list[int]:
        """Token ids of ``text`` whose ``spans`` are untrusted (see :mod:`..text.untrusted`)."""
        return encode_marked(self.tokenizer, text, spans) if text else []

    @functools.cached_property
    def tool_format(self) -> ToolFormat:
        """How the model writes tool calls and reads results, read from its chat template."""
        with self._lock:
            return ToolFormat.from_tokenizer(self.tokenizer)

    @functools.cached_property
    def grammar_factory(self) -> GrammarFactory:
        """Compiles constrained-decoding grammars for this tokenizer and logits width."""
        with self._lock:
            # Short whitespace runs keep weak models from looping on spaces inside forced JSON.
            return GrammarFactory(self.tokenizer, self.vocab_size, max_whitespace=4)

    @functools.cached_property
    def executor(self) -> ToolExecutor:
        """Runs tools concurrently with generation (started on first use)."""
        with self._lock:
            return self.executor_factory()

    @functools.cached_property
    def hash_token_ids(self) -> tuple[int, ...]:
        """Ids of the tokens whose text contains ``#`` (banned for workers, see ``ban_header_tokens``)."""
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        special = set(self.tokenizer.all_special_ids)
        return tuple(i for i, t in enumerate(vocab) if t and "#" in t and i not in special)

    @functools.cached_property
    def quiet_tokens(self) -> np.ndarray:
        """``[V] bool``: tokens whose text can change no decision of the step rules (see ``engine.pipeline``).

        Quiet means no newline (a step can end only at a blank line), no character that may open a tool
        call or a fence (``{ [ ` <``), not a special token, not end-of-sequence. Built once per tokenizer.
        """
        return _quiet_tokens(self.token_texts, self.vocab_size, self.eos_ids)

    @functools.cached_property
    def token_texts(self) -> TokenTexts:
        """Every token's text, for the markup guards and the quiet table (built once per tokenizer)."""
        with self._lock:
            return _token_texts(self.tokenizer, self.vocab_size)

    def ban_set(self, name: str, ids: tuple[int, ...]) -> BanSet:
        """The :class:`BanSet` of ``ids`` (built once per distinct set, then shared by runs)."""
        return _ban_set(self.vocab_size, name, ids)

    def executor_started(self) -> bool:
        """Whether a run has started the tool executor (so closing the engine must stop it)."""
        return "executor" in self.__dict__


_TEXTS: dict[int, tuple[Any, TokenTexts]] = {}
_LOUD_CHARACTERS = frozenset("\n{[`<")


def _token_texts(tokenizer: Any, vocab_size: int) -> TokenTexts:
    cached = _TEXTS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    texts = TokenTexts(tokenizer, vocab_size)
    _TEXTS[id(tokenizer)] = (tokenizer, texts)
    return texts


def _quiet_tokens(texts: TokenTexts, vocab_size: int, eos_ids: frozenset[int]) -> np.ndarray:
    quiet = np.zeros(vocab_size, dtype=np.bool_)
    silent = texts.special | eos_ids
    for i, text in enumerate(texts.texts):
        quiet[i] = i not in silent and not _LOUD_CHARACTERS.intersection(text)
    return quiet


@functools.lru_cache(maxsize=64)
def _ban_set(vocab_size: int, name: str, ids: tuple[int, ...]) -> BanSet:
    return BanSet(name, ids, vocab_size)


def device_of(store: PagedKVStore) -> torch.device:
    """The device the store's pages live on."""
    return store.key_pages.device
