"""Exceptions raised by the engine. Every message names the problem and what to do about it."""

from __future__ import annotations

__all__ = [
    "ContextOverflowError",
    "HogwildError",
    "InvalidRequestError",
    "UnsupportedModelError",
]


class HogwildError(Exception):
    """Base class of every error the engine raises on purpose."""


class UnsupportedModelError(HogwildError, NotImplementedError):
    """The model's attention cannot be served exactly by the shared-cache engine (the message says why)."""


class InvalidRequestError(HogwildError, ValueError):
    """A request (messages, tools, overrides) is malformed; nothing was run and the engine is unchanged."""


class ContextOverflowError(InvalidRequestError):
    """The prompt alone does not fit the model's context window or the engine's page pool."""
