"""One run of a pipeline at a time: `output/run.lock`.

Why: every script keeps its checkpoints in memory and rewrites its whole state file after each
item, so two runs of one pipeline at once (a cron job and a person, two terminals) would each
write back their own view and lose the other's items. The orchestrator holds the lock for its
whole run and a numbered script run on its own holds it for its run; a script the orchestrator
runs (or that a script runs, as `4.quality.py --retake` runs 2.story.py) does not take it again:
it joins its run's lock (RUN_LOCK_ENV names the holder), so a lock whose orchestrator was killed
stays held while that script still writes. The second run stops
at once with one sentence naming the holder.

The lock names its holders by pid and process create time, so a lock left by a dead process
(a power cut, kill -9, an SSH drop) is taken over, and a new process that got the same pid is
not mistaken for its holder. Taking, joining and releasing happen under a short OS lock on the
output folder (`run.lock.guard` on Windows; released by the OS if we die), so two runs
starting at the same instant cannot both take over a stale lock. Readers (`generate.py --status`, the publish checks) never
take it: they read state through common.state.checkpoints.read_entries, which writes nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from common.run.errors import PreflightError
from common.state.atomic import atomic_write_json
from common.state.checkpoints import now_text

LOCK_NAME = "run.lock"
GUARD_NAME = "run.lock.guard"
RUN_LOCK_ENV = "GEN_RUN_LOCK"  # "<pid>:<create time>" of the orchestrator whose run a child belongs to
CREATE_TIME_SLACK = 1.0  # seconds: create times are read from the clock ticks of one boot


class RunLockedError(PreflightError):
    """Another run of the same pipeline holds its lock; nothing was started (exit 8)."""


def lock_path(pipeline_dir: Path) -> Path:
    return Path(pipeline_dir) / "output" / LOCK_NAME


@dataclass(frozen=True)
class Member:
    """A process that holds (or shares) the lock: its pid, create time, what it is and since when."""

    pid: int
    created: float
    what: str
    since: str

    @classmethod
    def current(cls, what: str) -> "Member":
        import psutil

        return cls(os.getpid(), psutil.Process().create_time(), what, now_text())

    @property
    def token(self) -> str:
        return f"{self.pid}:{self.created!r}"

    def same_process(self, other: "Member") -> bool:
        return self.pid == other.pid and abs(self.created - other.created) <= CREATE_TIME_SLACK

    def alive(self) -> bool:
        """Still running: the same pid with the same create time (a reused pid is another process)."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return abs(proc.create_time() - self.created) <= CREATE_TIME_SLACK
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:  # someone else's process with that pid: assume it holds the lock
            return True

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "created": self.created, "what": self.what, "since": self.since}

    @classmethod
    def from_json(cls, raw: Any) -> "Member":
        return cls(int(raw["pid"]), float(raw["created"]), str(raw.get("what", "?")), str(raw.get("since", "?")))


@dataclass
class Record:
    """The lock file: its holder and the scripts of the holder's run that joined it."""

    holder: Member
    joined: list[Member] = field(default_factory=list)

    def living(self) -> list[Member]:
        return [m for m in (self.holder, *self.joined) if m.alive()]

    def to_json(self) -> dict[str, Any]:
        return {**self.holder.to_json(), "joined": [m.to_json() for m in self.joined]}


