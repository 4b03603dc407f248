"""Launch shape of the Triton split kernel: tile sizes, row tiles and split count, from host ints only.

Plain Python (no Triton import), so the plan can be inspected and unit-tested anywhere. Every value depends
on shapes, the SM count and the :class:`LaunchConfig`, never on metadata values, which keeps the launch
capturable in a CUDA graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LaunchConfig", "LaunchPlan", "default_block_n", "plan_launch"]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


@dataclass(frozen=True, slots=True)
class LaunchConfig:
    """Tile sizes and split policy of the split kernel (defaults chosen by measurement, see below).

    Attributes:
        block_n: keys per tile, a power of two >= 16; ``None``: ``min(64, next_power_of_2(page_size))``
            (at least 16). A page is ``cdiv(page_size, block_n)`` tiles; the slots of a page's last tile
            past the page size are masked, so every page size works with every ``block_n``.
        num_warps: warps per program of the split kernel; ``None``: 8 for 64-row tiles, else 4.
        max_block_m: most query rows per program tile (16, 32 or 64); more rows than this are spread over
            several programs that read the same KV tiles. ``None``: 64, i.e. every query row of a KV head
            (all workers x the GQA group, up to 64) in one program, so each KV tile is read once.
        num_stages: software-pipelining depth of the K/V loads; ``None``: 5.
        waves: programs per SM the split count aims at; the grid is kept at or under
            ``waves x SMs`` programs (never a few over, which would add a tail wave).
        min_tiles_per_split: fewest KV tiles a split gets.
        max_partial_ratio: most split-K partial bytes (fp32 ``[rows, D]`` per split) per KV byte a
            split reads; with many rows and a short cache, fewer splits keep the partial traffic (and
            the merge) from outgrowing the KV read. ``None``: no bound.
        num_splits: force a split count (tests); ``None`` chooses from the SM count.
        live_mode: tiles no row of the program sees: 1 predicates their loads off, 2 branches around the
            tile. ``None``: 2 when a group has several queries (chunks, prefill: skips causally masked
            tiles), else 1.
        rotate_on_change: keep each row's rotated query in registers and recompute it only when a row's
            shift changes (block boundaries), instead of every tile.

    """

    # H100 greedy sweep (bench/kernel.py --tune, bench/RESULTS.md 2026-11-26, commit b32fe14): geometric mean
    # of per-layer µs over Qwen2.5-7B 4k W=1 / 32k W=8, Qwen2.5-14B 16k W=4, Llama-3.1-8B 32k W=1:
    # num_stages 3/4/5 -> 53.1/53.2/51.5; waves 2/4/8 -> 46.0/51.5/70.7; two tiles per loop iteration ->
    # 93.3 (removed); min_tiles_per_split 2 -> 43.7. block_n=32 lost earlier (79.4 vs 57.8, H200).
    # rotate_on_change replaces the old "rotate when a shift changes" mode, which lost (46.0 vs 43.1) when
    # it paid a second cross-row reduction per tile and sin/cos; now its flag rides on the reduction
    # the tile already does, and the rotation reads the cos/sin table (compiled sm_90 SASS, Triton 3.9:
    # the loop body is 508 instructions per warp at 16 rows with the table read every tile, 420 without;
    # 826 vs 578 at 32 rows). Not yet timed on a GPU: bench/kernel_variants.py times it against the rest.
    block_n: int | None = None
    num_warps: int | None = None
    max_block_m: int | None = None
    num_stages: int | None = None
    waves: float = 2.0
    min_tiles_per_split: int = 1
    max_partial_ratio: float | None = 0.5
    num_splits: int | None = None
    live_mode: int | None = None
    rotate_on_change: bool = True


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """The launch shape :func:`plan_launch` derives from host ints (so a CUDA graph can capture it).

    Attributes:
        block_n: keys per tile (power of two). tiles_per_page: ``cdiv(page_size, block_n)``.
        num_tiles: ``entries x tiles_per_page``. rows: packed query rows per KV head (``T x GQA``).
        block_m: rows per program tile (power of two, 16..64). m_tiles: row tiles per KV head.
        splits: split-K programs per (KV head, row tile). tiles_per_split: KV tiles each split reads.
        num_warps: warps per program. num_stages: software-pipelining depth.

    """

    block_n: int
    tiles_per_page: int
    num_tiles: int
    rows: int
    block_m: int
    m_tiles: int
    splits: int
    tiles_per_split: int
    num_warps: int
    num_stages: int


def default_block_n(page_size: int) -> int:
    """Keys per tile for ``page_size``: the page rounded up to a power of two, between 16 and 64.

    16, 32, 64 and multiples of 64 fill every tile (the paths the sweeps above measured); other sizes pad
    the last tile of each page with masked slots (their loads are predicated off: compute, not traffic).
    """
    return min(64, max(16, _next_power_of_2(page_size)))


def plan_launch(
    page_size: int, num_entries: int, rows: int, kv_heads: int, sm_count: int, cfg: LaunchConfig
) -> LaunchPlan:
    """Tiles, row tiles and split count of one call, from host ints only (no metadata values).

    Args:
        page_size: slots per KV page.
        num_entries: view entries ``E`` (the capacity, for a CUDA-graph bucket).
        rows: query rows per KV head, ``T x GQA`` (every worker's tokens times the GQA group).
        kv_heads: KV heads (programs along the grid's first axis).
        sm_count: SMs of the device.
        cfg: the :class:`LaunchConfig`.

    Raises:
        ValueError: ``cfg.block_n`` is not a power of two >= 16.

    """
    block_n = default_block_n(page_size) if cfg.block_n is None else cfg.block_n
    if block_n < 16 or block_n & (block_n - 1):
        raise ValueError(
            f"block_n={block_n} must be a power of two >= 16 (keys per tile); use None or 16/32/64"
        )
    tiles_per_page = _cdiv(page_size, block_n)
    num_tiles = num_entries * tiles_per_page
    # Row tiles: every row of a KV head in one program up to 64 rows, so each KV tile is read once (H200,
    # bench/RESULTS.md 2026-11-26, with the cos/sin table: one 32-row tile beat two 16-row tiles at 28
    # and 20 rows, 33.5 vs 39.3 and 34.0 vs 40.1 µs; one 64-row tile tied four 16-row tiles at 56 rows).
    cap = 64 if cfg.max_block_m is None else max(16, min(64, cfg.max_block_m))
    block_m = cap if rows >= cap else max(16, _next_power_of_2(rows))
    m_tiles = _cdiv(rows, block_m)
    programs = kv_heads * m_tiles
    if cfg.num_splits is not None:
        splits = max(1, min(cfg.num_splits, num_tiles))
    else:
        # floor, not ceil: a grid a few programs over waves x SMs runs a whole extra wave for them
        # (Qwen2.5-14B 32k W=4 took 90.6 µs against 40.4 at 16k: 272 programs for 264 slots).
        splits = max(1, int(cfg.waves * sm_count) // programs)
        fewest = max(1, cfg.min_tiles_per_split)
        if cfg.max_partial_ratio is not None:
            # partial bytes a program writes: its real rows x D x 4 (fp32); KV bytes per tile: block_n x D x 4
            # (K and V, 16-bit). Qwen2.5-7B 4k W=8 (56 rows, 80 tiles per head) took 40 splits of two tiles:
            # 4.6 MB of partials written and merged per layer against 8 MiB of KV (bench/kernel.py's layout).
            fewest = max(fewest, math.ceil(min(rows, block_m) / (cfg.max_partial_ratio * block_n)))
        splits = max(1, min(splits, num_tiles // fewest))
    tiles_per_split = _cdiv(num_tiles, splits)
    splits = _cdiv(num_tiles, tiles_per_split)  # no empty trailing splits
    # 8 warps for 32-row tiles (tried against the 255-register spills at 4 warps) measured slower on
    # H200: Qwen2.5-7B 32k W=4 61.4 vs 50.5 µs, Llama-3.1-8B 32k W=8 114.9 vs 81.6 (bench/RESULTS.md).
    num_warps = cfg.num_warps or (8 if block_m >= 64 else 4)
    # 5 stages (the H100 sweep above). At 64 rows they take 117 KB of shared memory (sm_90, Triton 3.9), so
    # one program per SM, but so do its 228-237 registers x 256 threads; 4 stages (83 KB) is a variant.
    num_stages = cfg.num_stages or 5
    return LaunchPlan(
        block_n,
        tiles_per_page,
        num_tiles,
        rows,
        block_m,
        m_tiles,
        splits,
        tiles_per_split,
        num_warps,
        num_stages,
    )
