"""What a running chain has visibly done, event by event: the clock a kill plan reads.

Why not seconds: a kill planned "9 s into the run" lands in different work on a faster or slower
machine, and a plan tuned to one machine's speed runs out of chain on a faster one (fewer kills
than wanted) or never reaches the late steps on a slower one. A RunWatch polls what a run leaves
for anyone to see and numbers each thing in the order seen:
- each line of the run's log, the orchestrator's `===== START`/`===== END` markers among them;
- each file of the pipelines' input/ and output/ folders that appears, or is rewritten (a
  checkpoint saved after an item, an output replaced by an atomic rename);
- each temp file (`.<stem>.<random>.tmp<suffix>`) as it appears and as it grows by every
  further 256 KiB, so a long encode is many events, not one.
A plan such as "the 7th event into the run's 19th step" then lands in the same work on any
machine speed: what varies is only what happens between two polls (a few milliseconds).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

GROWTH = 256 * 1024  # ffmpeg and PNG writers flush in blocks of this size: one event per block
START, END = "===== START ", "===== END "


@dataclass(frozen=True)
class Event:
    step: int  # how many START markers the run had printed when this was seen (0: start-up)
    what: str  # for whoever reads where a kill landed: "START 4.video.py", "new final.wav", ...


def _script(marker: str) -> str:
    """`===== START ../../gen.audio/scripts/2.story.py @ ...` -> `2.story.py`."""
    return marker.split(" ", 2)[2].split(" @ ", 1)[0].rsplit("/", 1)[-1]


def _is_temp(name: str) -> bool:
    return name.startswith(".") and ".tmp" in name


def _temp_of(name: str) -> str:
    """`.final_sd.k2x9a0qz.tmp.mp4` -> `final_sd.mp4 (temp)`: the same words on every run."""
    left, _, suffix = name[1:].partition(".tmp")
    return f"{left.rsplit('.', 1)[0]}{suffix} (temp)"


@dataclass
class RunWatch:
    """Polls one run's log and the files under `trees`; `events` grows with each poll.

    The files already there when the watch starts are its baseline (no events): a resumed run
    is watched for what it does, not for what earlier runs left.
    """

    log: Path
    trees: Sequence[Path]
    events: list[Event] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # the scripts of the START markers seen, in order
    _offset: int = 0
    _files: dict[str, tuple[int, int]] = field(default_factory=dict)
    _blocks: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._files = self._scan()

    def _scan(self) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        pending = [str(tree) for tree in self.trees]
        while pending:
            try:
                entries = list(os.scandir(pending.pop()))
            except OSError:
                continue  # not made yet, or removed while we looked (a scratch folder)
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    else:
                        stat = entry.stat(follow_symlinks=False)
                        found[entry.path] = (stat.st_size, stat.st_mtime_ns)
                except OSError:
                    pass
        return found

    def _add(self, what: str) -> None:
        self.events.append(Event(len(self.steps), what))

    def poll(self) -> None:
        """Read the log's new complete lines, then look at the files once."""
        try:
            with open(self.log, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            data = b""
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for raw in complete.decode("utf-8", errors="replace").splitlines():
            if raw.startswith(START):
                self.steps.append(_script(raw))
                self._add(f"START {self.steps[-1]}")
            elif raw.startswith(END):
                self._add(f"END {_script(raw)}")
            else:
                self._add("a log line")
        files = self._scan()
        for path in sorted(files):
            size, _ = files[path]
            name = os.path.basename(path)
            if _is_temp(name):
                blocks = size // GROWTH
                before = self._blocks.get(path)
                if before is None:
                    self._add(f"new {_temp_of(name)}")
                for block in range((before or 0) + 1, blocks + 1):
                    self._add(f"{_temp_of(name)} at {block * GROWTH // 1024} KiB")
                self._blocks[path] = blocks  # a file truncated and written again counts again
            elif path not in self._files:
                self._add(f"new {name}")
            elif self._files[path] != files[path]:
                self._add(f"rewrote {name}")
        self._files = files

    def into(self, step: int) -> list[Event]:
        """The events of the run's `step`-th step (1-based), its START marker first."""
        return [e for e in self.events if e.step == step]

    def ended(self, step: int) -> bool:
        """The `step`-th step has finished: its END marker, or a later step, was seen."""
        if len(self.steps) > step:
            return True
        return any(e.what.startswith("END ") for e in self.into(step))


def wait_until(proc: subprocess.Popen[bytes], watch: RunWatch, moment: Callable[[RunWatch], bool],
               timeout: float, interval: float = 0.02) -> bool:
    """Poll until `moment(watch)` holds (True), or the run ends or `timeout` passes first (False).

    `moment` is asked right after each poll; it may read other records too (a fake server's), and
    then what it read there came after the events that poll found, up to one poll's width.
    The timeout is a generous bound for a stuck run, never the plan.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        watch.poll()
        if moment(watch):
            return proc.poll() is None
        time.sleep(interval)
    return False


def chain_steps(pipeline: Path, env: dict[str, str]) -> list[str]:
    """The scripts `generate.py` runs, in order, as its own `--list` prints them."""
    out = subprocess.run([sys.executable, "generate.py", "--list"], cwd=pipeline, env=env, capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL, check=True).stdout
    steps = []
    for line in out.splitlines():
        head, _, rest = line.strip().partition(". ")
        if head.isdigit() and rest:
            steps.append(rest.split()[0].rsplit("/", 1)[-1])
    return steps