def read_record(path: Path) -> Record | None:
    """The lock's record, or None when there is none or it cannot be read (then it holds nothing)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Record(Member.from_json(raw), [Member.from_json(m) for m in raw.get("joined", [])])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@contextlib.contextmanager
def _guarded(path: Path) -> Iterator[None]:
    """A few milliseconds of mutual exclusion between processes for reading and replacing the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.name == "nt":  # a directory cannot be opened there: a small file beside the lock is the guard
        fd = os.open(path.with_name(GUARD_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    else:  # the output folder itself, so no extra file is left behind
        fd = os.open(path.parent, os.O_RDONLY)
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for up to 10 s
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the OS lock


class RunLock:
    """A held (or joined) lock; `release()` gives it back. Use `hold()` rather than this directly."""

    def __init__(self, path: Path, me: Member, *, joined: bool = False, nested: bool = False,
                 took_over: Record | None = None) -> None:
        self.path = path
        self.me = me
        self.joined = joined
        self.nested = nested
        self.took_over = took_over

    @property
    def token(self) -> str:
        """What a child run under this lock gets in RUN_LOCK_ENV."""
        return self.me.token

    def takeover_note(self) -> str:
        if self.took_over is None:
            return ""
        old = self.took_over.holder
        return (f"run lock: took over {self.path} from {old.what} (pid {old.pid}, started {old.since}), "
                "which is no longer running")

    def release(self) -> None:
        if self.nested:
            return
        with _guarded(self.path):
            record = read_record(self.path)
            if record is None:
                return
            if self.joined:
                record.joined = [m for m in record.joined if not m.same_process(self.me)]
                if record.holder.alive() or record.joined:
                    atomic_write_json(self.path, record.to_json(), indent=1)
                    return
                self.path.unlink(missing_ok=True)  # our run's holder died: nothing holds it any more
            elif record.holder.same_process(self.me):
                if record.joined and any(m.alive() for m in record.joined):
                    return  # a script of our run outlived us (kill -9 of its parent): it still holds it
                self.path.unlink(missing_ok=True)


def _refusal(label: str, path: Path, record: Record, living: list[Member]) -> RunLockedError:
    holder = record.holder if record.holder in living else living[0]
    return RunLockedError(
        f"another run of {label} is in progress ({holder.what}, pid {holder.pid}, started "
        f"{holder.since}; lock {path}): wait for it to finish or stop it, then run again.")


def acquire(pipeline_dir: Path, what: str, environ: dict[str, str] | None = None) -> RunLock:
    """Take the pipeline's run lock, join it when our parent run holds it, or raise RunLockedError."""
    return acquire_at(lock_path(pipeline_dir), Path(pipeline_dir).name, what, environ)


def acquire_at(path: Path, label: str, what: str, environ: dict[str, str] | None = None) -> RunLock:
    """The same rules for any lock file, e.g. a queue of stories' (`label` names what it guards)."""
    environ = dict(os.environ) if environ is None else environ
    me = Member.current(what)
    with _guarded(path):
        record = read_record(path)
        if record is None:
            atomic_write_json(path, Record(me).to_json(), indent=1)
            return RunLock(path, me)
        if any(m.same_process(me) for m in (record.holder, *record.joined)):
            return RunLock(path, me, nested=True)  # taken earlier in this process (a script run in-process)
        living = record.living()
        if living and environ.get(RUN_LOCK_ENV) == record.holder.token:
            record.joined = [m for m in record.joined if m.alive()] + [me]
            atomic_write_json(path, record.to_json(), indent=1)
            return RunLock(path, me, joined=True)
        if living:
            raise _refusal(label, path, record, living)
        atomic_write_json(path, Record(me).to_json(), indent=1)
        return RunLock(path, me, took_over=record)


@contextlib.contextmanager
def hold(pipeline_dir: Path, what: str, say: Any = None) -> Iterator[RunLock]:
    """Hold the run lock for a block; a takeover of a stale lock is said (on stderr by default).

    While it is held, RUN_LOCK_ENV names the run's holder, so the scripts this process starts join it.
    """
    lock = acquire(pipeline_dir, what)
    note = lock.takeover_note()
    if note:
        (say or (lambda text: print(text, file=sys.stderr, flush=True)))(note)
    before = os.environ.get(RUN_LOCK_ENV)
    if not lock.joined and not lock.nested:
        os.environ[RUN_LOCK_ENV] = lock.token
    try:
        yield lock
    finally:
        if before is None:
            os.environ.pop(RUN_LOCK_ENV, None)
        else:
            os.environ[RUN_LOCK_ENV] = before
        lock.release()
