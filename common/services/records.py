"""Which servers this pipeline's runs started and have not stopped yet: `output/tracking/services.json`.

Why: a run that dies without a chance to stop its servers (kill -9, an out-of-memory
kill, a SIGHUP handler that never ran) leaves ComfyUI or the LLM server running, holding the
GPU. Without a record the next run would take such a server for the user's: only ever freed,
never stopped, never restarted. A record names the process by pid AND create time (a pid alone
is reused by the system) and the run that started it, so the next run can tell its own orphan
from a server the user started by hand, and from one a run still going holds.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from common.state.atomic import atomic_write_json

RECORDS_NAME = "services.json"
RECORDS_VERSION = 1
_SAME_TIME = 0.01  # create times are read back from JSON: equal within rounding


def records_path(pipeline_dir: Path) -> Path:
    return Path(pipeline_dir) / "output" / "tracking" / RECORDS_NAME


def process_identity(pid: int) -> tuple[int, float] | None:
    """(pid, create time) of a living process, None when it is gone."""
    try:
        return pid, psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def living(pid: int, create_time: float) -> psutil.Process | None:
    """The process with this pid and create time, if it still runs (a zombie has ended)."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > _SAME_TIME or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


_OWNER = process_identity(os.getpid())


@dataclass(frozen=True)
class ServerRecord:
    """One server a run started: what it is, where it answers, which process, which run."""

    kind: str  # "comfyui" | "llm"
    base_url: str
    pid: int
    create_time: float
    owner_pid: int
    owner_create_time: float

    def process(self) -> psutil.Process | None:
        return living(self.pid, self.create_time)

    def owner_alive(self) -> bool:
        """A run still going holds this server: it is that run's, never an orphan."""
        if (self.owner_pid, self.owner_create_time) == _OWNER:
            return False  # this very process: a record of ours from earlier in this run
        return living(self.owner_pid, self.owner_create_time) is not None


class ServerRecords:
    """The records file of one pipeline; each change is written atomically, an empty list removes it
    (so a run that stopped everything leaves no trace, and the run stamp sees no change)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> list[ServerRecord]:
        """Every readable record; an unreadable file counts as none (the servers then look like the user's)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return [ServerRecord(str(r["kind"]), str(r["base_url"]), int(r["pid"]), float(r["create_time"]),
                                 int(r["owner_pid"]), float(r["owner_create_time"])) for r in raw["servers"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def find(self, kind: str, base_url: str) -> ServerRecord | None:
        for record in self.load():
            if (record.kind, record.base_url) == (kind, base_url.rstrip("/")):
                return record
        return None

    def add(self, kind: str, base_url: str, pid: int, create_time: float) -> None:
        """Record a server this run started (replacing an older record of the same place)."""
        owner_pid, owner_time = _OWNER or (os.getpid(), 0.0)
        record = ServerRecord(kind, base_url.rstrip("/"), pid, create_time, owner_pid, owner_time)
        self._save([r for r in self.load() if (r.kind, r.base_url) != (kind, record.base_url)] + [record])

    def remove(self, kind: str, base_url: str) -> None:
        records = self.load()
        kept = [r for r in records if (r.kind, r.base_url) != (kind, base_url.rstrip("/"))]
        if len(kept) != len(records):
            self._save(kept)

    def _save(self, records: list[ServerRecord]) -> None:
        if not records:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            return
        value: dict[str, Any] = {"version": RECORDS_VERSION, "servers": [asdict(r) for r in records]}
        atomic_write_json(self.path, value)
