"""What a job learned about its own result that the item's checkpoint must say.

Why it exists: the ComfyUI pool decides deep inside one job that it has to lower the size
(out of memory), while the item's checkpoint is written far above it, by the runner. The
runner opens a collection around each item's work (same thread: a job runs in the thread of
the item that asked for it) and adds what was noted to the entry's data, e.g.
`{"reduced": true}` for a picture made at reduced size, so it can be listed and redone.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

_local = threading.local()

#: data key of an item made with lower settings after running out of memory (REDO_REDUCED redoes it)
REDUCED = "reduced"


@contextmanager
def collecting() -> Iterator[dict[str, Any]]:
    """Collect the notes made in this thread until the block ends; nested blocks pass theirs outwards."""
    outer = getattr(_local, "notes", None)
    notes: dict[str, Any] = {}
    _local.notes = notes
    try:
        yield notes
    finally:
        _local.notes = outer
        if outer is not None:
            outer.update(notes)


def note(**values: Any) -> None:
    """Remember facts about the result being made; without a collection around it, nobody asked."""
    notes = getattr(_local, "notes", None)
    if notes is not None:
        notes.update(values)
