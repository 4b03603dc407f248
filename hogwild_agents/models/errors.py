"""Why a model cannot be provided: one exception family, whose messages say what to do."""

from __future__ import annotations

__all__ = ["InsufficientDiskSpaceError", "ModelNotAvailableError"]


class ModelNotAvailableError(RuntimeError):
    """A packaged model cannot be provided: packages missing, a part corrupted, or conversion failed."""


class InsufficientDiskSpaceError(ModelNotAvailableError, OSError):
    """Not enough free disk space where the converted model would be cached."""
