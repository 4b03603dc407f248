"""``Hogwild``: a LlamaIndex function-calling LLM served by the hogwild-agents engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.types import BaseOutputParser, PydanticProgramMode

from hogwild_agents import HogwildConfig, HogwildEngine, WorkerRole

from ._convert import (
    ChatStream,
    convert_messages,
    convert_result,
    convert_tool_choice,
    convert_tools,
    tool_calls_from_message,
)

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["Hogwild"]

# HogwildConfig fields the engine uses when it is built (its KV store and attention path); they cannot vary
# per run, so they are part of the key under which engines are shared.
_ENGINE_OPTIONS = frozenset({"page_size", "max_cache_tokens", "attention_backend", "trust_model_support"})
# HogwildConfig fields this class exposes as its own fields (passed per run when not None).
_RUN_FIELDS = (
    "workers",
    "roles",
    "collaboration",
    "early_exit",
    "probe_every",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "max_forwards",
    "max_new_tokens",
    "max_answer_tokens",
    "stop",
    "context_window",
    "tool_timeout_s",
    "max_tool_calls",
)
# Keys this class sets itself; callers choose them through ``execute_tools`` / ``tool_choice``.
_RESERVED = frozenset({"tool_mode", "tool_choice"})


@dataclass(slots=True)
class _Request:
    """One call, converted: what to hand to the engine and who writes the answer."""

    messages: list[dict[str, Any]]
    tools: list[Any]
    overrides: dict[str, Any]
    answer_worker: str | None

    def stream(self) -> ChatStream:
        """Make a fresh converter of this request's engine events into streamed responses."""
        return ChatStream(self.answer_worker)


