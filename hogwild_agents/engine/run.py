"""One run's life as two calls the scheduler makes every step: :func:`plan` and :func:`apply`.

``plan(run)`` advances the run through phases that need no forward (collecting tool results, ending
generation, starting the finisher, finishing) until it has a :class:`~.protocol.Plan` for the next
forward, must :class:`~.protocol.Wait` for tools, or is suspended or done. ``apply(run, ids)`` takes the
tokens sampled for that plan. Everything else is in the rule modules; this one only dispatches.
"""

from __future__ import annotations

import os

from ..api.config import HogwildConfig
from ..api.results import SamplingRecord
from ..runner.sampling import SamplingParams
from ..text.prompts import PromptTexts, step_header
from ..tools import Tool, ToolFormat
from ..tools.schema import check_response_format, grammar_error
from .budget import check_prompt_fits
from .finisher import apply_finish, end_turn, plan_finish
from .generate import apply_generate, end_generation, plan_drain, plan_generate
from .prefill import apply_prefill, plan_prefill
from .protocol import Phase, Plan, Wait
from .resources import RunResources
from .state import RunState
from .tools import ToolSession, tag_openings
from .trace import record_forward, record_samples

__all__ = ["apply", "close", "new_run", "plan", "reserve_failed"]

_RUNNING = (Phase.PREFILL, Phase.GENERATE, Phase.DRAIN, Phase.FINISH)


def new_run(res: RunResources, texts: PromptTexts, cfg: HogwildConfig, tools: list[Tool]) -> RunState:
    """A run of ``cfg`` over rendered ``texts``, validated (it fits the context window) before any forward.

    Raises:
        ContextOverflowError: the prompt does not fit.
        InvalidRequestError: the tools or ``tool_choice`` are invalid.
    """
    if cfg.response_format is not None:
        check_response_format(cfg.response_format)
        try:
            res.grammar_factory.json_schema(cfg.response_format)  # compiled now: cached for the finisher
        except Exception as e:  # xgrammar's RuntimeError names the unsupported part
            raise grammar_error("response_format", e) from e
    seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
    worker_bans: list[int] = []
    if cfg.collaboration and cfg.ban_header_tokens:
        worker_bans.extend(res.hash_token_ids)  # workers cannot forge the workspace's '###' headers
    if cfg.collaboration:
        # As in the paper, collaborating workers cannot end the turn: the run ends through a final answer,
        # a budget or the finisher (small models otherwise stop after one line).
        worker_bans.extend(res.eos_ids)
    if texts.opens_think:
        think = res.encode("</think>")
        worker_bans.extend(think if len(think) == 1 else [])  # the finisher closes the think block
    # The finisher never writes '#' header tokens (unless a grammar constrains it anyway); it may end.
    finisher_bans = res.hash_token_ids if cfg.collaboration and cfg.ban_header_tokens else ()
    run = RunState(
        res=res,
        cfg=cfg,
        texts=texts,
        tools=ToolSession(res, tools, cfg),
        sampling=SamplingParams(cfg.temperature, cfg.top_p, cfg.top_k, seed),
        prompt_ids=res.encode_marked(texts.prompt, texts.prompt_spans),
        finisher_ids=res.encode(texts.finisher) if cfg.use_finisher else [],
        worker_ban=res.ban_set("workers", tuple(sorted(set(worker_bans)))) if worker_bans else None,
        finisher_ban=(
            res.ban_set("finisher", tuple(finisher_bans))
            if finisher_bans and cfg.response_format is None
            else None
        ),
        context_window=min(cfg.context_window or 10**9, res.context_window),
    )
    if cfg.collaboration and cfg.guard_markup:
        run.worker_markup, run.finisher_markup = markup_patterns(cfg, texts)
        if run.tools.fmt is not None and not run.tools.may_finish_with_calls:
            run.finisher_markup += tool_markup(run.tools.fmt)  # execute mode: calls are the workers' job
    run.trace.sampling = SamplingRecord(cfg.temperature, cfg.top_p, cfg.top_k, seed)
    check_prompt_fits(run)
    return run


