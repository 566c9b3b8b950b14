"""The real ComfyUI the contract lane talks to: one already running, or one it starts with --cpu.

COMFYUI_CONTRACT_URL names a running server; otherwise COMFYUI_CONTRACT_DIR (a ComfyUI checkout)
and COMFYUI_PYTHON (an interpreter with ComfyUI's requirements, torch included) start one on a
free port of 127.0.0.1 with its own input/output folders, stopped when the lane ends. With
neither, the lane has nothing to talk to and skips, saying so.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

HOW = ("the contract lane needs a real ComfyUI: set COMFYUI_CONTRACT_URL to a running server, or COMFYUI_CONTRACT_DIR "
       "and COMFYUI_PYTHON to start one with --cpu (README, 'Checking against a real ComfyUI')")
# A CPU start loads every node module before it listens (6-7 s observed); a slow disk is slower.
# The wait ends early when the process dies, so this bound only matters for a hung start.
_START_BOUND = 300.0


@dataclass(frozen=True)
class RealServer:
    url: str
    input_dir: Path | None   # known only when the lane started the server itself
    output_dir: Path | None


def configured() -> bool:
    return bool(os.environ.get("COMFYUI_CONTRACT_URL")) or bool(
        os.environ.get("COMFYUI_CONTRACT_DIR") and os.environ.get("COMFYUI_PYTHON"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/system_stats", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def real_comfyui(scratch: Path) -> Iterator[RealServer]:
    url = os.environ.get("COMFYUI_CONTRACT_URL", "").rstrip("/")
    if url:
        if not _answers(url):
            raise RuntimeError(f"COMFYUI_CONTRACT_URL={url} does not answer GET /system_stats: start that ComfyUI first.")
        yield RealServer(url, None, None)
        return
    comfy_dir = Path(os.environ["COMFYUI_CONTRACT_DIR"]).expanduser()
    python = os.environ["COMFYUI_PYTHON"]
    inputs, outputs = scratch / "input", scratch / "output"
    inputs.mkdir(parents=True, exist_ok=True)  # must exist before start, or the audio nodes fail to import
    outputs.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = scratch / "comfyui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
             "--input-directory", str(inputs), "--output-directory", str(outputs), "--temp-directory", str(scratch)],
            cwd=comfy_dir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        give_up = time.monotonic() + _START_BOUND
        while not _answers(url):
            if proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {proc.returncode} before it answered:\n"
                                   + log.read_text(errors="replace")[-3000:])
            if time.monotonic() > give_up:
                raise RuntimeError("ComfyUI did not answer within 300 s:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield RealServer(url, inputs, outputs)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
