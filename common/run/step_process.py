"""One script of a run as a child process: its output to the terminal and log.txt, signals passed on.

Each script runs in its own process group, so a crash or an out-of-memory kill costs one script,
and Ctrl+C / SIGTERM reach it and whatever it started; it checkpoints and exits. A SIGHUP (the
terminal or SSH session closed) stops the run like SIGTERM, and the script gets a SIGTERM: its
own process group is outside the terminal's session, and SIGTERM is the signal it checkpoints on.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from common.config.paths import REPO_ROOT
from common.engines.choice import EngineChoice
from common.state.checkpoints import now_text

if TYPE_CHECKING:
    from common.run.steps import Step

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
HANGUP: int | None = getattr(signal, "SIGHUP", None)
if HANGUP is not None:
    SIGNAL_EXIT[HANGUP] = 128 + HANGUP
SIGNAL_NAMES = {signal.SIGINT: "Ctrl+C", signal.SIGTERM: "SIGTERM"}
if HANGUP is not None:
    SIGNAL_NAMES[HANGUP] = "SIGHUP: the terminal or SSH session closed"
KILL = getattr(signal, "SIGKILL", signal.SIGTERM)
_NEW_GROUP: dict[str, Any] = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
                              else {"start_new_session": True})  # signals reach the script and what it started


def to_terminal(text: str, err: bool = False) -> None:
    """A line to the terminal; a terminal that is gone (closed SSH session, dead pipe) is let go.

    The run must go on (or stop cleanly on the SIGHUP that comes with it) and log.txt still gets
    every line, so a failed write swaps the stream for the null device instead of raising.
    """
    name = "stderr" if err else "stdout"
    stream = getattr(sys, name)
    try:
        try:
            stream.write(text + "\n")
        except UnicodeEncodeError:
            encoding = getattr(stream, "encoding", None) or "ascii"
            stream.write(text.encode(encoding, errors="replace").decode(encoding) + "\n")
        stream.flush()
    except (OSError, ValueError):
        setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


class RunLog:
    """Lines to the terminal and, whole and flushed, appended to log.txt.

    One os.write per line on an O_APPEND descriptor, under a lock, so the reader thread and
    the main thread never interleave half lines and a crash never leaves a torn line.
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def line(self, text: str, *, err: bool = False, terminal: bool = True) -> None:
        with self._lock:
            if terminal:
                to_terminal(text, err)
            if self._fd is not None:
                data = (text + "\n").encode("utf-8", errors="replace")
                while data:
                    written = os.write(self._fd, data)
                    data = data[written:]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _clean_child_line(raw: bytes) -> str:
    """A child's line as a terminal would finally show it (progress bars redraw with \\r)."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    if "\r" in text:
        parts = [p for p in text.split("\r") if p.strip()]
        text = parts[-1] if parts else ""
    return text


# --------------------------------------------------------------------------- signals


class Stopped(BaseException):
    """Raised by the signal handler while services are being prepared (no child to pass it to)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Signals:
    """Records Ctrl+C / SIGTERM / SIGHUP; the main loop passes them on to the child."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self.raise_now = False
        self._previous: dict[int, Any] = {}
        # --until-time: at this time.monotonic() the run stops as on SIGTERM (the script checkpoints and exits).
        self.deadline: float | None = None
        self.deadline_hit = False

    def poll(self) -> None:
        """Turn a passed deadline into a stop, as if SIGTERM had come."""
        if self.signum is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.signum = signal.SIGTERM
            self.deadline_hit = True

    def handler(self, signum: int, frame: Any) -> None:
        if signum != HANGUP:  # a hang-up may come twice (the kernel, the shell): never "quit now"
            self.count += 1
        if self.signum is None:
            self.signum = signum
        if self.raise_now:
            self.raise_now = False
            raise Stopped(signum)

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """While services start or stop there is no child to pass a signal to: it stops the run at once."""
        self.raise_now = True
        try:
            yield
        finally:
            self.raise_now = False

    def check(self) -> None:
        """Stop the run here when a signal came in (or the deadline passed) since the last look."""
        self.poll()
        if self.signum is not None:
            raise Stopped(self.signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, *([HANGUP] if HANGUP is not None else [])):
            self._previous[sig] = signal.signal(sig, self.handler)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the child's whole process group (it and whatever it started)."""
    try:
        if os.name == "nt":
            if sig in (KILL, signal.SIGTERM):
                proc.kill()
            else:
                proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass


# --------------------------------------------------------------------------- running


def child_env(choice: EngineChoice) -> dict[str, str]:
    env = dict(os.environ)
    # The run's engine choice, so each child skips its own auto-detection (common.engines.choice).
    env.update(PIPELINE_ENGINE=choice.media, PIPELINE_TEXT_ENGINE=choice.text)
    env["PYTHONUNBUFFERED"] = "1"  # progress must reach the terminal and log.txt as it happens
    env["PYTHONIOENCODING"] = "utf-8"
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def run_step(step: Step, env: Mapping[str, str], log: RunLog, signals: Signals, grace: float,
             tail: deque[str] | None = None) -> int:
    """Run one script to its end, streaming its output; returns its exit code (signals as 128+n).

    `tail` receives the child's last lines, so the run's summary can repeat its error sentence.
    """
    log.line(f"===== START {step.name} @ {now_text()} =====")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, step.basename, *step.args], cwd=step.path.parent, env=dict(env),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **_NEW_GROUP,
    )

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            text = _clean_child_line(raw)
            log.line(text)
            if tail is not None and text.strip():
                tail.append(text.strip())

    reader = threading.Thread(target=pump, name=f"output of {step.basename}", daemon=True)
    reader.start()
    forwarded_at: float | None = None
    killed = False
    while True:
        try:
            returncode = proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        signals.poll()
        if signals.signum is None:
            continue
        if forwarded_at is None:
            _signal_group(proc, signal.SIGTERM if signals.signum == HANGUP else signals.signum)
            forwarded_at = time.monotonic()
        elif not killed and (signals.count > 1 or time.monotonic() - forwarded_at > grace):
            _signal_group(proc, KILL)
            killed = True
    reader.join(timeout=2.0)
    if reader.is_alive():
        # Something the script started still holds its output open: it dies with the step.
        _signal_group(proc, KILL)
        reader.join(timeout=2.0)
    if proc.stdout is not None:
        proc.stdout.close()
    code = 128 - returncode if returncode < 0 else returncode
    log.line(f"===== END {step.name} @ {now_text()} (exit={code}, took={time.monotonic() - started:.2f}s) =====")
    return code
