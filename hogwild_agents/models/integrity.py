"""The converted model's integrity: a marker file recording every file's size, time and sha256.

Each load checks sizes and modification times (the fast path of :func:`verify_converted`) and hashes in
full any file whose time changed; ``hogwild info --verify`` hashes everything. Markers are replaced
atomically, and writers hold a file lock, so processes sharing one cache never read half a marker.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .errors import ModelNotAvailableError

__all__ = [
    "MARKER_FILE",
    "file_lock",
    "file_records",
    "record_hashes",
    "sha256_of",
    "verify_converted",
    "write_marker_atomically",
]

logger = logging.getLogger(__name__)

MARKER_FILE = "hogwild-model.json"
_CHUNK = 8 << 20


def file_records(folder: Path, *, full: bool, known: Mapping[str, dict] | None = None) -> dict[str, dict]:
    """``{relative path: {size, mtime_ns, sha256}}`` of every file of a converted model but the marker."""
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER_FILE):
        rel = path.relative_to(folder).as_posix()
        stat = path.stat()
        old = (known or {}).get(rel)
        same = old is not None and old.get("size") == stat.st_size and old.get("mtime_ns") == stat.st_mtime_ns
        digest = old["sha256"] if same and not full and old else sha256_of(path)
        records[rel] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return records


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _rebuild_hint(target: Path) -> str:
    return (
        f"delete the cache folder and run again to convert it anew from the installed packages: "
        f"rm -rf '{target}'"
    )


def verify_converted(target: Path, *, full: bool = False) -> dict[str, str]:
    """Check a converted model's files against the hashes its marker recorded; return each file's state.

    The fast path (``full=False``, every load): a file whose size and modification time (nanoseconds)
    are those recorded is taken as unchanged without reading it. Truncation changes the size, and any
    write through the file system (a partial copy, an editor, a tool rewriting the file) updates the
    modification time, whereupon the file is hashed in full; what the fast path cannot see is a change
    that also restores the time on purpose, or bit rot below the file system, which is what ``full=True``
    (``hogwild info --verify``) is for. Hashing 1.3 GB on every load would cost about as much as the
    load itself. A file whose time changed but whose hash still matches has its new time recorded.

    Returns:
        ``{relative path: "ok" | "hashed"}`` (``"hashed"``: read in full and matched); ``{}`` for a cache
        converted before hashes were recorded (its marker has none; see ``record_hashes``).

    Raises:
        ModelNotAvailableError: a file is missing, has another size, or another sha256; the message says
            which and how to rebuild the cache.
    """
    marker_path = target / MARKER_FILE
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError) as e:
        raise ModelNotAvailableError(
            f"the model cache at {target} has no readable marker ({e}); {_rebuild_hint(target)}"
        ) from e
    files = marker.get("files")
    if not files:
        logger.warning(
            "the model cache at %s records no file hashes (converted by an older version); "
            "run `hogwild info --verify` to record them",
            target,
        )
        return {}
    states: dict[str, str] = {}
    refreshed = False
    for rel, record in files.items():
        path = target / rel
        try:
            stat = path.stat()
        except OSError:
            raise ModelNotAvailableError(
                f"the converted model file {rel} is missing from {target}; {_rebuild_hint(target)}"
            ) from None
        if stat.st_size != record["size"]:
            raise ModelNotAvailableError(
                f"the converted model file {path} is truncated or altered ({stat.st_size} bytes, expected "
                f"{record['size']}); {_rebuild_hint(target)}"
            )
        if not full and stat.st_mtime_ns == record["mtime_ns"]:
            states[rel] = "ok"
            continue
        digest = sha256_of(path)
        if digest != record["sha256"]:
            raise ModelNotAvailableError(
                f"the converted model file {path} is corrupted (sha256 {digest[:16]}..., expected "
                f"{record['sha256'][:16]}...); {_rebuild_hint(target)}"
            )
        states[rel] = "hashed"
        if stat.st_mtime_ns != record["mtime_ns"]:
            record["mtime_ns"] = stat.st_mtime_ns
            refreshed = True
    if refreshed:
        write_marker_atomically(marker_path, marker)
    return states


def record_hashes(target: Path) -> dict[str, dict]:
    """Record the hashes of a cache converted before they were kept (trust on first use); return them."""
    marker_path = target / MARKER_FILE
    marker = json.loads(marker_path.read_text())
    with file_lock(target.parent / f".{target.name}.lock"):
        marker["files"] = file_records(target, full=True)
        write_marker_atomically(marker_path, marker)
    return marker["files"]


def write_marker_atomically(path: Path, marker: dict) -> None:
    """Replace the marker atomically (a reader sees the old one or the new one, never half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, path)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block, across processes."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed, also on error
        yield
