"""Running tool calls concurrently, turning every failure into error text instead of an exception.

Every call runs on a pool of daemon threads; an async tool gets a fresh event loop of its own on its pool
thread, so an async tool that blocks (``time.sleep``) or raises ``KeyboardInterrupt`` affects only its own
call, never another request's. A call's time limit runs from when a pool thread starts it (waiting
for a free thread does not count). A call that times out is answered at once with an error outcome (an
async one is also cancelled), its thread is abandoned (never joined), and a fresh pool thread replaces
it, so a hung tool neither blocks other calls nor the interpreter's exit. Results *and* error texts are
cut to the same token budget, and a huge text is cut by characters before it is measured, so a tool's
multi-megabyte message costs no more than a short one.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import queue
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pydantic_core

from .tool import Tool, ToolArgumentsError, ToolCall, ToolOutcome

_STOP = object()
_CHARS_PER_TOKEN_BOUND = 32
"""No token of a tokenizer we serve is this long: ``limit * 32`` characters hold ``limit`` tokens."""
_MEASURED_CHARS = 1 << 15
"""Texts up to this long are measured in full (milliseconds); longer ones are cut first."""


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
        # The threads share only this state, never the executor, so an executor nobody holds is collected
        # and its finalizer stops them (engines that are dropped without close() leak no threads).
        self._pool = _Pool()
        for _ in range(max_workers):
            self._pool.spawn()
        self._finalizer = weakref.finalize(self, self._pool.stop)

    @property
    def _closed(self) -> bool:
        return self._pool.closed

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
        if limit is not None and math.isinf(limit):  # infinity is "no limit": a timer cannot wait that long
            limit = None
        lock = threading.Lock()

        returned = threading.Event()  # the tool returned in time: the timer may no longer answer

        def finish(content: str, is_error: bool, truncated: bool = False, timer: bool = False) -> bool:
            with lock:
                if outer.done() or (timer and returned.is_set()):
                    return False
                outer.set_result(ToolOutcome(call, content, is_error, time.perf_counter() - start, truncated))
                return True

        def on_result(result: Any, error: BaseException | None = None) -> bool:
            with lock:  # the time limit covers the tool, not the rendering of what it returned
                if outer.done():  # timed out already: do not even render the late result
                    return False
                returned.set()
            if error is not None:
                content, is_error = f"Error: {type(error).__name__}: {_error_text(error)}", True
            else:
                content, is_error = _to_text(result, tool.name)
            content, truncated = _limit(content, max_result_tokens, count_tokens, truncate)
            return finish(content, is_error, truncated)

        def begin() -> None:
            """The call starts on a pool thread: its time limit runs from now (not while it queued)."""
            if limit is None:
                return
            timer = threading.Timer(limit, self._time_out, (call, limit, finish))
            timer.daemon = True
            outer.add_done_callback(lambda _: timer.cancel())
            timer.start()

        self._pool.jobs.put((tool.func, args, on_result, outer, begin))
        return outer

    def shutdown(self) -> None:
        """Stop the pool and the event loop; running tools are abandoned, not waited for."""
        self._finalizer()

    def _time_out(self, call: ToolCall, limit: float, finish: Callable[..., bool]) -> None:
        if not finish(f"Error: tool {call.name!r} timed out after {limit:g} s", True, timer=True):
            return
        self._pool.replace()  # the hung thread keeps its job; give the pool a replacement


class _Pool:
    """The tool threads' shared state: the job queue and how many threads serve it."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.workers = 0
        self.closed = False

    def spawn(self) -> None:
        self.workers += 1
        threading.Thread(target=_work, args=(self,), name="hogwild-tool", daemon=True).start()

    def replace(self) -> None:
        with self.lock:
            if not self.closed:
                self.spawn()

    def retire(self) -> None:
        with self.lock:
            self.workers -= 1

    def stop(self) -> None:
        """Ask every thread to end once its current job (if any) returns."""
        with self.lock:
            self.closed = True
            for _ in range(self.workers):
                self.jobs.put(_STOP)
            self.workers = 0


def _work(pool: _Pool) -> None:
    while (job := pool.jobs.get()) is not _STOP:
        func, args, on_result, outer, begin = job
        if outer.done():  # answered (cancelled) before a thread was free: never start it
            continue
        begin()
        try:
            result = func(**args)
            if inspect.isawaitable(result):
                result = _run_awaitable(result, outer)
        except BaseException as e:  # noqa: BLE001 - a tool must never crash the engine
            in_time = on_result(None, e)
        else:
            in_time = on_result(result)
        del job, func, args, on_result, outer, begin  # hold nothing of a finished call while idle
        if not in_time:  # timed out: a replacement thread was started, so this one retires
            pool.retire()
            return


def _run_awaitable(awaitable: Any, outer: Future[ToolOutcome]) -> Any:
    """Run an async tool's awaitable on a fresh event loop of this thread; cancel it if ``outer`` ends.

    A loop per call isolates calls: a tool that blocks its loop or raises a ``BaseException`` holds up or
    breaks that loop only. When the call times out or its run is cancelled, the task is cancelled.
    """
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(_await_value(awaitable))

        def cancel(_: object) -> None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop is closed: the call already ended
                pass

        outer.add_done_callback(cancel)
        return loop.run_until_complete(task)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _error_text(error: BaseException) -> str:
    """``str(error)``, or a placeholder when the exception cannot print itself."""
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the error
        return f"<{type(error).__name__} that cannot be printed>"


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
    bound = max(limit * _CHARS_PER_TOKEN_BOUND, _MEASURED_CHARS)
    if len(content) > bound:  # measuring megabytes would cost more than the whole run: cut first
        head = truncate(content[:bound], limit)
        return f"{head}\n… [truncated: {limit} tokens of {len(content)} characters shown]", True
    total = count(content)
    if total <= limit:
        return content, False
    return f"{truncate(content, limit)}\n… [truncated: {limit} of {total} tokens shown]", True
