"""Budgets of a run: what it may spend (forwards, tokens) and whether its next writes still fit.

A run keeps room for its finisher: the finisher's turn and answer tokens are reserved against both the
context window and the page pool, so ending through the finisher always works.
"""

from __future__ import annotations

from ..api.errors import ContextOverflowError
from ..api.results import StopReason
from ..cache.plan import WriteGroup
from ..text.prompts import step_header
from .state import RunState

__all__ = ["budget_reason", "check_prompt_fits", "finisher_reserve", "room_reason"]


def finisher_reserve(run: RunState) -> int:
    """Tokens kept for the finisher: its turn's text and its answer."""
    return len(run.finisher_ids) + run.cfg.max_answer_tokens if run.cfg.use_finisher else 0


def check_prompt_fits(run: RunState) -> None:
    """Refuse a prompt that leaves no room for the workers' first steps and the finisher.

    Raises:
        ContextOverflowError: naming the sizes, and what to change.
    """
    res, cfg = run.res, run.cfg
    headers = sum(len(res.encode(t)) for t in (run.texts.others_header, run.texts.own_header))
    first_steps = cfg.workers * (len(res.encode(step_header("Name", 1))) + 4)
    need = len(run.prompt_ids) + headers + first_steps + finisher_reserve(run)
    if need > run.context_window:
        raise ContextOverflowError(
            f"the prompt needs {len(run.prompt_ids)} tokens and the run reserves "
            f"{need - len(run.prompt_ids)} more (headers, first steps, finisher), over the context window "
            f"of {run.context_window}; "
            "shorten the messages or lower max_answer_tokens"
        )
    store = res.store
    pages = need // store.page_size + 4 * (cfg.workers + 4)
    if pages > store.num_pages:
        raise ContextOverflowError(
            f"the prompt needs about {pages} KV pages but the store holds {store.num_pages}; "
            "raise max_cache_tokens"
        )


def budget_reason(run: RunState, groups: list[WriteGroup]) -> StopReason | None:
    """Why generation must end before writing ``groups``: a spent budget or no room left."""
    if run.usage.worker_forwards >= run.cfg.max_forwards:
        return "max_forwards"
    if run.cfg.max_new_tokens is not None and run.usage.generated_tokens >= run.cfg.max_new_tokens:
        return "max_new_tokens"
    if not run.cfg.use_finisher and run.workers and run.workers[0].generated >= run.cfg.max_answer_tokens:
        return "max_answer_tokens"  # plain generation: the first worker's text is the answer
    return room_reason(run, groups)


def room_reason(run: RunState, groups: list[WriteGroup]) -> StopReason | None:
    """Why ``groups`` would not fit the context window or the page pool (keeping the finisher's share)."""
    store = run.res.store
    # This run's blocks bound every view of it (other runs and kept runs share the store, not the views).
    total = run.written + sum(len(g.token_ids) for g in groups)
    if total + finisher_reserve(run) > run.context_window:
        return "context_window"
    finisher_pages = -(-finisher_reserve(run) // store.page_size) + 1
    if pages_needed(run, groups) + finisher_pages > store.free_pages:
        return "cache_full"
    return None


def pages_needed(run: RunState, groups: list[WriteGroup]) -> int:
    """Pages that reserving ``groups`` would take from the pool."""
    store = run.res.store
    return sum(store.pages_needed(store.blocks[g.block], len(g.token_ids)) for g in groups)
