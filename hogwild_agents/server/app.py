"""The FastAPI application: OpenAI-compatible chat completions over one shared engine, and the web view.

Routes:
    ``POST /v1/chat/completions``  chat completions (``stream=true``: server-sent events of chunks)
    ``GET  /v1/models``            the served model
    ``GET  /health``               ``{"status": "ok", pages, active runs}``; 503 while loading
    ``GET  /``                     the live web view (one pane per worker)
    ``POST /hogwild/runs``         a run started from the web view: its engine events as SSE

Build it with :func:`create_app` from an engine, or from a factory that loads one in the background.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from openai.types import Model
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from ..api.errors import InvalidRequestError
from ..api.events import FinishedEvent
from ..api.results import RunResult
from ..engine.engine import HogwildEngine
from ..engine.stream import RunStream
from .convert import ChunkWriter, EngineRequest, completion, engine_request
from .errors import ServerError, install_error_handlers, log
from .runs import EngineHolder, LoadingError
from .schemas import ChatCompletionRequest, WebRunRequest
from .web import event_json, page_html, web_run_overrides

__all__ = ["create_app"]

MAX_BODY_BYTES = 8 * 1024 * 1024
_DISCONNECT_POLL_S = 0.25


def create_app(
    engine: HogwildEngine | Callable[[], HogwildEngine],
    *,
    model_name: str = "hogwild",
    max_body_bytes: int = MAX_BODY_BYTES,
    background_load: bool = True,
) -> FastAPI:
    """Build the server's app around one engine.

    Args:
        engine: a :class:`HogwildEngine`, or a callable building one (loaded on a background thread when
            the app starts; ``/health`` and requests answer 503 until it is ready).
        model_name: the model id ``/v1/models`` lists and replies carry.
        max_body_bytes: larger request bodies are refused with 413.
        background_load: load a factory's engine on a thread (``/health`` says 503 meanwhile); False
            loads it during the app's startup, before any request is routed (Ray Serve replicas).
    """
    holder = (
        EngineHolder(engine=engine) if isinstance(engine, HogwildEngine) else EngineHolder(factory=engine)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.start_loading()
        if not background_load:
            await asyncio.to_thread(holder.wait_loaded)
        yield
        holder.close()

    app = FastAPI(title="hogwild-agents", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.holder = holder
    install_error_handlers(app)
    pid = str(os.getpid())

    @app.middleware("http")
    async def _limits(request: Request, call_next: Callable[..., Any]) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body_bytes:
            return JSONResponse(
                {
                    "error": {
                        "message": f"the request body has {size} bytes; at most {max_body_bytes} are "
                        "accepted",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "request_too_large",
                    }
                },
                status_code=413,
            )
        response = await call_next(request)
        response.headers["x-hogwild-pid"] = pid  # which process (replica) answered
        return response

    def ready_engine() -> HogwildEngine:
        try:
            return holder.engine
        except LoadingError as e:
            raise ServerError(503, str(e), "server_error", "model_loading") from e

    @app.get("/health")
    async def health() -> JSONResponse:
        if holder.status != "ready":
            body = {"status": holder.status, "error": holder.error, "pid": os.getpid()}
            return JSONResponse(body, status_code=503)
        store = holder.engine.runner.store
        return JSONResponse(
            {
                "status": "ok",
                "model": model_name,
                "pages_free": store.free_pages,
                "pages_total": store.num_pages,
                "active_runs": holder.active_runs,
                "pid": os.getpid(),
            }
        )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        model = Model(id=model_name, created=0, object="model", owned_by="hogwild-agents")
        return {"object": "list", "data": [model.model_dump()]}

    def start(eng: HogwildEngine, req: EngineRequest) -> RunStream:
        """Validate the request against the engine and start its run (raises before anything runs)."""
        schema = req.overrides.get("response_format")
        if schema is not None:
            check_schema(eng, schema)
        return eng.stream(req.messages, tools=req.tools, **req.overrides)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        eng = ready_engine()
        req = engine_request(body, model_name)
        stream = await run_in_threadpool(start, eng, req)
        if req.stream:
            return EventSourceResponse(_sse_chunks(holder, stream, req), ping=15, sep="\n")
        result = await _result_unless_gone(holder, stream, request)
        if result is None:  # the client left; its run is cancelled
            return JSONResponse({}, status_code=499)
        return JSONResponse(completion(req, result).model_dump(mode="json", exclude_unset=False))

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page_html(model_name)

    @app.post("/hogwild/runs")
    async def web_run(body: WebRunRequest) -> EventSourceResponse:
        eng = ready_engine()
        task, tools, overrides = web_run_overrides(body)
        stream = await run_in_threadpool(lambda: eng.stream(task, tools=tools, **overrides))
        names = eng.config.with_overrides(**{k: v for k, v in overrides.items() if k == "workers"}).names

        async def events() -> AsyncIterator[dict[str, str]]:
            yield {"data": json.dumps({"type": "start", "workers": names})}
            try:
                async for event in holder.events(stream):
                    yield {"data": json.dumps(event_json(event), ensure_ascii=False)}
            except Exception as e:  # noqa: BLE001 - reported to the page, which shows it
                log.exception("a web-view run failed")
                yield {"data": json.dumps({"type": "error", "message": f"{type(e).__name__}: {e}"})}

        return EventSourceResponse(events(), ping=15, sep="\n")

    return app


def check_schema(engine: HogwildEngine, schema: dict[str, Any]) -> None:
    """Refuse a ``response_format`` schema that is not JSON Schema or cannot be compiled to a grammar."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise InvalidRequestError(
            f"response_format.json_schema.schema is not a valid JSON Schema: {e.message}"
        ) from None
    try:
        engine.grammar_factory.json_schema(schema)
    except Exception as e:  # noqa: BLE001 - xgrammar's errors vary by version; all mean "unsupported"
        raise InvalidRequestError(
            f"response_format.json_schema.schema cannot be enforced by constrained decoding: {e}"
        ) from None


async def _sse_chunks(holder: EngineHolder, stream: RunStream, req: EngineRequest) -> AsyncIterator[str]:
    """The run as SSE ``data:`` lines of chunks, then ``[DONE]``; a client that leaves cancels the run."""
    writer = ChunkWriter(req)
    yield writer.first().model_dump_json(exclude_unset=True)
    try:
        async for event in holder.events(stream):
            for chunk in writer.convert(event):
                yield chunk.model_dump_json(exclude_unset=True)
    except Exception as e:  # noqa: BLE001 - after the stream began, an error can only be reported in it
        invalid = isinstance(e, InvalidRequestError)
        if not invalid:
            log.exception("a streamed run failed")
        message = str(e) if invalid else f"the run failed ({type(e).__name__}); see the server log"
        kind, code = ("invalid_request_error", "invalid_request") if invalid else ("server_error", None)
        yield json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})
    yield "[DONE]"


async def _result_unless_gone(holder: EngineHolder, stream: RunStream, request: Request) -> RunResult | None:
    """Run to the end; ``None`` (the run cancelled) if the client disconnects first."""

    async def consume() -> RunResult:
        async for event in holder.events(stream):
            if isinstance(event, FinishedEvent):
                return event.result
        raise RuntimeError("the run ended without a result")  # pragma: no cover - streams always finish

    task = asyncio.ensure_future(consume())
    while True:
        done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            return None
