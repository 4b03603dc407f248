"""The shared paged KV store: fixed-size pages, blocks made of pages, plain-Python bookkeeping.

A block is a contiguous run of tokens by one author. Its keys are stored rotated to block-local positions
(0 … len-1), so a block can sit anywhere in any worker's view without being touched again. Committing a
step moves the block's id into the shared history list: page references move, bytes do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["Block", "PagePoolExhausted", "PagedKVStore"]


class PagePoolExhausted(RuntimeError):
    """The page pool has too few free pages for a write (the engine ends the run through the finisher)."""


@dataclass(slots=True)
class Block:
    """Bookkeeping of one block: its pages, its tokens, and when each token was written."""

    id: int
    author: str
    kind: str
    pages: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    written_at: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Number of tokens in the block."""
        return len(self.token_ids)


class PagedKVStore:
    """Per-layer K/V pages plus the blocks that own them.

    Tensors: ``key_pages`` and ``value_pages`` are ``[layers, pages, page_size, kv_heads, head_dim]``.
    """

    def __init__(
        self,
        *,
        num_layers: int,
        num_pages: int,
        page_size: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (num_layers, num_pages, page_size, num_kv_heads, head_dim)
        self.key_pages = torch.zeros(shape, dtype=dtype, device=device)
        self.value_pages = torch.zeros(shape, dtype=dtype, device=device)
        self.page_size = page_size
        self.num_pages = num_pages
        self._free: list[int] = list(range(num_pages - 1, -1, -1))
        self.blocks: dict[int, Block] = {}
        self._next_id = 0

    @property
    def free_pages(self) -> int:
        """Pages not owned by any block."""
        return len(self._free)

    def take_scratch_page(self) -> int:
        """Remove one page from the pool for good and return it (a write target nobody reads)."""
        if not self._free:
            raise PagePoolExhausted("no free page left for a scratch page")
        return self._free.pop(0)

    def new_block(self, author: str, kind: str) -> Block:
        """Create an empty block (it owns no page until tokens are reserved in it)."""
        block = Block(id=self._next_id, author=author, kind=kind)
        self._next_id += 1
        self.blocks[block.id] = block
        return block

    def pages_needed(self, block: Block, n_tokens: int) -> int:
        """Pages that appending ``n_tokens`` to ``block`` would take from the pool."""
        capacity = len(block.pages) * self.page_size
        missing = block.length + n_tokens - capacity
        return max(0, -(-missing // self.page_size))

    def reserve(self, block: Block, token_ids: list[int], forward: int) -> list[int]:
        """Append ``token_ids`` to ``block``; return their flat slots (page * page_size + offset)."""
        need = self.pages_needed(block, len(token_ids))
        if need > len(self._free):
            raise PagePoolExhausted(
                f"the KV page pool has {len(self._free)} free pages, {need} needed; raise max_cache_tokens"
            )
        for _ in range(need):
            block.pages.append(self._free.pop())
        start = block.length
        slots = [
            block.pages[i // self.page_size] * self.page_size + i % self.page_size
            for i in range(start, start + len(token_ids))
        ]
        block.token_ids.extend(token_ids)
        block.written_at.extend([forward] * len(token_ids))
        return slots

    def unreserve(self, block: Block, n_tokens: int) -> None:
        """Take back the last ``n_tokens`` reserved in ``block`` (never written), and pages they took.

        Pages go back to the pool in the reverse order :meth:`reserve` took them, so the pool is exactly
        as before the reservation.
        """
        if n_tokens:
            del block.token_ids[-n_tokens:]
            del block.written_at[-n_tokens:]
        keep = -(-block.length // self.page_size)
        while len(block.pages) > keep:
            self._free.append(block.pages.pop())

    def release(self, block_id: int) -> None:
        """Return a block's pages to the pool and forget the block."""
        block = self.blocks.pop(block_id)
        self._free.extend(reversed(block.pages))

    def release_all(self, keep: set[int] | None = None) -> None:
        """Release every block except those in ``keep``."""
        for block_id in [b for b in self.blocks if not keep or b not in keep]:
            self.release(block_id)
