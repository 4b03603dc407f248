"""Running tool calls concurrently, turning every failure into error text instead of an exception.

Sync tools run on a pool of daemon threads; async tools on one private event-loop thread. A call that
times out is answered at once with an error outcome and its thread is abandoned (never joined), and a
fresh pool thread replaces it, so a hung tool neither blocks other calls nor the interpreter's exit.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pydantic_core

from .tool import Tool, ToolArgumentsError, ToolCall, ToolOutcome

_STOP = object()


def count_characters(text: str) -> int:
    """Count "tokens" as characters: the default when no tokenizer-based counter is given."""
    return len(text)


def truncate_characters(text: str, limit: int) -> str:
    """Keep the first ``limit`` characters: the default truncation."""
    return text[:limit]


def tokenizer_counters(tokenizer: Any) -> tuple[Callable[[str], int], Callable[[str, int], str]]:
    """Return ``(count_tokens, truncate)`` functions that measure text with ``tokenizer``."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    def truncate(text: str, limit: int) -> str:
        return tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)[:limit])

    return count, truncate


class ToolExecutor:
    """Runs tool calls in the background and returns futures of :class:`ToolOutcome`.

    Args:
        max_workers: Number of sync tools that may run at once (hung, abandoned ones not counted).

    Example:
        >>> with ToolExecutor() as executor:   # doctest: +SKIP
        ...     outcome = executor.submit(call, tool, timeout_s=5).result()

    """

    def __init__(self, max_workers: int = 8) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        for _ in range(max_workers):
            self._spawn_worker()

    def __enter__(self) -> ToolExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def submit(
        self,
        call: ToolCall,
        tool: Tool | None,
        *,
        timeout_s: float | None = None,
        max_result_tokens: int | None = None,
        count_tokens: Callable[[str], int] = count_characters,
        truncate: Callable[[str, int], str] = truncate_characters,
    ) -> Future[ToolOutcome]:
        """Start running ``call``; the future always resolves to an outcome, never to an exception.

        Args:
            call: The parsed call.
            tool: The tool named by the call, or None when the name is unknown.
            timeout_s: Time limit (None: the tool's own ``timeout_s``, else unlimited).
            max_result_tokens: Longest result kept (None: unlimited); longer ones are cut with a marker.
            count_tokens: Measures a result in tokens (default: characters).
            truncate: Cuts a result to a number of tokens (default: characters).

        Returns:
            A future of the outcome.

        """
        if self._closed:
            raise RuntimeError("ToolExecutor.submit called after shutdown()")
        outer: Future[ToolOutcome] = Future()
        outer.set_running_or_notify_cancel()
        start = time.perf_counter()
        args = _prepare(call, tool, outer)
        if args is None:
            return outer
        assert tool is not None
        limit = timeout_s if timeout_s is not None else tool.timeout_s
        lock = threading.Lock()

        def finish(content: str, is_error: bool, truncated: bool = False) -> bool:
            with lock:
                if outer.done():
                    return False
                outer.set_result(ToolOutcome(call, content, is_error, time.perf_counter() - start, truncated))
                return True

        def on_result(result: Any, error: BaseException | None = None) -> bool:
            if error is not None:
                return finish(f"Error: {type(error).__name__}: {error}", True)
            content, is_error = _to_text(result, tool.name)
            content, truncated = _limit(content, max_result_tokens, count_tokens, truncate)
            return finish(content, is_error, truncated)

        def on_future(f: Future[Any]) -> None:
            error = f.exception()
            on_result(None if error else f.result(), error)

        if limit is not None:
            timer = threading.Timer(limit, self._time_out, (call, limit, finish, not tool.is_async))
            timer.daemon = True
            timer.start()
            outer.add_done_callback(lambda _: timer.cancel())
        if tool.is_async:
            fut = asyncio.run_coroutine_threadsafe(_await(tool.func, args), self._event_loop())
            fut.add_done_callback(lambda f: None if f.cancelled() else on_future(f))
            outer.add_done_callback(lambda _: fut.cancel())
        else:
            self._jobs.put((tool.func, args, on_result))
        return outer

    def shutdown(self) -> None:
        """Stop the pool and the event loop; running tools are abandoned, not waited for."""
        self._closed = True
        with self._lock:
            for _ in range(self._workers):
                self._jobs.put(_STOP)
            self._workers = 0
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None

    def _time_out(self, call: ToolCall, limit: float, finish: Callable[..., bool], on_pool: bool) -> None:
        if not finish(f"Error: tool {call.name!r} timed out after {limit:g} s", True) or not on_pool:
            return
        with self._lock:  # the hung thread keeps its job; give the pool a replacement
            if not self._closed:
                self._spawn_worker()

    def _spawn_worker(self) -> None:
        self._workers += 1
        threading.Thread(target=self._work, name="hogwild-tool", daemon=True).start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            func, args, on_result = job
            try:
                result = func(**args)
                if inspect.isawaitable(result):
                    result = asyncio.run(_await_value(result))
            except BaseException as e:  # noqa: BLE001 - a tool must never crash the engine
                in_time = on_result(None, e)
            else:
                in_time = on_result(result)
            if not in_time:  # timed out: a replacement thread was started, so this one retires
                with self._lock:
                    self._workers -= 1
                return

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="hogwild-tool-loop", daemon=True).start()
                self._loop = loop
            return self._loop


def _prepare(call: ToolCall, tool: Tool | None, outer: Future[ToolOutcome]) -> dict[str, Any] | None:
    """Return the call's Python arguments, or resolve ``outer`` with an error outcome and return None."""
    if call.error is not None:
        message = f"Error: {call.error}"
    elif tool is None or tool.name != call.name:
        message = f"Error: unknown tool {call.name!r}"
    else:
        try:
            return tool.prepare_arguments(call.arguments)
        except ToolArgumentsError as e:
            message = f"Error: {e}"
    outer.set_result(ToolOutcome(call, message, is_error=True))
    return None


async def _await(func: Callable[..., Any], args: dict[str, Any]) -> Any:
    return await func(**args)


async def _await_value(awaitable: Any) -> Any:
    return await awaitable


def _to_text(result: Any, name: str) -> tuple[str, bool]:
    """Render a tool's return value as text: str as is, anything else as JSON (pydantic-aware)."""
    if isinstance(result, str):
        return result, False
    try:
        return pydantic_core.to_json(result).decode(), False
    except Exception:  # noqa: BLE001 - junk results become error text
        try:
            shown = repr(result)
        except Exception:  # noqa: BLE001
            shown = f"<{type(result).__name__} object>"
        kind = type(result).__name__
        return f"Error: tool {name!r} returned a {kind} that is not JSON-serialisable: {shown}", True


def _limit(
    content: str, limit: int | None, count: Callable[[str], int], truncate: Callable[[str, int], str]
) -> tuple[str, bool]:
    if limit is None:
        return content, False
    total = count(content)
    if total <= limit:
        return content, False
    return f"{truncate(content, limit)}\n… [truncated: {limit} of {total} tokens shown]", True
