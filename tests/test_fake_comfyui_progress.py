"""The fake ComfyUI reports progress and takes interrupts as the real one does (COMFYUI_API.md,
and ComfyUI 0.8's main.py hijack_progress / execution.py): `progress` only from a sampler's step
callback; every other node silent while it works; an interrupt lands inside a sampler, or else
only when the running node has ended, at the next node's start (so never in the last node).

Spoken to over the raw HTTP and WebSocket API, without our client, so the test is about the fake.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
import websocket

from tests.support.seed import image_prompt
from tests.fakes import FakeServer, start_fake_comfyui

pytestmark = pytest.mark.timeout(60)

SAMPLER, DECODE, SAVE = "16", "20", "21"  # in gen.image/workflow/character_location.json


def run_job(fake: FakeServer, prompt: dict[str, Any],
            on_message: Callable[[dict[str, Any], str], None] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Queue `prompt` as a client would and collect its socket messages until ComfyUI says it is done."""
    client_id = uuid.uuid4().hex
    sock = websocket.create_connection(f"ws://{fake.url.split('://', 1)[1]}/ws?clientId={client_id}", timeout=30)
    try:
        answer = requests.post(fake.url + "/prompt", json={"prompt": prompt, "client_id": client_id}, timeout=10)
        assert answer.status_code == 200, answer.text
        pid = answer.json()["prompt_id"]
        seen: list[dict[str, Any]] = []
        while True:
            raw = sock.recv()
            if not isinstance(raw, str):
                continue  # a preview
            message = json.loads(raw)
            if message["data"].get("prompt_id") != pid:
                continue
            seen.append(message)
            if on_message:
                on_message(message, pid)
            if message["type"] == "executing" and message["data"]["node"] is None:
                return pid, seen
    finally:
        sock.close()


def interrupt_when(kind: str, node: str, fake: FakeServer) -> Callable[[dict[str, Any], str], None]:
    """Send POST /interrupt for the job once the socket first says `kind` about `node`."""
    sent: list[bool] = []

    def hook(message: dict[str, Any], pid: str) -> None:
        if not sent and message["type"] == kind and message["data"].get("node") == node:
            sent.append(True)
            assert requests.post(fake.url + "/interrupt", json={"prompt_id": pid}, timeout=10).status_code == 200

    return hook


def ending(seen: list[dict[str, Any]]) -> dict[str, Any]:
    (end,) = [m for m in seen if m["type"] in ("execution_success", "execution_interrupted", "execution_error")]
    return end


def test_only_samplers_send_progress(fixtures_dir: Path, tmp_path: Path) -> None:
    slow = {"UnetLoaderGGUF": 0.3, "VAEDecode": 0.3, "SaveImage": 0.3}  # a load, a decode, a save: all silent
    with start_fake_comfyui(tmp_path, job_seconds=0.2, node_seconds=slow) as fake:
        prompt = image_prompt("progress from the sampler")
        _, seen = run_job(fake, prompt)
        progress = [m["data"]["node"] for m in seen if m["type"] == "progress"]
        assert progress and set(progress) == {SAMPLER} and prompt[SAMPLER]["class_type"] == "KSampler"
        started = [m["data"]["node"] for m in seen if m["type"] == "executing" and m["data"]["node"]]
        assert {DECODE, SAVE} <= set(started)
        # A job without a sampler works silently from start to end, however long its nodes take.
        _, seen = run_job(fake, {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "plain"}}})
        assert ending(seen)["type"] == "execution_success" and not [m for m in seen if m["type"] == "progress"]


def test_an_interrupt_lands_inside_a_sampler(fixtures_dir: Path, tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=2.0) as fake:
        _, seen = run_job(fake, image_prompt("stopped mid-sampling"),
                          on_message=interrupt_when("progress", SAMPLER, fake))
        end = ending(seen)
        assert end["type"] == "execution_interrupted" and end["data"]["node_id"] == SAMPLER
        assert SAMPLER not in end["data"]["executed"]
        assert fake.record_events("interrupt")[-1]["node"] == SAMPLER


def test_an_interrupt_of_a_silent_node_waits_for_its_end(fixtures_dir: Path, tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.1, node_seconds={"VAEDecode": 2.0, "SaveImage": 2.0}) as fake:
        _, seen = run_job(fake, image_prompt("a long decode"),
                          on_message=interrupt_when("executing", DECODE, fake))
        assert fake.record_events("interrupt")[-1]["node"] == DECODE  # it came while the decode ran...
        end = ending(seen)
        # ... which ran to its end: the interrupt landed when the next node was to start.
        assert end["type"] == "execution_interrupted" and end["data"]["node_id"] == SAVE
        assert DECODE in end["data"]["executed"] and SAVE not in end["data"]["executed"]
        # In the last node, an interrupt lands nowhere: the job finishes and saves its picture.
        pid, seen = run_job(fake, image_prompt("a long save"), on_message=interrupt_when("executing", SAVE, fake))
        assert fake.record_events("interrupt")[-1]["node"] == SAVE
        assert ending(seen)["type"] == "execution_success"
        history = requests.get(f"{fake.url}/history/{pid}", timeout=10).json()[pid]
        assert history["status"]["status_str"] == "success" and history["outputs"][SAVE]["images"]
