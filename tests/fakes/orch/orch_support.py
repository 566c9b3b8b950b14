"""Helpers shared by tests/test_services.py and tests/test_orchestrator.py.

A fake ComfyUI install (a COMFYUI_DIR whose main.py runs tests/fakes/fake_comfyui.py as its
own child, like a real server tree), tiny numbered scripts that report what they saw, and
small process/HTTP utilities. Everything runs on 127.0.0.1 with free ports.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import psutil

REPO = Path(__file__).resolve().parents[3]
FAKES = REPO / "tests" / "fakes"
FAKE_COMFYUI = FAKES / "fake_comfyui.py"
FAKE_LLM = FAKES / "fake_llm.py"
FAKE_LMS = FAKES / "fake_lms.py"


def require_fake(path: Path, wait: float = 0.0) -> None:
    """Fail clearly if a fake another helper writes is not there (waiting a little if asked)."""
    deadline = time.monotonic() + wait
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(1.0)
    if not path.is_file():
        import pytest

        pytest.skip(f"{path.name} is not written yet")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout: float = 0.5) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_for(check: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_pid(pid: int) -> None:
    """Test clean-up: make sure nothing a test started outlives it."""
    try:
        proc = psutil.Process(pid)
        proc.kill()
        proc.wait(5)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


MAIN_PY = r'''
"""Stands in for ComfyUI's main.py: parses its flags, runs the fake server as a child process."""
import argparse, json, os, subprocess, sys
parser = argparse.ArgumentParser()
parser.add_argument("--listen")
parser.add_argument("--port", required=True)
args, rest = parser.parse_known_args()
assert args.listen == "127.0.0.1", args.listen
cmd = [sys.executable, FAKE, "--port", args.port] + (["--record", RECORD] if RECORD else []) + rest
child = subprocess.Popen(cmd)
with open(STARTS, "a") as fh:
    fh.write(json.dumps({"main": os.getpid(), "server": child.pid, "argv": sys.argv[1:]}) + "\n")
try:
    sys.exit(child.wait())
except KeyboardInterrupt:
    try:
        sys.exit(child.wait(10))
    except BaseException:
        child.kill()
        raise
