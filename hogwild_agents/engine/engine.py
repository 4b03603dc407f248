"""The public engine: several workers of one model over one shared KV cache."""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import torch

from ..api.config import HogwildConfig
from ..api.errors import InvalidRequestError
from ..api.events import Event, FinishedEvent, RunStartedEvent
from ..api.messages import Messages, normalize_messages
from ..api.results import RunResult
from ..runner.distributed import SINGLE_PROCESS, ParallelContext
from ..runner.runner import ModelRunner
from ..text.prompts import render_prompt
from ..text.router import needs_team
from ..tools import GrammarFactory, ToolExecutor, ToolFormat
from ..tools.schema import finisher_may_call, tools_from_specs
from .kept import KeptRuns
from .protocol import Phase
from .registry import shared_engine
from .resources import RunResources
from .run import close, new_run
from .scheduler import RunHandle, Scheduler, drive
from .state import RunState
from .stream import RunStream

__all__ = ["HogwildEngine", "Messages", "RunStream"]


def _tp_plan_kwargs() -> dict[str, Any]:
    """``from_pretrained`` arguments applying the model's own tensor-parallel plan over all ranks."""
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        raise ImportError(
            "tensor-parallel loading (a torchrun launch with WORLD_SIZE > 1) goes through transformers' "
            "tp_plan, which needs accelerate: pip install 'hogwild-agents[tp]'"
        )
    try:
        from transformers.distributed import DistributedConfig
    except ImportError:  # transformers before DistributedConfig took the plan directly
        return {"tp_plan": "auto"}
    return {"distributed_config": DistributedConfig(tp_plan="auto")}


