"""What is running now: the run lock says whether a run goes, log.txt which step and how far.

Why from these two: the orchestrator writes `===== START <step> @ <time> =====` and a matching END
line around every script, and a script's progress lines (`[label] 3/10 ( 30%) item: done | ETA
0:12`) go to the same log, whole lines only, so the newest START without its END is the step in
flight and the last progress line after it is how far it got. Only the log's tail is read.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from common.run.lock import lock_path, read_record

TAIL_BYTES = 256 * 1024
_START = re.compile(r"^===== START (?P<name>.+?) @ (?P<at>[\d: -]+) =====$")
_END = re.compile(r"^===== END (?P<name>.+?) @ (?P<at>[\d: -]+) \(exit=(?P<code>-?\d+), took=(?P<took>[\d.]+)s\) =====$")
_PROGRESS = re.compile(r"^\[(?P<label>[^\]]+)\] (?P<done>\d+)/(?P<total>\d+) \(\s*(?P<pct>\d+)%\) (?P<item>.*?): "
                       r"(?P<state>.*) \| ETA (?P<eta>\S+)$")


def log_tail(path: Path, limit: int = TAIL_BYTES) -> list[str]:
    """The last whole lines of the log (at most `limit` bytes of it); [] when there is no log."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if size > limit else lines  # the first one may be cut


def running_holder(pipeline_dir: Path) -> dict[str, Any] | None:
    """The living process that holds the pipeline's run lock (pid, what, since), or None."""
    record = read_record(lock_path(pipeline_dir))
    if record is None:
        return None
    living = record.living()
    if not living:
        return None
    holder = living[0]
    return {"pid": holder.pid, "what": holder.what, "since": holder.since}


def current_step(lines: list[str]) -> dict[str, Any] | None:
    """The step of the newest START that has no END yet, with its last progress line, or None."""
    for index in range(len(lines) - 1, -1, -1):
        if _END.match(lines[index]):
            return None
        start = _START.match(lines[index])
        if start is None:
            continue
        found: dict[str, Any] = {"name": start["name"], "started_at": start["at"], "progress": None}
        for line in reversed(lines[index + 1:]):
            progress = _PROGRESS.match(line)
            if progress is not None:
                found["progress"] = {"label": progress["label"], "done": int(progress["done"]),
                                     "total": int(progress["total"]), "percent": int(progress["pct"]),
                                     "item": progress["item"], "state": progress["state"], "eta": progress["eta"]}
                break
        return found
    return None


def last_finished(lines: list[str]) -> dict[str, Any] | None:
    """The newest END line: which step, its exit code and time."""
    for line in reversed(lines):
        end = _END.match(line)
        if end is not None:
            return {"name": end["name"], "at": end["at"], "code": int(end["code"]), "took": float(end["took"])}
    return None


def tonight_state(pipeline_dir: Path, tail_lines: int = 12) -> dict[str, Any]:
    """Whether a run goes, the step in flight and its progress, and the log's last lines."""
    lines = log_tail(Path(pipeline_dir) / "log.txt")
    holder = running_holder(pipeline_dir)
    current = current_step(lines) if holder is not None else None
    return {"running": holder is not None, "holder": holder, "current": current,
            "last_finished": last_finished(lines), "log": lines[-tail_lines:]}