'''


def make_comfyui_dir(root: Path, record: Path | None = None, *, crash: str | None = None) -> Path:
    """A COMFYUI_DIR whose main.py runs fake_comfyui.py; starts.jsonl counts the starts.

    With `crash`, main.py prints that text and exits 1 instead (a broken install).
    """
    comfy = root / "ComfyUI"
    comfy.mkdir(parents=True, exist_ok=True)
    if crash is not None:
        (comfy / "main.py").write_text(f"import sys\nprint({crash!r}, flush=True)\nsys.exit(1)\n")
        return comfy
    header = (f"FAKE = {str(FAKE_COMFYUI)!r}\nRECORD = {str(record) if record else ''!r}\n"
              f"STARTS = {str(comfy / 'starts.jsonl')!r}\n")
    (comfy / "main.py").write_text(header + MAIN_PY)
    return comfy


def make_python(path: Path, used: Path) -> Path:
    """An executable standing in for a venv's python (POSIX): appends its arguments to `used`, then
    runs ours with them, so a test sees which interpreter ComfyUI was started with."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(used))}\n'
                    f'exec {shlex.quote(sys.executable)} "$@"\n')
    path.chmod(0o755)
    return path


def comfy_starts(comfy: Path) -> list[dict[str, Any]]:
    return read_jsonl(comfy / "starts.jsonl")


@contextmanager
def running_fake_comfyui(port: int, record: Path | None = None) -> Iterator[subprocess.Popen]:
    """A ComfyUI that was already running before us (to be adopted, never stopped)."""
    cmd = [sys.executable, str(FAKE_COMFYUI), "--port", str(port)] + (["--record", str(record)] if record else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/system_stats") or proc.poll() is not None,
                 what="fake ComfyUI ready")
        assert proc.poll() is None, "fake ComfyUI exited at start"
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def running_fake_llm(port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """An OpenAI-compatible server that is not LM Studio's (as Ollama or llama.cpp would be)."""
    cmd = [sys.executable, str(FAKE_LLM), "--port", str(port), "--model", "some-model"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models") or proc.poll() is not None,
                 what="fake LLM ready")
        assert proc.poll() is None, "fake LLM exited at start"
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def lms_command() -> str:
    return shlex.join([sys.executable, str(FAKE_LMS)])


def lms_calls(state: Path) -> list[list[str]]:
    return [entry["argv"] for entry in read_jsonl(state / "calls.jsonl")]


def stop_fake_lms_server(state: Path) -> None:
    """Clean-up: whatever fake_lms started must not outlive the test."""
    info_path = state / "server.json"
    if info_path.is_file():
        try:
            pid = json.loads(info_path.read_text()).get("pid")
        except ValueError:
            pid = None
        if pid:
            kill_pid(int(pid))


# A numbered script for a temp pipeline: reports what it saw, then does what its argv says.
STEP_PY = r'''
import json, os, signal, sys, time, urllib.request
NAME = os.path.basename(__file__)
EVENTS = os.environ.get("TEST_EVENTS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "events.jsonl")

def up(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False

def event(**data):
    data["script"] = NAME
    with open(EVENTS, "a") as fh:
        fh.write(json.dumps(data) + "\n")

comfy = os.environ.get("COMFYUI_BASE_URL", "http://127.0.0.1:9")
llm = os.environ.get("LM_STUDIO_BASE_URL", "http://127.0.0.1:9/v1")
event(kind="run", cwd=os.getcwd(), argv=sys.argv[1:], engine=os.environ.get("PIPELINE_ENGINE"),
      text=os.environ.get("PIPELINE_TEXT_ENGINE"), comfy_up=up(comfy + "/system_stats"),
      llm_up=up(llm + "/models"), stdin_tty=sys.stdin is None or sys.stdin.isatty())
print(f"hello from {NAME} ünïcode", flush=True)
print("progress 50%\rprogress 100%", flush=True)
args = sys.argv[1:]
if "--ignore-term" in args:
    signal.signal(signal.SIGTERM, lambda s, f: event(kind="ignored", signal=s))
    signal.signal(signal.SIGINT, lambda s, f: event(kind="ignored", signal=s))
else:
    def stop(signum, frame):
        event(kind="signal", signal=signum)
        print(f"{NAME} interrupted", flush=True)
        sys.exit(130)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
if "--sleep" in args:
    event(kind="sleeping")
    deadline = time.monotonic() + float(args[args.index("--sleep") + 1])
    while time.monotonic() < deadline:
        time.sleep(0.05)
if "--exit" in args:
    print(f"{NAME} fails", file=sys.stderr, flush=True)
    sys.exit(int(args[args.index("--exit") + 1]))
'''


GENERATE_PY = r'''
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from common.run.orchestrator import run_pipeline
sys.exit(run_pipeline(Path(__file__).resolve().parent, scripts={scripts!r}, needs_comfyui={comfy!r},
                      needs_lmstudio={llm!r}, script_args={args!r}, argv=sys.argv[1:]))
'''


def make_pipeline(root: Path, scripts: list[str], needs_comfyui: dict[str, bool] | None = None,
                  needs_llm: dict[str, bool] | None = None, script_args: dict[str, list[str]] | None = None,
                  *, missing: tuple[str, ...] = ()) -> Path:
    """A temp pipeline dir: scripts/ with one reporting step per name, and a generate.py."""
    pipe = root / "gen.test"
    (pipe / "scripts").mkdir(parents=True, exist_ok=True)
    for name in scripts:
        if name in missing:
            continue
        target = (pipe / "scripts" / name).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(STEP_PY, encoding="utf-8")
    (pipe / "generate.py").write_text(GENERATE_PY.format(
        repo=str(REPO), scripts=scripts, comfy=needs_comfyui or {}, llm=needs_llm or {}, args=script_args or {}))
    return pipe


def events(pipe: Path) -> list[dict[str, Any]]:
    return read_jsonl(pipe / "events.jsonl")


def runs(pipe: Path) -> list[dict[str, Any]]:
    return [e for e in events(pipe) if e["kind"] == "run"]


def service_env(tmp: Path, *, comfy_dir: Path | None = None, comfy_port: int | None = None,
                llm_port: int | None = None, lms: bool = True, engine: str = "auto") -> dict[str, str]:
    """Environment for an orchestrator run against the fakes (copied from ours, cleaned)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "COMFYUI_", "LM_STUDIO_"))}
    state = tmp / "lms-state"
    state.mkdir(exist_ok=True)
    env.update({
        "PIPELINE_ENGINE": engine,
        "COMFYUI_BASE_URL": f"http://127.0.0.1:{comfy_port or free_port()}",
        "COMFYUI_DIR": str(comfy_dir or tmp / "no-comfyui-here"),
        "COMFYUI_PYTHON": sys.executable,
        "LM_STUDIO_BASE_URL": f"http://127.0.0.1:{llm_port or free_port()}/v1",
        "LM_STUDIO_CMD": lms_command() if lms else "no-such-lms-command-xyz",
        "LM_STUDIO_MODEL": "qwen/qwen3-14b",
        "FAKE_LMS_STATE": str(state),
        "SERVICE_START_TIMEOUT": "30",
        "SERVICE_STOP_GRACE": "5",
        "PYTHONIOENCODING": "utf-8",
    })
    return env
