"""Progress for long work: item names, a percentage and an ETA, readable in a terminal and in log.txt.

On a terminal the current line is redrawn; anywhere else (a pipe into the orchestrator's log)
one line is printed per finished item, so the log tells the story without control characters.
"""
from __future__ import annotations

import sys
import time
from typing import IO


def format_duration(seconds: float, always_hours: bool = False) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours or always_hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts finished items; the ETA uses only items that did real work (cached ones are free)."""

    def __init__(self, total: int, label: str, stream: IO[str] | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stdout
        self.finished = 0
        self.cached = 0
        self.failed = 0
        self._work_seconds = 0.0
        self._worked = 0
        self._started = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _eta(self) -> str:
        left = self.total - self.finished
        if left <= 0:
            return "0:00"
        if self._worked == 0:
            return "?"
        return format_duration(self._work_seconds / self._worked * left)

    def _emit(self, text: str, final: bool) -> None:
        if self._tty and not final:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(("\r\033[K" if self._tty else "") + text + "\n")
        self.stream.flush()

    def _line(self, name: str, state: str) -> str:
        pct = 100 * self.finished / self.total if self.total else 100
        return f"[{self.label}] {self.finished}/{self.total} ({pct:3.0f}%) {name}: {state} | ETA {self._eta()}"

    def begin(self, name: str) -> None:
        if self._tty:
            self._emit(self._line(name, "working..."), final=False)

    def done(self, name: str, seconds: float | None = None, *, cached: bool = False, failed: bool = False) -> None:
        self.finished += 1
        if cached:
            self.cached += 1
            state = "already done"
        elif failed:
            self.failed += 1
            state = "FAILED"
        else:
            self._worked += 1
            self._work_seconds += seconds or 0.0
            state = f"done in {seconds:.1f}s" if seconds is not None else "done"
        self._emit(self._line(name, state), final=True)

    def summary(self) -> str:
        took = format_duration(time.monotonic() - self._started)
        made = self.finished - self.cached - self.failed
        parts = [f"{made} made", f"{self.cached} already done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        return f"[{self.label}] {self.total} items: {', '.join(parts)} in {took}"
