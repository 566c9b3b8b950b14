"""What ComfyUI's `/ws` socket says about our job: progress reports for the caller, and the news
the stall watchdog (watchdog.py) goes by: which node runs, and whether it reports progress."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import websocket

_SIGNS_OF_LIFE = {"execution_start", "execution_cached", "executing", "progress", "progress_state", "executed"}


@dataclass(frozen=True)
class Progress:
    """One progress report: `node` started (value == max == 0) or a sampler step `value`/`max`."""

    prompt_id: str
    node: str | None
    value: int
    max: int


ProgressCallback = Callable[[Progress], None]


def receive(sock: websocket.WebSocket, wait: float) -> tuple[str | None, websocket.WebSocket | None]:
    """One text frame (None on timeout or for binary previews); the socket, or None once it failed."""
    try:
        sock.settimeout(wait)
        raw = sock.recv()
    except websocket.WebSocketTimeoutException:
        return None, sock
    except (websocket.WebSocketException, OSError, ValueError):
        sock.close()
        return None, None
    return (raw if isinstance(raw, str) else None), sock


def greeted(sock: websocket.WebSocket, wait: float) -> websocket.WebSocket | None:
    """Read up to the `status` message ComfyUI sends a new socket, or give up after `wait` seconds.

    ComfyUI files the socket under our client id only after the handshake has answered, and sends
    that `status` right after filing it: a job queued before then has its messages sent to nobody
    (a fast job on a real server then ends unseen, and the watchdog never sees it run). Returns
    the socket, or None if it failed while we waited.
    """
    give_up = time.monotonic() + wait
    while (left := give_up - time.monotonic()) > 0:
        raw, sock = receive(sock, left)
        if sock is None:
            return None
        if raw is not None:
            try:
                if json.loads(raw).get("type") == "status":
                    return sock
            except (ValueError, AttributeError):
                continue
    return sock


class News(NamedTuple):
    """What one socket message says about our job: `kind` is "end" (it ended), "node" (`node`
    started), "progress" (a step of `node`, or of the running node when None) or "sign" (other news)."""

    kind: str
    node: str | None = None


def read_message(pid: str, raw: str, on_progress: ProgressCallback | None) -> News | None:
    """React to one socket message: its news about our job, None when it is about something else."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict) or data.get("prompt_id") != pid:
        return None  # status, other clients' jobs, other prompts
    kind = message.get("type")
    if kind in ("execution_success", "execution_error", "execution_interrupted"):
        return News("end")
    if kind == "executing":
        if data.get("node") is None:
            return News("end")
        if on_progress:
            on_progress(Progress(pid, str(data["node"]), 0, 0))
        return News("node", str(data["node"]))
    if kind == "progress":
        node = str(data["node"]) if data.get("node") is not None else None
        if on_progress:
            on_progress(Progress(pid, node, int(data.get("value", 0)), int(data.get("max", 0))))
        return News("progress", node)
    return News("sign") if kind in _SIGNS_OF_LIFE else None