class Hogwild(FunctionCallingLLM):
    """Several workers of one local model reasoning in parallel over a shared KV cache, as a LlamaIndex LLM.

    The workers' texts are surfaced as one ``ThinkingBlock`` per worker (``thinking_delta`` while
    streaming); the finisher's answer is the message content. Tool calls come back as ``ToolCallBlock``s
    with unique ids, and ``tool_required`` / ``tool_choice`` are enforced by the engine's constrained
    decoding, so even a small model returns a parseable call. With ``execute_tools=True`` the engine runs
    the tools itself, inside the shared cache, and returns only the answer.

    Setup:
        .. code-block:: bash

            pip install -e integrations/llama-index   # with hogwild-agents[model] for the default model

    Instantiate:
        .. code-block:: python

            from llama_index.llms.hogwild import Hogwild

            llm = Hogwild(workers=2, max_answer_tokens=128)   # default packaged Qwen2.5-Coder-0.5B-Instruct
            llm = Hogwild(engine=my_engine)                  # or a prebuilt HogwildEngine

    Invoke:
        .. code-block:: python

            from llama_index.core.llms import ChatMessage

            response = llm.chat([ChatMessage(role="user", content="What is 17 + 25?")])
            response.message.content          # '42'
            response.raw["usage"]             # {'prompt_tokens': ..., 'completion_tokens': ..., ...}
            llm.complete("Say hi").text

    Stream:
        .. code-block:: python

            for chunk in llm.stream_chat(messages):
                print(chunk.additional_kwargs.get("thinking_delta", ""), chunk.delta, end="")

    Async:
        .. code-block:: python

            response = await llm.achat(messages)
            async for chunk in await llm.astream_chat(messages): ...

    Tool calling:
        .. code-block:: python

            from llama_index.core.tools import FunctionTool

            def add(a: int, b: int) -> int:
                '''Add two integers.'''
                return a + b

            tool = FunctionTool.from_defaults(add)
            response = llm.chat_with_tools([tool], user_msg="What is 2 + 3?", tool_required=True)
            llm.get_tool_calls_from_response(response)   # [ToolSelection(tool_name='add', tool_kwargs={...})]

    Agents and query engines:
        .. code-block:: python

            from llama_index.core.agent.workflow import FunctionAgent

            agent = FunctionAgent(tools=[tool], llm=llm)
            index.as_query_engine(llm=llm).query("...")
    """

    model: str | None = Field(
        default=None,
        description="Hugging Face id, local directory or packaged model name; None uses $HOGWILD_MODEL or "
        "the packaged Qwen2.5-Coder-0.5B-Instruct. Ignored when an engine is passed.",
    )
    device: str | None = Field(default=None, description="Device to load the model on; None prefers CUDA.")
    dtype: str | None = Field(
        default=None, description="Weights dtype, e.g. 'bfloat16' (the default) or 'float32'."
    )
    workers: int | None = Field(
        default=None, ge=1, le=64, description="Workers writing in parallel (engine: 2)."
    )
    roles: list[WorkerRole] | None = Field(
        default=None,
        description="Per-worker roles (name, instructions, own tools, own tool_choice); they set the "
        "workers' names and number.",
    )
    collaboration: bool | Literal["auto"] | None = Field(
        default=None,
        description="Collaboration prompt, step headers, self-checks and finisher. None: 'auto' (requests "
        "with numbers, code, several lines, 12+ words or tools get the team; a greeting or short question "
        "gets one plain worker).",
    )
    early_exit: bool | None = Field(
        default=None,
        description="Probe whether the work already answers the request and stop then (None: on).",
    )
    probe_every: int | None = Field(
        default=None, ge=1, description="Worker forwards between early-exit probes (None: 16)."
    )
    temperature: float | None = Field(
        default=None, ge=0.0, le=5.0, description="Sampling temperature; 0 is greedy."
    )
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int | None = Field(default=None, ge=0, description="Keep the k most likely tokens (0 keeps all).")
    seed: int | None = Field(default=None, description="Seed of the samplers (engine: 0).")
    max_forwards: int | None = Field(default=None, ge=1, description="Forward passes the workers may take.")
    max_new_tokens: int | None = Field(
        default=None, ge=1, description="Tokens all workers may sample together."
    )
    max_answer_tokens: int | None = Field(
        default=None, ge=1, description="Tokens the finisher's answer may have."
    )
    stop: list[str] | None = Field(default=None, description="Strings that end the answer.")
    context_window: int | None = Field(
        default=None, ge=16, description="Cap on a worker's view; None uses the model's full context window."
    )
    execute_tools: bool = Field(
        default=False,
        description="Let the engine run the tools itself (tool_mode='execute'), writing results into the "
        "shared cache where every worker sees them; the response then holds the answer and no tool calls. "
        "Off: tool calls are returned for the caller (an agent) to run.",
    )
    tool_timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds an executed tool call may take."
    )
    max_tool_calls: int | None = Field(default=None, ge=0, description="Tool calls allowed per run.")
    additional_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other HogwildConfig field (e.g. layout, self_check_every, page_size, "
        "max_cache_tokens).",
    )

    _engine: HogwildEngine | None = PrivateAttr(default=None)

    def __init__(
        self,
        *,
        model: str | None = None,
        engine: HogwildEngine | None = None,
        device: str | None = None,
        dtype: str | None = None,
        workers: int | None = None,
        roles: list[WorkerRole] | None = None,
        collaboration: bool | Literal["auto"] | None = None,
        early_exit: bool | None = None,
        probe_every: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
        max_forwards: int | None = None,
        max_new_tokens: int | None = None,
        max_answer_tokens: int | None = None,
        stop: list[str] | None = None,
        context_window: int | None = None,
        execute_tools: bool = False,
        tool_timeout_s: float | None = None,
        max_tool_calls: int | None = None,
        additional_kwargs: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        system_prompt: str | None = None,
        messages_to_prompt: Callable[[Sequence[ChatMessage]], str] | None = None,
        completion_to_prompt: Callable[[str], str] | None = None,
        pydantic_program_mode: PydanticProgramMode = PydanticProgramMode.DEFAULT,
        output_parser: BaseOutputParser | None = None,
    ) -> None:
        """Configure the LLM; the engine is loaded on first use unless ``engine`` is given.

        Args:
            model: See the field of the same name.
            engine: A prebuilt :class:`~hogwild_agents.HogwildEngine` to use instead of loading ``model``.
            device: See the field.
            dtype: See the field.
            workers: See the field.
            roles: See the field.
            collaboration: See the field.
            early_exit: See the field.
            probe_every: See the field.
            temperature: See the field.
            top_p: See the field.
            top_k: See the field.
            seed: See the field.
            max_forwards: See the field.
            max_new_tokens: See the field.
            max_answer_tokens: See the field.
            stop: See the field.
            context_window: See the field.
            execute_tools: See the field.
            tool_timeout_s: See the field.
            max_tool_calls: See the field.
            additional_kwargs: See the field.
            callback_manager: LlamaIndex callback manager.
            system_prompt: System prompt LlamaIndex adds in ``predict``-style calls.
            messages_to_prompt: LlamaIndex hook (unused by chat, which sends messages as they are).
            completion_to_prompt: LlamaIndex hook applied to completion prompts by ``predict``.
            pydantic_program_mode: LlamaIndex structured-output mode.
            output_parser: LlamaIndex output parser.

        Raises:
            ValueError: An option is out of bounds, unknown to the engine, or reserved (``tool_mode``,
                ``tool_choice``: use ``execute_tools`` and the call's ``tool_choice``).

        """
        super().__init__(
            model=model,
            device=device,
            dtype=dtype,
            workers=workers,
            roles=roles,
            collaboration=collaboration,
            early_exit=early_exit,
            probe_every=probe_every,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            max_forwards=max_forwards,
            max_new_tokens=max_new_tokens,
            max_answer_tokens=max_answer_tokens,
            stop=stop,
            context_window=context_window,
            execute_tools=execute_tools,
            tool_timeout_s=tool_timeout_s,
            max_tool_calls=max_tool_calls,
            additional_kwargs=dict(additional_kwargs or {}),
            callback_manager=callback_manager,
            system_prompt=system_prompt,
            messages_to_prompt=messages_to_prompt,
            completion_to_prompt=completion_to_prompt,
            pydantic_program_mode=pydantic_program_mode,
            output_parser=output_parser,
        )
        reserved = _RESERVED & set(self.additional_kwargs)
        if reserved:
            raise ValueError(
                f"additional_kwargs may not set {sorted(reserved)}: use execute_tools=... and pass "
                "tool_choice per call (chat_with_tools(..., tool_choice=...))"
            )
        try:  # fail at construction, not at the first call, on unknown or invalid options
            HogwildConfig().with_overrides(**self._run_options({}), **self._engine_options())
        except ValueError as e:
            raise ValueError(f"invalid Hogwild option: {e}") from e
        if engine is not None and not isinstance(engine, HogwildEngine):
            raise TypeError(f"engine must be a hogwild_agents.HogwildEngine, got {type(engine).__name__}")
        self._engine = engine

    @classmethod
    def class_name(cls) -> str:
        """Return the serialisation name of this LLM class."""
        return "Hogwild_llm"

    # -------------------------------------------------------------------------------------------- engine
    def _engine_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.additional_kwargs.items() if k in _ENGINE_OPTIONS}

    def _run_options(self, call_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Per-run engine overrides: this object's settings, then ``additional_kwargs``, then the call's."""
        options = dict(HogwildConfig.CHAT_DEFAULTS)
        options.update({name: value for name in _RUN_FIELDS if (value := getattr(self, name)) is not None})
        options.update({k: v for k, v in self.additional_kwargs.items() if k not in _ENGINE_OPTIONS})
        fixed = (_ENGINE_OPTIONS | _RESERVED) & set(call_kwargs)
        if fixed:
            raise ValueError(
                f"{sorted(fixed)} cannot be set per call: engine options go in additional_kwargs at "
                "construction, and tools are chosen with tools=/tool_choice=/execute_tools="
            )
        options.update(call_kwargs)
        if options.get("roles") and "workers" not in call_kwargs and self.workers is None:
            options.pop("workers", None)  # the roles decide how many workers there are
        return options

    @property
    def engine(self) -> HogwildEngine:
        """The engine serving this LLM, loaded on first use and shared by LLMs with equal engine settings."""
        if self._engine is None:
            self._engine = HogwildEngine.shared(
                self.model, device=self.device, dtype=self.dtype, **self._engine_options()
            )
        return self._engine

    async def _aengine(self) -> HogwildEngine:
        """Return the engine, loading it on a worker thread so a first async call never blocks the loop."""
        if self._engine is not None:
            return self._engine
        return await asyncio.to_thread(lambda: self.engine)

    @property
    def metadata(self) -> LLMMetadata:
        """What agents and query engines read: the real context window, chat and function calling support.

        ``num_output`` is the longest answer a run can write (``max_answer_tokens``: the finisher's
        budget, or the single worker's without a finisher). Reading it loads the engine, because the
        context window is the model's.
        """
        engine = self.engine
        config = engine.config.with_overrides(**self._run_options({}))
        window = engine.runner.geometry.context_window
        if config.context_window is not None:
            window = min(window, config.context_window)
        num_output = config.max_answer_tokens
        if not config.use_finisher:  # plain generation: the first worker's own budgets bound it too
            num_output = min(num_output, config.max_forwards, config.max_new_tokens or num_output)
        name = self.model or str(getattr(engine.model.config, "name_or_path", "") or "hogwild")
        return LLMMetadata(
            context_window=window,
            num_output=num_output,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=Path(name).name if Path(name).is_dir() else name,
            system_role=MessageRole.SYSTEM,
        )

    # ------------------------------------------------------------------------------------------- requests
    def _request(
        self, engine: HogwildEngine, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> _Request:
        """Convert one call's messages, tools and options; raises ``ValueError`` before anything runs."""
        kwargs = dict(kwargs)
        kwargs.pop("formatted", None)  # from the completion decorators
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        tool_required = bool(kwargs.pop("tool_required", False))
        execute = bool(kwargs.pop("execute_tools", self.execute_tools))
        converted = convert_tools(tools, execute=execute)
        names = [t.name if hasattr(t, "name") else t["function"]["name"] for t in converted]
        overrides = self._run_options(kwargs)
        if converted:
            overrides["tool_mode"] = "execute" if execute else "return"
            overrides["tool_choice"] = convert_tool_choice(tool_choice, tool_required, names)
        elif tool_required or tool_choice not in (None, "auto", "none"):
            raise ValueError(
                f"tool_choice={tool_choice!r} / tool_required={tool_required} need tools; pass tools=[...]"
            )
        try:
            config = engine.config.with_overrides(**overrides)
        except ValueError as e:
            raise ValueError(f"invalid option for this call: {e}") from e
        answer_worker = None if config.use_finisher else config.names[0]  # "auto": the run's first event says
        return _Request(convert_messages(messages), converted, overrides, answer_worker)

    # ----------------------------------------------------------------------------------------------- chat
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Run the workers on ``messages`` and return the answer, their thinking, tool calls and usage.

        Args:
            messages: The conversation.
            **kwargs: ``tools``, ``tool_choice``, ``tool_required``, ``execute_tools``, or any per-run
                :class:`~hogwild_agents.HogwildConfig` field (``temperature``, ``workers``, ...).

        """
        engine = self.engine
        request = self._request(engine, messages, kwargs)
        result = engine.run(request.messages, tools=request.tools, **request.overrides)
        return convert_result(result, result.answer_worker)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream cumulative responses: ``thinking_delta`` per worker token, ``delta`` per answer token.

        The last response carries complete ``ToolCallBlock``s and ``raw["usage"]``. Closing the generator
        early cancels the run.
        """
        engine = self.engine
        request = self._request(engine, messages, kwargs)

        def gen() -> ChatResponseGen:
            stream = request.stream()
            for event in engine.stream(request.messages, tools=request.tools, **request.overrides):
                response = stream.feed(event)
                if response is not None:
                    yield response

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`: the engine runs on a worker thread, never blocking the event loop."""
        engine = await self._aengine()
        request = self._request(engine, messages, kwargs)
        result = await engine.arun(request.messages, tools=request.tools, **request.overrides)
        return convert_result(result, result.answer_worker)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat` (await it, then iterate)."""
        engine = await self._aengine()
        request = self._request(engine, messages, kwargs)

        async def gen() -> ChatResponseAsyncGen:
            stream = request.stream()
            async for event in engine.astream(request.messages, tools=request.tools, **request.overrides):
                response = stream.feed(event)
                if response is not None:
                    yield response

        return gen()

    # ----------------------------------------------------------------------------------------- completion
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete ``prompt`` (sent as one user message through :meth:`chat`)."""
        return chat_to_completion_decorator(self.chat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream the completion of ``prompt`` through :meth:`stream_chat`."""
        return stream_chat_to_completion_decorator(self.stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async :meth:`complete`."""
        return await achat_to_completion_decorator(self.achat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        return await astream_chat_to_completion_decorator(self.astream_chat)(prompt, **kwargs)

    # ---------------------------------------------------------------------------------------------- tools
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Build the :meth:`chat` arguments for a call with tools.

        Args:
            tools: LlamaIndex tools (their OpenAI schemas reach the model's chat template).
            user_msg: A new user message appended to the history.
            chat_history: Earlier messages.
            verbose: Unused (kept for the LlamaIndex signature).
            allow_parallel_tool_calls: Applied to the response (see ``_validate_chat_with_tools_response``).
            tool_required: The model must call a tool (enforced by constrained decoding).
            tool_choice: ``"auto"``, ``"none"``, ``"required"``/``"any"``, a tool name or an OpenAI dict.
            **kwargs: Passed on to :meth:`chat` (e.g. ``temperature``).

        Returns:
            Keyword arguments for :meth:`chat`.

        Raises:
            ValueError: ``tool_choice`` is not understood or names an unknown tool.

        """
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(
                ChatMessage(role=MessageRole.USER, content=user_msg)
                if isinstance(user_msg, str)
                else user_msg
            )
        names = [str(getattr(t.metadata, "name", "")) for t in tools]
        choice = convert_tool_choice(tool_choice, tool_required, names) if tools else tool_choice
        return {"messages": messages, "tools": list(tools), "tool_choice": choice, **kwargs}

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel calls are allowed."""
        if not allow_parallel_tool_calls:
            calls = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
            for extra in calls[1:]:
                response.message.blocks.remove(extra)
        return response

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """Read the tool calls of a response (``ToolCallBlock``s) as ``ToolSelection``s.

        Args:
            response: A response of :meth:`chat` or the last one of a stream.
            error_on_no_tool_call: Raise when the response holds no tool call.
            **kwargs: Unused.

        Raises:
            ValueError: No tool call while ``error_on_no_tool_call`` is set.

        """
        selections = tool_calls_from_message(response.message)
        if not selections and error_on_no_tool_call:
            raise ValueError(
                "expected at least one tool call, got none; pass tool_required=True (or a tool_choice) to "
                f"make the engine constrain the model to a call. Answer: {response.message.content!r:.200}"
            )
        return selections
