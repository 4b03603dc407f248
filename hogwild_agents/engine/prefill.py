"""Prefill: the prompt and the shared header blocks in one forward, then the workers' first steps.

With collaboration the workers' first forward feeds their step headers. Without it (plain generation)
each worker's first token is sampled from the prompt's last position, so the prefill counts as the
workers' first forward: ``max_forwards=N`` then yields N tokens, as ``generate`` does.
"""

from __future__ import annotations

from ..cache.layouts import SharedLayoutState
from ..cache.plan import WriteGroup
from ..runner.sampling import writer_stream
from ..text.detokenize import TextStream
from ..text.markup import MarkupGuard
from ..text.prompts import step_header
from ..text.stops import StopMatcher
from .protocol import Phase, Plan
from .sampling import worker_sample
from .state import RunState, WorkerState
from .steps import accept_token, feed_text, new_block, take_token

__all__ = ["apply_prefill", "plan_prefill"]

_HEADERS = ("others_header", "separator", "own_header")


def plan_prefill(run: RunState) -> Plan:
    """The prompt block (and the shared headers, each attending to the prompt) in one forward."""
    prompt = new_block(run, "prompt", "prompt")
    run.layout = SharedLayoutState(prompt=prompt, current=[None] * run.cfg.workers)
    groups = [WriteGroup("prompt", prompt, run.prompt_ids, [prompt])]
    if run.cfg.collaboration:
        for attr in _HEADERS:
            block = new_block(run, "header", attr)
            setattr(run.layout, attr, block)
            groups.append(
                WriteGroup("header", block, run.res.encode(getattr(run.texts, attr)), [prompt, block])
            )
    plan = Plan(groups)
    _add_workers(run)
    if not run.cfg.collaboration:
        # A forced call holds from the first token on (the grammar applies to the prompt's last position).
        plan.samples = [worker_sample(run, w, 0, run.tools.constraint(w.name)) for w in run.workers]
    return plan


def _add_workers(run: RunState) -> None:
    assert run.layout is not None
    plain_stops = run.cfg.stop and not run.cfg.use_finisher
    for i, name in enumerate(run.cfg.names):
        markup = run.worker_markup + run.tools.worker_markup(name) if run.worker_markup else ()
        worker = WorkerState(
            index=i,
            name=name,
            block=new_block(run, name, "step"),
            text=TextStream(run.res.tokenizer),
            stops=StopMatcher(run.cfg.stop) if plain_stops else None,
            stream=writer_stream(run.sampling.seed, name),
            guard=MarkupGuard(markup, run.res.token_texts) if markup else None,
        )
        run.tools.register(name)
        run.layout.current[i] = worker.block
        run.workers.append(worker)


def apply_prefill(run: RunState, ids: list[int]) -> None:
    """After the prefill forward: feed the headers, or take the workers' first tokens (plain generation)."""
    plan = run.inflight
    assert plan is not None
    run.usage.prompt_tokens = sum(len(g.token_ids) for g in plan.groups)
    run.phase = Phase.GENERATE
    if run.cfg.collaboration:
        for worker in run.workers:
            feed_text(run, worker, step_header(worker.name, 1))
        return
    run.usage.worker_forwards += 1
    for worker, request, token in zip(run.workers, plan.samples, ids, strict=True):
        accept_token(run, request.constraint, token)
        take_token(run, worker, token)