def markup_patterns(cfg: HogwildConfig, texts: PromptTexts) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The strings workers and the finisher may not write: the workspace's own markup.

    Workers: step headers, by their two ends: any worker's name in bold (``**Bob``) and a header's close
    (``]:**``, ``):**``), whatever the name between. With ``**Bob [`` alone banned the 0.5B model wrote
    ``**Bob (1):**``, then ``**Bob]``, then a header of a made-up worker (``**Bab [1]:**``). Also the
    marker ending others' unfinished steps. The finisher: those, the self-check question, the section
    headers and ``<answer ...>`` tags.
    """
    names = tuple(step_header(name, 1).split("[")[0].rstrip() for name in cfg.names)  # "**Alice"
    headers = (*names, "]:**", "):**")
    marker = texts.separator.strip()  # "<...>"; its opening ("<...") too: small models echo it in variants
    workers = (*headers, marker, marker[:-1] if marker.endswith(">") else marker, "< ...", "<…")
    sections = (texts.others_header.strip(), texts.own_header.strip(), "### Past steps")
    check = cfg.self_check_text.strip()
    question = check.split("(")[0].strip()  # "Quick check: am I doing redundant work?"
    checks = (check, question, question.split(": ", 1)[-1])
    finisher = (*workers, *checks, *sections, "<answer", "</answer")  # any attributes too
    return tuple(p for p in workers if p), tuple(p for p in finisher if p)


def tool_markup(fmt: ToolFormat) -> tuple[str, ...]:
    """The tool format's call and result wrappers (``<tool_call>``, ``<tool_response>``, their closers).

    A finisher that may not answer with a call (execute mode) still sees the workers' calls and results
    in the shared history, and small models copy them into the answer.
    """
    tags = tag_openings((fmt.call_prefix, fmt.call_suffix, fmt.inline_prefix, fmt.inline_suffix))
    # The stem of a tag (``<tool`` of ``<tool_call``) and bare JSON calls: the 0.5B writes
    # ``<tool_calculate>`` and ``{"name": ...}`` once ``<tool_call`` is banned.
    stems = tuple(t.split("_")[0] for t in tags if t.startswith("<") and "_" in t)
    return tuple(dict.fromkeys((*tags, *stems, '{"name"')))


def plan(run: RunState) -> Plan | Wait | None:
    """The run's part of the next forward, a :class:`Wait` on its tools, or ``None`` (suspended, done)."""
    while run.phase in _RUNNING:
        if run.phase is Phase.PREFILL:
            step: Plan | Wait | None = plan_prefill(run)
        elif run.phase is Phase.GENERATE:
            step = plan_generate(run)
        elif run.phase is Phase.DRAIN:
            step = plan_drain(run)
        else:
            step = plan_finish(run)
        if step is not None:
            if isinstance(step, Plan):
                run.inflight = step
                record_forward(run, step)
            return step
    return None


def apply(run: RunState, ids: list[int], masks: dict | None = None, vocab_size: int = 0) -> None:
    """Take the tokens sampled for the run's plan (one per ``plan.samples``) after its forward."""
    step = run.inflight
    assert step is not None
    run.forward_index += 1
    run.usage.forwards += 1
    record_samples(run, step.samples, ids, masks or {}, vocab_size)
    phase = run.phase
    if phase is Phase.PREFILL:
        apply_prefill(run, ids)
    elif phase is Phase.GENERATE:
        apply_generate(run, ids)
    elif phase is Phase.FINISH and step.samples:
        apply_finish(run, ids)
    # DRAIN's forward (and FINISH after a drain) only wrote tool results: nothing was sampled.
    run.inflight = None


def reserve_failed(run: RunState) -> None:
    """The pages of the run's plan could not be reserved (other runs hold them): end what it was doing.

    Generation ends with ``cache_full``, a finisher turn ends where it is, a drain forward is skipped.
    (A prefill that does not fit yet is retried by the scheduler instead.)
    """
    step = run.inflight
    assert step is not None
    run.trace.forwards.pop()
    run.inflight = None
    if run.phase is Phase.GENERATE:
        end_generation(run, "cache_full")
    elif run.phase is Phase.FINISH and step.samples:
        end_turn(run)


def close(run: RunState) -> None:
    """Abandon the run (cancelled, failed, or an evicted suspended run) and release its pages."""
    run.tools.cancel_outstanding()
    store = run.res.store
    for block in run.blocks:
        if block in store.blocks:
            store.release(block)
    run.phase = Phase.DONE