class HogwildEngine:
    """Runs ``workers`` instances of one causal LM in parallel over one shared, paged KV cache.

    Every worker sees every other worker's tokens the moment they are written; a finisher turn reads the
    whole shared state and writes the answer. One engine can be shared by threads and asyncio tasks:
    concurrent runs are stepped together by one scheduler thread and their tokens go through the model in
    the same forward passes (see :mod:`hogwild_agents.engine.scheduler`). Use it as a context manager, or
    call :meth:`close`, to free its threads and memory.

    Example:
        >>> with HogwildEngine.from_pretrained(workers=2) as engine:  # doctest: +SKIP
        ...     engine.run("What is 12 + 7? Then add 5.").answer
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        config: HogwildConfig | None = None,
        *,
        parallel: ParallelContext = SINGLE_PROCESS,
        **overrides: Any,
    ):
        """Wrap an already loaded ``model`` and ``tokenizer``.

        Args:
            model: a Hugging Face causal LM of a supported family (see ``runner.support``).
            tokenizer: its tokenizer (with a chat template for chat use).
            config: engine configuration; ``overrides`` are applied on top and validated.
            parallel: the tensor-parallel group ``model`` is sharded over (set by :meth:`from_pretrained`
                under ``torchrun``). Every rank then runs the same requests in lockstep; rank 0 samples and
                runs tools, and only its events and results are meant to be consumed.
            **overrides: :class:`HogwildConfig` fields applied on top of ``config``.

        Raises:
            UnsupportedModelError: the model's attention cannot be served exactly (the message says why).
            pydantic.ValidationError: a configuration value is invalid.
        """
        self.config = (config or HogwildConfig()).with_overrides(**overrides)
        self.model = model
        self.tokenizer = tokenizer
        self.parallel = parallel
        self.runner = ModelRunner(
            model,
            page_size=self.config.page_size,
            max_cache_tokens=self.config.max_cache_tokens,
            attention_backend=self.config.attention_backend,
            cuda_graphs=self.config.cuda_graphs,
            tensor_parallel_graphs=self.config.tensor_parallel_graphs,
            trust_model_support=self.config.trust_model_support,
            parallel=parallel,
            fused_ops=self.config.fused_ops,
        )
        self.resources = RunResources(
            tokenizer=tokenizer,
            store=self.runner.store,
            eos_ids=_eos_ids(model, tokenizer),
            vocab_size=self.runner.vocab_size,
            context_window=self.runner.geometry.context_window,
            parallel=parallel,
            executor_factory=functools.partial(ToolExecutor, max_workers=self.config.max_parallel_tools),
        )
        self._lock = threading.RLock()
        self._kept = KeptRuns(self.config.keep_runs)  # runs suspended in tool_mode="return"
        self.scheduler = Scheduler(self.runner, overlap=self.config.overlap_host_work)
        self._closed = False

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Token ids that end a turn."""
        return self.resources.eos_ids

    @property
    def tool_format(self) -> ToolFormat:
        """How this model writes tool calls and reads results, derived from its chat template."""
        return self.resources.tool_format

    @property
    def grammar_factory(self) -> GrammarFactory:
        """Compiles constrained-decoding grammars for this tokenizer and logits width."""
        return self.resources.grammar_factory

    @classmethod
    def shared(
        cls,
        model_id_or_path: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        **engine_options: Any,
    ) -> HogwildEngine:
        """The process-wide engine for these settings, loaded on first use (see :mod:`.registry`).

        Front ends that name the same model and engine-level options share one engine, whose scheduler
        batches their runs; per-run options never split it.
        """
        return shared_engine(cls.from_pretrained, model_id_or_path, device, dtype, **engine_options)

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | None = None,
        *,
        workers: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        **config: Any,
    ) -> HogwildEngine:
        """Load a model by Hugging Face id, local path, or packaged name (default: the packaged Qwen 0.5B).

        Args:
            model_id_or_path: model id, directory, or a packaged model name; ``None`` uses ``$HOGWILD_MODEL``
                or the default packaged model.
            workers: number of workers (overrides ``config``).
            device: ``"cuda"``, ``"cpu"``...; defaults to CUDA when available.
            dtype: weights dtype; defaults to bfloat16.
            **config: any :class:`HogwildConfig` field.

        Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is loaded with its tensor-parallel plan, one GPU
        per rank (``device`` is ignored), and every rank must then make the same calls on the engine::

            torchrun --nproc-per-node 2 -m hogwild_agents.ui.cli run "..." --workers 4
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.store import resolve_model_path

        path = resolve_model_path(model_id_or_path)  # a packaged model's files are verified here
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        parallel = ParallelContext.from_environment()
        kwargs = _tp_plan_kwargs() if parallel.enabled else {}  # TP: heads and MLP columns split over ranks
        model = _load_weights(AutoModelForCausalLM, path, dtype=dtype or torch.bfloat16, **kwargs)
        if not parallel.enabled:
            model = model.to(device)
        if workers is not None:
            config["workers"] = workers
        return cls(model, tokenizer, HogwildConfig(**config), parallel=parallel)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Cancel running requests, drop kept runs, stop the scheduler and tool threads, free the KV store.

        The engine cannot run requests afterwards. Called by ``with HogwildEngine(...) as engine:``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.scheduler.close()
        self.drop_kept_runs()
        if self.resources.executor_started():
            self.resources.executor.shutdown()
        store = self.runner.store
        store.key_pages = store.value_pages = torch.empty(0)  # free the pages (GPU memory) now
        self.runner.graphs = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> HogwildEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def _prepare(
        self, messages: Messages, tools: Sequence[Any] | None, overrides: dict[str, Any]
    ) -> RunState:
        """Validate a request; return its run (a kept one when this continues a returned tool call)."""
        if self._closed:
            raise RuntimeError("the engine is closed; create a new HogwildEngine")
        try:
            cfg = self.config.for_run(**overrides)
        except ValueError as e:
            raise InvalidRequestError(str(e)) from e
        msgs = normalize_messages(messages)
        tool_list = tools_from_specs(list(tools or []), cfg.tool_mode)
        cfg = cfg.resolved(bool(cfg.roles) or needs_team(msgs, bool(tool_list)))
        kept = self._kept.take(msgs, tool_list, cfg)
        if kept is not None:
            kept.messages = msgs
            return kept
        store = self.runner.store
        while len(self._kept) and store.free_pages < store.num_pages // 2:  # make room: evict the oldest
            old = self._kept.pop_oldest()
            if old is not None:
                close(old)
        texts = render_prompt(
            self.tokenizer,
            msgs,
            names=cfg.names,
            collaboration=cfg.collaboration,
            tools=[t.to_openai_schema() for t in tool_list] or None,
            rules_template=cfg.system_prompt,
            finisher_may_call=finisher_may_call(tool_list, cfg.tool_mode, cfg.tool_choice),
            roles=cfg.roles,
        )
        run = new_run(self.resources, texts, cfg, tool_list)
        run.messages = msgs
        return run

    def drop_kept_runs(self) -> None:
        """Release the pages of every suspended run."""
        with self._lock:
            for run in self._kept.drain():
                close(run)

    def stream(
        self, messages: Messages, *, tools: Sequence[Any] | None = None, **overrides: Any
    ) -> RunStream:
        """Run a request and yield typed events as they happen; the last event is :class:`FinishedEvent`.

        Args:
            messages: a user message string, or chat messages (``role`` in system/user/assistant/tool).
            tools: tools the workers may call (:class:`~hogwild_agents.Tool` or OpenAI function schemas).
            **overrides: per-run :class:`HogwildConfig` fields (``workers``, ``temperature``, ...).

        Returns:
            A :class:`RunStream`. Closing it early cancels the run cleanly. In ``tool_mode="return"`` a run
            that hands tool calls to the caller is kept (pages and all); a follow-up request carrying the
            tool results continues it without re-encoding the conversation.

        Raises:
            InvalidRequestError: the request is malformed (nothing ran).
            ContextOverflowError: the prompt does not fit.
        """
        with self._lock:
            run = self._prepare(messages, tools, overrides)
        if self.parallel.enabled:  # every rank must issue the same forwards in the same order
            return RunStream(self._relay_serial(run), lambda wait: None)
        handle = self.scheduler.submit(run)
        events = self._relay(run, handle)
        return RunStream(
            events,
            lambda wait: self.scheduler.cancel(handle, wait_freed=wait),
            lambda role, text: self.scheduler.inject(handle, role, text),
        )

    def _relay(self, run: RunState, handle: RunHandle) -> Iterator[Event]:
        yield _started(run)
        events = self.scheduler.events(handle)
        try:
            for event in events:
                if isinstance(event, FinishedEvent) and run.phase is Phase.SUSPENDED:
                    self._keep(run)
                yield event
        finally:
            # Close the scheduler's stream now (it cancels the run and waits until its pages are free),
            # not whenever the garbage collector reaches it: a closed RunStream has freed its pages.
            events.close()

    def _relay_serial(self, run: RunState) -> Iterator[Event]:
        yield _started(run)
        with self._lock:
            for event in drive(run, self.runner):
                if isinstance(event, FinishedEvent) and run.phase is Phase.SUSPENDED:
                    self._keep(run)
                yield event

    def _keep(self, run: RunState) -> None:
        with self._lock:
            for old in self._kept.keep(run.messages, run):
                close(old)

    def run(self, messages: Messages, *, tools: Sequence[Any] | None = None, **overrides: Any) -> RunResult:
        """Run a request to completion and return its :class:`RunResult` (see :meth:`stream`)."""
        for event in self.stream(messages, tools=tools, **overrides):
            if isinstance(event, FinishedEvent):
                return event.result
        raise RuntimeError("the run ended without a result")  # pragma: no cover - stream always finishes

    async def astream(
        self, messages: Messages, *, tools: Sequence[Any] | None = None, **overrides: Any
    ) -> AsyncIterator[Event]:
        """Async twin of :meth:`stream`: the run happens on the scheduler thread, never blocking the loop.

        Leaving the ``async for`` early (or cancelling the task) cancels the run at the next engine step,
        even while one of its tools is running: its pages are freed at once, not when the tool returns.
        """
        async for event in self.stream(messages, tools=tools, **overrides).aiter():
            yield event

    async def arun(
        self, messages: Messages, *, tools: Sequence[Any] | None = None, **overrides: Any
    ) -> RunResult:
        """Async twin of :meth:`run`."""
        async for event in self.astream(messages, tools=tools, **overrides):
            if isinstance(event, FinishedEvent):
                return event.result
        raise RuntimeError("the run ended without a result")  # pragma: no cover


def _started(run: RunState) -> RunStartedEvent:
    """The first event of a run's stream: its workers, and where its answer comes from."""
    cfg = run.cfg
    return RunStartedEvent(
        workers=tuple(cfg.names),
        collaboration=bool(cfg.collaboration),
        answer_worker=None if cfg.use_finisher else cfg.names[0],
        call_openers=run.tools.plain_call_openers(),
    )


def _load_weights(auto: Any, path: str, **kwargs: Any) -> torch.nn.Module:
    """``auto.from_pretrained(path)``; an unreadable weights file is :class:`ModelNotAvailableError`."""
    from safetensors import SafetensorError

    from ..models.store import ModelNotAvailableError

    try:
        return auto.from_pretrained(path, **kwargs)
    except SafetensorError as e:  # truncated or corrupted safetensors: a raw header error otherwise
        raise ModelNotAvailableError(
            f"the weights in {path} cannot be read ({e}); the files are truncated or corrupted: convert or "
            "download the model again (a packaged model: delete its cache folder and run again)"
        ) from e


def _eos_ids(model: torch.nn.Module, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for source in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return frozenset(ids)
