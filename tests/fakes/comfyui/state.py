"""The server's state (queue, history, sockets, cache), the event record, and socket messages."""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .nodes import NodeDef


class NodeFailure(Exception):
    def __init__(self, node_id: str, exc_type: str, message: str) -> None:
        super().__init__(message)
        self.node_id, self.exc_type, self.message = node_id, exc_type, message


class Interrupted(Exception):
    def __init__(self, node_id: str | None) -> None:
        super().__init__("interrupted")
        self.node_id = node_id


@dataclass
class Job:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        return self.extra_data.get("client_id")

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass
class State:
    args: argparse.Namespace
    output_dir: Path
    input_dir: Path
    temp_dir: Path
    models: dict[str, list[str]]
    registry: dict[str, NodeDef]
    number: int = 0
    pending: list[Job] = field(default_factory=list)
    running: Job | None = None
    history: dict[str, Any] = field(default_factory=dict)
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    cache: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    interrupt: bool = False
    jobs_started: int = 0
    prompt_posts: int = 0
    last_node: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    evil_names: dict[str, Path] = field(default_factory=dict)  # --evil-filenames: listed name -> real file


def _record(state: State, event: dict[str, Any]) -> None:
    if not state.args.record:
        return
    line = json.dumps({"time": time.time(), **event}, ensure_ascii=False)
    with open(state.args.record, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


async def _send(state: State, event: str, data: dict[str, Any], sid: str | None = None) -> None:
    """ComfyUI's send_sync: to one socket when `sid` is given, else to every socket."""
    message = json.dumps({"type": event, "data": data})
    targets = list(state.sockets.items()) if sid is None else [(sid, state.sockets.get(sid))]
    for _, ws in targets:
        if ws is None or ws.closed:
            continue
        try:
            await ws.send_str(message)
        except (ConnectionError, RuntimeError):
            pass


def _queue_info(state: State) -> dict[str, Any]:
    return {"exec_info": {"queue_remaining": len(state.pending) + (1 if state.running else 0)}}


async def _status(state: State) -> None:
    await _send(state, "status", {"status": _queue_info(state)})


def _dir_for(state: State, kind: str | None) -> Path | None:
    return {"output": state.output_dir, "input": state.input_dir, "temp": state.temp_dir}.get(kind or "output")
