"""Atomic file writes: write to a temporary file in the target folder, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` keeps its old content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        # mkstemp creates the file readable by its owner only; give it the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary_path, 0o666 & ~umask)
        os.replace(temporary_path, target)
    finally:
        temporary_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` only when the block succeeds."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes only; mode={mode!r} must start with 'w'.")
    with atomic_path(path) as temporary, open(temporary, mode, **kwargs) as stream:
        yield stream


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically and return the path."""
    with atomic_open(path, "w", encoding="utf-8") as stream:
        json.dump(data, stream, indent=2, sort_keys=True, default=_json_default)
        stream.write("\n")
    return Path(path)


def _json_default(value: Any) -> Any:
    # NumPy scalars and arrays, and paths, appear in metrics dictionaries.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable: {value!r}")
