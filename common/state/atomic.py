"""Durable file writes: a crash at any instant leaves the old file or the new one, never a torn one."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_umask() -> int:
    # os.umask can only be read by setting it: done once, at import (in the main thread as modules are
    # imported), never later from a worker thread while other threads may be creating files.
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _read_umask()


def _default_mode() -> int:
    """0o666 less the process umask, as open() would create the file."""
    return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsynced and renamed over it.

    Use it for files written by other programs (ffmpeg, Pillow): they write the temp path,
    and the target appears whole or not at all. On an exception the temp file is removed.
    The temp name keeps the target's extension so tools that guess the format from it work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=".tmp" + (target.suffix if suffix is None else suffix),
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        # mkstemp makes owner-only files; outputs get the usual permissions unless asked otherwise.
        os.chmod(tmp, _default_mode() if mode is None else mode)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `target` atomically; newlines are written as given (no platform translation)."""
    return atomic_write_bytes(target, text.encode(encoding))


def atomic_write_json(target: str | os.PathLike[str], value: Any, indent: int | None = 2) -> Path:
    text = json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=False)
    return atomic_write_text(target, text + "\n")
