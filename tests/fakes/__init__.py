"""Fake servers for tests, each started as a real process on 127.0.0.1 and always stopped.

    with start_fake_comfyui(tmp_path, job_seconds=0.1) as fake:
        client = ComfyClient(fake.url)
        ...
        assert fake.jobs_run() == 1

The event record (`comfyui_events.jsonl`) and the input/output folders live in `tmp_path`
and are shared by every fake started with the same `tmp_path`, as a real install's folders
would be, so a test can restart the server and still count every job it ran.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import requests

FAKES = Path(__file__).resolve().parent
FAKE_COMFYUI = FAKES / "fake_comfyui.py"
_URL_LINE = re.compile(r"To see the GUI go to: (http://[\d.]+:(\d+))")


@dataclass
class FakeServer:
    """A running fake_comfyui.py; use it as a context manager so it is stopped on exit."""

    proc: subprocess.Popen[bytes]
    url: str
    port: int
    record: Path
    log: Path
    output_dir: Path
    input_dir: Path
    _stopped: bool = field(default=False, repr=False)

    def record_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Every recorded event so far (of one kind, if given), oldest first, across restarts."""
        if not self.record.exists():
            return []
        events = [json.loads(line) for line in self.record.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [e for e in events if event is None or e.get("event") == event]

    def prompts(self) -> list[dict[str, Any]]:
        """The graphs of accepted POST /prompt calls, oldest first."""
        return [e["prompt"] for e in self.record_events("prompt")]

    def jobs_run(self, status: str | None = None) -> int:
        """How many jobs finished (success, error or interrupted; or only `status`)."""
        return sum(1 for e in self.record_events("job_done") if status is None or e.get("status") == status)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """Die at once, like a crash or an OOM kill: no clean shutdown."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._stopped = True

    def stop(self) -> None:
        """Stop like a parent would: Ctrl+C first, then harder, always within a few seconds."""
        if self._stopped:
            return
        self._stopped = True
        stop_process(self.proc, signal.SIGINT if os.name != "nt" else signal.SIGTERM)

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a fake server's process: `sig` first, then a kill, always within a few seconds."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _flags(name: str, values: Iterable[str]) -> list[str]:
    values = list(values)
    return [name, *values] if values else []


def start_fake_comfyui(
    tmp_path: Path,
    *,
    port: int = 0,
    job_seconds: float = 0.1,
    fail_mode: str = "none",
    fail_jobs: int | None = None,
    missing_node: Iterable[str] = (),
    missing_model: Iterable[str] = (),
    extra_model: Iterable[str] = (),
    ws: str = "normal",
    record: Path | None = None,
    output_dir: Path | None = None,
    input_dir: Path | None = None,
    startup_delay: float = 0.0,
    startup_timeout: float = 30.0,
    evil_filenames: bool = False,
    prompt_500: int = 0,
    drop_prompt: int = 0,
    comfyui_version: str = "0.8.1",
    hold: Path | None = None,
    node_seconds: dict[str, float] | None = None,
    stuck_until: Path | None = None,
) -> FakeServer:
    """Start fake_comfyui.py and return once GET /system_stats answers (or raise, having killed it).

    With `hold`, each job's sampler node waits while that file exists: a test can act mid-job
    (reconnect, read /queue) for as long as it needs, then delete the file to let the job finish.
    """
    tmp_path = Path(tmp_path)
    base = tmp_path / "comfyui"
    output_dir = Path(output_dir or base / "output")
    input_dir = Path(input_dir or base / "input")
    record = Path(record or tmp_path / "comfyui_events.jsonl")
    base.mkdir(parents=True, exist_ok=True)
    n = 1
    while (base / f"server.{n}.log").exists():
        n += 1
    log = base / f"server.{n}.log"
    args = [
        sys.executable, str(FAKE_COMFYUI), "--port", str(port), "--job-seconds", str(job_seconds),
        "--record", str(record), "--output-dir", str(output_dir), "--input-dir", str(input_dir),
        "--temp-dir", str(base / "temp"), "--fail-mode", fail_mode, "--ws", ws,
        "--startup-delay", str(startup_delay),
        *(["--fail-jobs", str(fail_jobs)] if fail_jobs is not None else []),
        *_flags("--missing-node", missing_node), *_flags("--missing-model", missing_model),
        *_flags("--extra-model", extra_model), *(["--evil-filenames"] if evil_filenames else []),
        "--prompt-500", str(prompt_500), "--drop-prompt", str(drop_prompt), "--comfyui-version", comfyui_version,
        *(["--hold", str(hold)] if hold is not None else []),
        *_flags("--node-seconds", [f"{cls}={seconds:g}" for cls, seconds in (node_seconds or {}).items()]),
        *(["--stuck-until", str(stuck_until)] if stuck_until is not None else []),
    ]
    with open(log, "wb") as handle:
        proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + startup_timeout
    url = ""
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"fake ComfyUI exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
            if not url:
                match = _URL_LINE.search(log.read_text(encoding="utf-8", errors="replace"))
                if match:
                    url, port = match.group(1), int(match.group(2))
            if url:
                try:
                    if requests.get(url + "/system_stats", timeout=1).status_code == 200:
                        return FakeServer(proc, url, port, record, log, output_dir, input_dir)
                except requests.RequestException:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"fake ComfyUI did not answer within {startup_timeout:g} s:\n{log.read_text(errors='replace')[-2000:]}")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        raise
