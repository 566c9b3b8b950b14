"""Child processes of the servers we start: waiting for one to be ready, reading its log, stopping its tree.

Readiness is polled every 100 ms (the seed polled every 15 s), and a server that dies while
starting ends the wait at once with the tail of its log, so a broken install fails in seconds
with the reason, not after a 5-minute timeout.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil

from common.run.errors import ServiceError

POLL_INTERVAL = 0.1


def log_tail(path: Path | None, lines: int = 15) -> str:
    """The last lines of a server log, to put the real cause into our one-sentence error."""
    if path is None or not path.is_file():
        return ""
    with open(path, "rb") as handle:
        tail = deque(handle, maxlen=lines)
    return b"".join(tail).decode("utf-8", errors="replace").rstrip()


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = POLL_INTERVAL,
    what: str,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
    exit_advice: str = "",
) -> float:
    """Poll `check` until it is true; return the seconds it took.

    A `process` that exits while we wait ends the wait at once (its log tail goes into the
    error), because a crashed server will never answer however long we poll. `exit_advice`
    says what most likely fixes such an exit (the settings to look at), before that tail.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if check():
            return time.monotonic() - started
        if process is not None and process.poll() is not None:
            tail = log_tail(log_path)
            where = f" (log: {log_path})" if log_path else ""
            if exit_advice:
                advice = f"{exit_advice}; its last lines:\n{tail}" if tail else f"{exit_advice}; its log is empty."
            else:
                advice = f"fix the cause shown in its last lines:\n{tail}" if tail else "run it by hand to see why."
            raise ServiceError(f"{what} exited with code {process.returncode} before it was ready{where}; {advice}")
        now = time.monotonic()
        if now >= deadline:
            tail = log_tail(log_path)
            where = f"; its log is {log_path}" if log_path else ""
            raise ServiceError(
                f"{what} was not ready after {timeout:.0f} s{where}; check it, or raise "
                "SERVICE_START_TIMEOUT." + (f"\n{tail}" if tail else "")
            )
        time.sleep(min(interval, max(0.0, deadline - now)))


def new_group_kwargs() -> dict[str, Any]:
    """Own process group/session, so a terminal Ctrl+C does not hit it and we can stop the tree."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _alive(procs: Sequence[psutil.Process]) -> list[psutil.Process]:
    living = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                living.append(proc)
        except psutil.NoSuchProcess:
            pass
    return living


def _tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_process_tree(proc: subprocess.Popen, *, grace: float, first_signal: int | None = None) -> int | None:
    """Stop a child we started and everything it spawned: polite signal, grace, then kill.

    ComfyUI stops cleanly on SIGINT ("Stopped server"); SIGTERM follows at half the grace
    period, SIGKILL at its end. Children are collected before the parent dies, since once it
    is gone they are re-parented and no longer findable through it.
    """
    if first_signal is None:
        first_signal = signal.SIGINT if os.name != "nt" else signal.CTRL_BREAK_EVENT  # type: ignore[attr-defined]
    known: dict[int, psutil.Process] = {p.pid: p for p in _tree(proc.pid)}

    def refresh() -> None:
        if proc.poll() is None:
            for p in _tree(proc.pid):
                known.setdefault(p.pid, p)

    def in_group(pid: int) -> bool:
        try:
            return os.name != "nt" and os.getpgid(pid) == proc.pid
        except OSError:
            return False

    def signal_all(sig: int) -> None:
        refresh()
        group_signalled = False
        if proc.poll() is None:
            try:
                if os.name != "nt":
                    os.killpg(proc.pid, sig)
                    group_signalled = True
                else:
                    proc.send_signal(sig)
            except OSError:
                pass
        # Whatever left the group (or the parent, if the group could not be signalled):
        # signalled once, never twice, since a second Ctrl+C means "quit now" to many programs.
        for p in _alive(list(known.values())):
            if p.pid == proc.pid or (group_signalled and in_group(p.pid)):
                continue
            try:
                p.send_signal(sig)
            except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
                pass

    def children_left() -> list[psutil.Process]:
        return _alive([p for p in known.values() if p.pid != proc.pid])

    def wait_for_all(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            refresh()
            if proc.poll() is not None and not children_left():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    if proc.poll() is None:
        signal_all(first_signal)
        if not wait_for_all(grace / 2):
            signal_all(signal.SIGTERM)
            if not wait_for_all(grace / 2):
                if os.name != "nt" and proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                for p in _alive(list(known.values())):
                    try:
                        p.kill()
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
    # Leftovers of a parent that had already exited (re-parented grandchildren). A zombie
    # counts as gone: psutil.wait_procs would wait for it, and nobody may ever reap it.
    leftovers = children_left()
    for sig_name in ("terminate", "kill"):
        for p in leftovers:
            try:
                getattr(p, sig_name)()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        deadline = time.monotonic() + min(grace, 5.0)
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.05)
            leftovers = _alive(leftovers)
        if not leftovers:
            break
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return None


def split_command(text: str, *, windows: bool = os.name == "nt") -> list[str]:
    """A command-line setting as arguments. On Windows shlex must not be POSIX (backslashes are path
    separators there), but then it keeps the quotes around a token: they are taken off here, so a
    quoted path with spaces arrives as the path."""
    if not windows:
        return shlex.split(text)
    return [t[1:-1] if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'" else t for t in shlex.split(text, posix=False)]


def command_line(argv: Sequence[str], *, windows: bool = os.name == "nt") -> str:
    """An argument list as the one line a user could paste into this system's shell (logs, --dry-run)."""
    return subprocess.list2cmdline(list(argv)) if windows else shlex.join(argv)


def resolve_command(command: str) -> list[str] | None:
    """Split a command setting and find its program on PATH (or as a path); None if missing."""
    try:
        argv = split_command(command)
    except ValueError:
        return None
    if not argv:
        return None
    found = shutil.which(argv[0])
    return [found, *argv[1:]] if found else None


class EarlierProcess:
    """A server process an earlier run started (not our child), shaped like the subprocess.Popen
    that stop_process_tree and wait_until expect, so it is stopped and watched like one we start.

    Its exit code cannot be known (only a parent reaps it): it reads -1 once it has ended.
    """

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not _alive([self._proc]):
            self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        try:
            self._proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass

    def kill(self) -> None:
        self.send_signal(getattr(signal, "SIGKILL", signal.SIGTERM))


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on a local TCP port, None when none or it cannot be told.

    Some systems (macOS) let only root list every connection: then each process of ours is asked.
    """
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        for proc in psutil.process_iter():
            try:
                if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                       for c in proc.net_connections(kind="tcp")):
                    return proc.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def tree_pids(proc: psutil.Process) -> set[int]:
    """A process and everything it started (a server may listen from a child of the process we ran)."""
    try:
        return {proc.pid, *(p.pid for p in proc.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()
