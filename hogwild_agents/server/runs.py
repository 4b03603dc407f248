"""One engine behind the server: loading it, counting its runs, and reading a run's events from asyncio.

All requests share the one engine, so their tokens go through the model in the same forward passes (the
engine's scheduler batches every active run). A run's events are pumped from its :class:`RunStream` by a
thread into the event loop; when the consumer leaves (a client disconnected, a task was cancelled) the run
is cancelled and its pages are freed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable

from ..api.events import Event
from ..engine.engine import HogwildEngine
from ..engine.stream import RunStream

__all__ = ["EngineHolder", "LoadingError"]

log = logging.getLogger("hogwild_agents.server")


class LoadingError(RuntimeError):
    """The engine is not ready (still loading, or loading failed)."""


class EngineHolder:
    """The server's engine: given, or built by a factory on a background thread (``/health`` says which)."""

    def __init__(
        self, engine: HogwildEngine | None = None, factory: Callable[[], HogwildEngine] | None = None
    ):
        if (engine is None) == (factory is None):
            raise ValueError("give the server either an engine or an engine_factory")
        self._engine = engine
        self._factory = factory
        self.error: str | None = None
        self._lock = threading.Lock()
        self.active_runs = 0  # runs whose pages are not freed yet
        self._loader: threading.Thread | None = None

    def start_loading(self) -> None:
        """Build the engine in the background (no-op when it was given or is already loading)."""
        if self._engine is not None or self._loader is not None:
            return

        def load() -> None:
            try:
                assert self._factory is not None
                self._engine = self._factory()
                log.info("engine ready")
            except Exception as e:  # reported by /health and every request
                log.exception("loading the engine failed")
                self.error = f"{type(e).__name__}: {e}"

        self._loader = threading.Thread(target=load, name="hogwild-load", daemon=True)
        self._loader.start()

    def wait_loaded(self) -> None:
        """Block until the background load has ended (ready or failed)."""
        if self._loader is not None:
            self._loader.join()

    @property
    def status(self) -> str:
        """``ready``, ``loading`` or ``failed``."""
        if self._engine is not None:
            return "ready"
        return "failed" if self.error else "loading"

    @property
    def engine(self) -> HogwildEngine:
        """The engine; raises :class:`LoadingError` while it is not ready."""
        if self._engine is None:
            raise LoadingError(
                f"the model failed to load ({self.error})"
                if self.error
                else "the model is still loading; retry"
            )
        return self._engine

    def close(self) -> None:
        """Close the engine (cancels its runs)."""
        if self._engine is not None:
            self._engine.close()

    def _count(self, delta: int) -> None:
        with self._lock:
            self.active_runs += delta

    async def events(self, stream: RunStream) -> AsyncIterator[Event]:
        """The run's events in the event loop; leaving early cancels the run (pages freed on its thread)."""
        self._count(+1)
        async for event in stream.aiter(on_closed=lambda: self._count(-1)):
            yield event
