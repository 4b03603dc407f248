"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the right HTTP status.

Every failure a client can cause maps to a 4xx naming the problem; anything else is a 500 with the
exception's class (the traceback goes to the server log, never to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api.errors import ContextOverflowError, InvalidRequestError

__all__ = ["ServerError", "error_body", "install_error_handlers"]

log = logging.getLogger("hogwild_agents.server")


class ServerError(Exception):
    """An error with its HTTP status and OpenAI error fields, raised by the routes."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _respond(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(message, type_, code, param), status_code=status)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None, str]:
    """One readable line for pydantic/FastAPI validation errors: the first few, each with its place."""
    if errors and errors[0].get("type") == "json_invalid":
        detail = errors[0].get("ctx", {}).get("error", "")
        return f"the request body is not valid JSON ({detail})", None, "json_invalid"
    lines = []
    for err in errors[:3]:
        where = _location(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        msg = err.get("msg", "invalid")
        if kind == "extra_forbidden":
            msg = "unknown field (not supported by this server; remove it)"
        lines.append(f"{where or 'body'}: {msg}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    first = errors[0] if errors else {}
    return (
        "invalid request: " + "; ".join(lines) + more,
        _location(tuple(first.get("loc", ()))) or None,
        first.get("type", "invalid"),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a route can raise to an OpenAI error response."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param, code = validation_message(list(exc.errors()))
        return _respond(400, message, "invalid_request_error", code, param)

    @app.exception_handler(ContextOverflowError)
    async def _overflow(request: Request, exc: ContextOverflowError) -> JSONResponse:
        return _respond(400, str(exc), "invalid_request_error", "context_length_exceeded", "messages")

    @app.exception_handler(InvalidRequestError)
    async def _invalid(request: Request, exc: InvalidRequestError) -> JSONResponse:
        return _respond(400, str(exc), "invalid_request_error", "invalid_request")

    @app.exception_handler(ServerError)
    async def _server(request: Request, exc: ServerError) -> JSONResponse:
        return _respond(exc.status, exc.message, exc.type, exc.code, exc.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _respond(exc.status_code, str(exc.detail), kind, str(exc.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s", request.url.path)
        return _respond(
            500, f"internal server error ({type(exc).__name__}); see the server log", "server_error"
        )
