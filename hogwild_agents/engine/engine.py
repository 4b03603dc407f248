"""The public engine: several workers of one model over one shared KV cache."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import torch

from ..api.config import HogwildConfig
from ..api.errors import InvalidRequestError
from ..api.events import Event, FinishedEvent
from ..api.results import RunResult
from ..runner.distributed import SINGLE_PROCESS, ParallelContext
from ..runner.runner import ModelRunner
from ..text.prompts import render_prompt
from ..tools import GrammarFactory, Tool, ToolExecutor, ToolFormat
from .run import Run
from .scheduler import BatchScheduler, drive
from .tools import finisher_may_call, normalize_tools

__all__ = ["HogwildEngine", "Messages"]

Messages = str | Sequence[dict[str, Any]]
_ROLES = frozenset({"system", "user", "assistant", "tool"})


def _normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """Accept a string (one user message) or a list of ``{"role", "content"}`` dicts; reject anything else."""
    if isinstance(messages, str):
        if not messages.strip():
            raise InvalidRequestError("the request is empty: pass a non-empty string or list of messages")
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or not messages:
        raise InvalidRequestError(
            "messages must be a non-empty string or a non-empty list of {'role': ..., 'content': ...} dicts"
        )
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise InvalidRequestError(f"message {i} must be a dict with a 'role' key, got {message!r:.80}")
        if message["role"] not in _ROLES:
            raise InvalidRequestError(
                f"message {i} has role {message['role']!r}; allowed roles are {sorted(_ROLES)}"
            )
        out.append(dict(message))
    return out


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
    concurrent runs are stepped together by a scheduler thread and their tokens go through the model in
    the same forward passes (see :mod:`hogwild_agents.engine.scheduler`).

    Example:
        >>> engine = HogwildEngine.from_pretrained(workers=2)  # doctest: +SKIP
        >>> engine.run("What is 12 + 7? Then add 5.").answer  # doctest: +SKIP
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
            model: a Hugging Face causal LM of a supported family (see ``support.SUPPORTED_FAMILIES``).
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
        )
        self.eos_token_ids = self._eos_ids()
        self._lock = threading.RLock()
        # Runs suspended in tool_mode="return", waiting for the caller's tool results (LRU, bounded).
        self._kept: OrderedDict[str, tuple[list[dict[str, Any]], Run]] = OrderedDict()
        self.scheduler = BatchScheduler(self.runner)

    @functools.cached_property
    def tool_format(self) -> ToolFormat:
        """How this model writes tool calls and reads results, derived from its chat template."""
        return ToolFormat.from_tokenizer(self.tokenizer)

    @functools.cached_property
    def grammar_factory(self) -> GrammarFactory:
        """Compiles constrained-decoding grammars for this tokenizer and logits width."""
        vocab = self.model.get_output_embeddings().weight.shape[0]
        # Short whitespace runs keep weak models from looping on spaces inside forced JSON.
        return GrammarFactory(self.tokenizer, vocab, max_whitespace=4)

    @functools.cached_property
    def hash_token_ids(self) -> list[int]:
        """Ids of the tokens whose text contains ``#`` (banned for workers, see ``ban_header_tokens``)."""
        vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        special = set(self.tokenizer.all_special_ids)
        return [i for i, t in enumerate(vocab) if t and "#" in t and i not in special]

    @functools.cached_property
    def tool_executor(self) -> ToolExecutor:
        """Runs tools concurrently with generation."""
        return ToolExecutor()

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

        path = resolve_model_path(model_id_or_path)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        parallel = ParallelContext.from_environment()
        if parallel.enabled:  # heads and MLP columns split over the ranks, full logits on each
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype or torch.bfloat16, **_tp_plan_kwargs()
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.bfloat16).to(device)
        if workers is not None:
            config["workers"] = workers
        return cls(model, tokenizer, HogwildConfig(**config), parallel=parallel)

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        gen = getattr(self.model, "generation_config", None)
        for source in (getattr(gen, "eos_token_id", None), getattr(self.tokenizer, "eos_token_id", None)):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return frozenset(ids)

    # ------------------------------------------------------------------ running
    def _prepare(
        self, messages: Messages, tools: Sequence[Any] | None, overrides: dict[str, Any]
    ) -> tuple[Run, list[dict[str, Any]], bool]:
        """Validate a request; return its run (a kept one when this continues a returned tool call)."""
        try:
            cfg = self.config.with_overrides(**overrides)
        except ValueError as e:
            raise InvalidRequestError(str(e)) from e
        msgs = _normalize_messages(messages)
        tool_list = normalize_tools(list(tools or []), cfg.tool_mode)
        kept = self._take_kept(msgs, tool_list, cfg)
        if kept is not None:
            return kept, msgs, True
        store = self.runner.store
        while self._kept and store.free_pages < store.num_pages // 2:  # make room: evict the oldest kept run
            _, (_, old) = self._kept.popitem(last=False)
            old.close()
        texts = render_prompt(
            self.tokenizer,
            msgs,
            names=cfg.names,
            collaboration=cfg.collaboration,
            tools=[t.to_openai_schema() for t in tool_list] or None,
            rules_template=cfg.system_prompt,
            finisher_may_call=finisher_may_call(tool_list, cfg),
        )
        return Run(self, texts, cfg, tool_list), msgs, False

    # ------------------------------------------------------------------ kept runs (tool_mode="return")
    @staticmethod
    def _key(messages: list[dict[str, Any]], tools: list[Tool], cfg: HogwildConfig) -> str:
        """Identity of a conversation prefix: roles, contents, call ids, tool schemas and configuration."""

        def canon(m: dict[str, Any]) -> tuple[Any, ...]:
            ids = tuple(c.get("id", "") for c in m.get("tool_calls") or [])
            return (m["role"], m.get("content") or "", ids, m.get("tool_call_id", ""))

        return json.dumps(
            [
                [canon(m) for m in messages],
                [t.to_openai_schema() for t in tools],
                cfg.model_dump(mode="json"),
            ],
            sort_keys=True,
            default=str,
        )

    def _keep(self, messages: list[dict[str, Any]], tools: list[Tool], run: Run) -> None:
        calls = [{"id": i} for i in run.returned_call_ids]
        convo = [*messages, {"role": "assistant", "content": "", "tool_calls": calls}]
        self._kept[self._key(convo, tools, run.cfg)] = (convo, run)
        while len(self._kept) > self.config.keep_runs:
            _, (_, old) = self._kept.popitem(last=False)
            old.close()

    def _take_kept(self, msgs: list[dict[str, Any]], tools: list[Tool], cfg: HogwildConfig) -> Run | None:
        """Find a suspended run whose conversation is a prefix of ``msgs`` followed only by tool results."""
        n_tools = 0
        while n_tools < len(msgs) and msgs[len(msgs) - 1 - n_tools]["role"] == "tool":
            n_tools += 1
        if not n_tools:
            return None
        prefix, results = msgs[: len(msgs) - n_tools], msgs[len(msgs) - n_tools :]
        key = self._key(prefix, tools, cfg)
        if key not in self._kept:
            return None
        _, run = self._kept.pop(key)
        run.resume({str(m.get("tool_call_id", "")): str(m.get("content", "")) for m in results})
        return run

    def drop_kept_runs(self) -> None:
        """Release the pages of every suspended run."""
        while self._kept:
            _, (_, run) = self._kept.popitem()
            run.close()

    # ------------------------------------------------------------------ running
    def stream(
        self, messages: Messages, *, tools: Sequence[Any] | None = None, **overrides: Any
    ) -> Iterator[Event]:
        """Run a request and yield typed events as they happen; the last event is :class:`FinishedEvent`.

        Closing the iterator early (``break``) cancels the run cleanly: the pages it used are released and
        the engine is ready for the next request. In ``tool_mode="return"`` a run that hands tool calls to
        the caller is kept (pages and all); a follow-up request carrying the tool results continues it
        without re-encoding the conversation.
        """
        with self._lock:
            run, msgs, _resumed = self._prepare(messages, tools, overrides)
        if self.parallel.enabled:  # every rank must issue the same forwards in the same order
            with self._lock:
                yield from self._relay(run, msgs, drive(run.iterate(), self.runner), run.close)
            return
        handle = self.scheduler.submit(run)
        events = self.scheduler.events(handle)
        yield from self._relay(run, msgs, events, lambda: self.scheduler.cancel(handle))

    def _relay(
        self, run: Run, msgs: list[dict[str, Any]], events: Iterator[Event], cancel: Callable[[], None]
    ) -> Iterator[Event]:
        """Pass a run's events on; keep a suspended run for its follow-up; cancel when the caller leaves."""
        for event in events:
            if isinstance(event, FinishedEvent) and run.suspended:
                with self._lock:
                    self._keep(msgs, run.tools.tools, run)
                yield event
                return
            try:
                yield event
            except GeneratorExit:  # the caller stopped listening: cancel the run, free its pages
                cancel()
                raise

    def run(self, messages: Messages, *, tools: Sequence[Any] | None = None, **overrides: Any) -> RunResult:
        """Run a request to completion and return its :class:`RunResult`.

        Args:
            messages: a user message string, or chat messages (``role`` in system/user/assistant/tool).
            tools: tools the workers may call.
            **overrides: per-run :class:`HogwildConfig` fields (``workers``, ``temperature``, ...).
        """
        for event in self.stream(messages, tools=tools, **overrides):
            if isinstance(event, FinishedEvent):
                return event.result
        raise RuntimeError("the run ended without a result")  # pragma: no cover - stream always finishes

    async def astream(
        self, messages: Messages, *, tools: Sequence[Any] | None = None, **overrides: Any
    ) -> AsyncIterator[Event]:
        """Async twin of :meth:`stream`: the run happens on a worker thread, never blocking the event loop."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def send(item: Event | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, item)
            except RuntimeError:  # the consumer's event loop is closed: nobody listens any more
                cancelled.set()

        def produce() -> None:
            try:
                for event in self.stream(messages, tools=tools, **overrides):
                    send(event)
                    if cancelled.is_set():
                        break  # closing the stream cancels the run and frees its pages
            except BaseException as e:  # forwarded to the consumer, re-raised there
                send(e)
            finally:
                send(None)

        thread = threading.Thread(target=produce, name="hogwild-run", daemon=True)
        thread.start()
        try:
            while (item := await events.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()

    async def arun(
        self, messages: Messages, *, tools: Sequence[Any] | None = None, **overrides: Any
    ) -> RunResult:
        """Async twin of :meth:`run`."""
        async for event in self.astream(messages, tools=tools, **overrides):
            if isinstance(event, FinishedEvent):
                return event.result
        raise RuntimeError("the run ended without a result")  # pragma: no cover
