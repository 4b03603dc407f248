"""RunStream: the events of one run as they happen, with cancel, inject and an asyncio bridge."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from ..api.errors import InvalidRequestError
from ..api.events import Event
from ..api.messages import check_text

__all__ = ["RunStream"]


class RunStream:
    """The events of one run as they happen (an iterator); the last one is :class:`FinishedEvent`.

    Iterate it (``for event in stream``), or :meth:`cancel` the run from any thread. Leaving the loop
    early and dropping the stream, or calling :meth:`close`, cancels the run too: its pages are released
    and the engine is ready for the next request.
    """

    def __init__(
        self,
        events: Iterator[Event],
        cancel: Callable[[bool], None],
        inject: Callable[[str, str], None] | None = None,
    ) -> None:
        """``cancel(wait)`` stops the run at its next step; with ``wait``, returns once its pages are free."""
        self._events = events
        self._cancel = cancel
        self._inject = inject

    def __iter__(self) -> RunStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def cancel(self) -> None:
        """Stop the run at the next engine step and free its pages (returns at once; safe from any thread)."""
        self._cancel(False)

    def inject(self, text: str, role: str = "user") -> None:
        """Add a message to the run's shared workspace (safe from any thread).

        Every worker (and the finisher) sees it from the run's next forward on; it is recorded in the
        trace as a block by ``"injected"``.

        Raises:
            InvalidRequestError: the text is empty or not valid Unicode, or the role is unknown.
            RuntimeError: the engine runs under tensor parallelism (every rank would need the message).
        """
        if role not in ("user", "system"):
            raise InvalidRequestError(f"an injected message's role must be 'user' or 'system', got {role!r}")
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError("an injected message must be a non-empty string")
        check_text(text, "the injected message")
        if self._inject is None:
            raise RuntimeError("messages cannot be injected into a tensor-parallel run")
        self._inject(role, text)

    def close(self) -> None:
        """Stop listening: cancels the run if it is still going and waits until its pages are free.

        Also for a stream that was never iterated: its run is cancelled, not left to go on unread.
        """
        self._events.close()
        self._cancel(True)

    async def aiter(self, on_closed: Callable[[], None] | None = None) -> AsyncIterator[Event]:
        """The events in the caller's event loop, read on a thread so the loop is never blocked.

        Leaving the ``async for`` early (or cancelling the task) cancels the run at the next engine step,
        even while one of its tools is running. ``on_closed`` is called on that thread once the run's
        pages are free.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        gone = threading.Event()

        def send(item: Event | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the consumer's event loop is closed: nobody listens any more
                gone.set()
                self.cancel()

        def produce() -> None:
            try:
                for event in self:
                    send(event)
                    if gone.is_set():
                        break
            except BaseException as e:  # forwarded to the consumer, re-raised there
                send(e)
            finally:
                self.close()  # a consumer that left: the run is cancelled and its pages are free now
                if on_closed is not None:
                    on_closed()
                send(None)

        threading.Thread(target=produce, name="hogwild-run", daemon=True).start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            gone.set()
            self.cancel()
