"""Start fake_llm.py / run fake_lms.py from tests, always bounded in time and always cleaned up.

    with start_fake_llm(tmp_path, garbage_first=2) as fake:
        client = LLMClient(fake.base_url, "fake-model", timeout=5)
        ...
        assert fake.chat_count() == 3

Options map to fake_llm.py flags: model="m" or ["a", "b"], think=True, reasoning_content=True,
answer_in_reasoning=True, garbage_first=N, empty_first=N, truncate_first=N, reasoning_only_first=N,
error_first=N (HTTP 500), drop_first=N (connection closed unanswered), hang_first=N,
faults_after=N (the first N chat requests are answered well, the faults come after), delay=S,
hang=True, reject_json_schema=True or "422"/"500" (reject_json_object likewise), context=N (tokens),
ramble=True, full_context="500", unknown_model="default", answer_model="m", control_chars=True, answers=[{"contains": ..., "answer": ...}] (written to a file
for you), env={...} (extra environment, e.g. FAKE_LMS_STATE). Each fake request's "mode" in
`requests()` names the fault it got ("auto" for a good answer).
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes import stop_process

FAKES = Path(__file__).resolve().parent
FAKE_LLM = FAKES / "fake_llm.py"
FAKE_LMS = FAKES / "fake_lms.py"
READY_PREFIX = "fake_llm ready on "


@dataclass
class FakeLLM:
    """A running fake_llm.py process; a context manager that stops it on exit."""

    proc: subprocess.Popen[str]
    base_url: str
    port: int
    record: Path
    log: Path
    _stopped: bool = field(default=False, repr=False)

    def requests(self) -> list[dict[str, Any]]:
        """Every request the fake has seen so far, oldest first."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text(encoding="utf-8").splitlines() if line.strip()]

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r.get("path") == "/v1/chat/completions"]

    def chat_count(self) -> int:
        return len(self.chat_requests())

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> "FakeLLM":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _flags(tmp_path: Path, opts: dict[str, Any]) -> list[str]:
    args: list[str] = []
    models = opts.pop("model", None)
    for name in ([models] if isinstance(models, str) else models or []):
        args += ["--model", name]
    answers = opts.pop("answers", None)
    if answers is not None:
        answers_file = tmp_path / "fake_llm.answers.json"
        answers_file.write_text(json.dumps(answers), encoding="utf-8")
        args += ["--answers", str(answers_file)]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value not in (None, False):
            args += [flag, str(value)]
    return args


def start_fake_llm(tmp_path: Path, *, ready_timeout: float = 15.0, **opts: Any) -> FakeLLM:
    """Launch fake_llm.py on a free 127.0.0.1 port and wait for its readiness line."""
    tmp_path = Path(tmp_path)
    env = dict(os.environ)
    env.update(opts.pop("env", None) or {})
    record = tmp_path / "fake_llm.requests.jsonl"
    log = tmp_path / "fake_llm.log"
    cmd = [sys.executable, str(FAKE_LLM), "--port", "0", "--record", str(record), *_flags(tmp_path, dict(opts))]
    with open(log, "ab") as log_handle:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_handle, stdin=subprocess.DEVNULL,
                                text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # a thread, so waiting for the line is bounded on every platform
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"fake_llm did not get ready in {ready_timeout} s; log: {log.read_text(errors='replace')}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"fake_llm exited early ({proc.wait()}); log: {log.read_text(errors='replace')}")
            if line.startswith(READY_PREFIX):
                base_url = line[len(READY_PREFIX):].strip()
                port = int(base_url.rsplit(":", 1)[1].split("/", 1)[0])
                return FakeLLM(proc=proc, base_url=base_url, port=port, record=record, log=log)
    except BaseException:
        proc.kill()
        proc.wait(timeout=5)
        raise


def run_fake_lms(state: Path, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `fake_lms.py ARGS` with its state in `state`; output captured, bounded in time."""
    env = dict(os.environ, FAKE_LMS_STATE=str(state))
    return subprocess.run([sys.executable, str(FAKE_LMS), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for fakes that, like `lms server start`, need one given)."""
    import socket  # noqa: PLC0415

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_fake_lms_server(state: Path) -> None:
    """Best-effort cleanup for tests: stop the server fake_lms started, if it still runs."""
    info_path = Path(state) / "server.json"
    try:
        pid = json.loads(info_path.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError):
        return
    if not pid:
        return
    run_fake_lms(state, "server", "stop", timeout=15)
    import psutil  # noqa: PLC0415

    try:  # the stop command refused (server not answering): end the process we caused, by its pid
        proc = psutil.Process(int(pid))
        if any("fake_llm.py" in part for part in proc.cmdline()):
            proc.kill()
    except psutil.Error:
        pass

