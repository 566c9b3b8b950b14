"""The fake ComfyUI answers as the real 0.8.0 does where a client can trip (issue 14 f, g, h), and
our client copes with each answer.

The raw answers are read with requests and websocket-client, as a stranger to our client would;
what each must look like was read from ComfyUI 0.8.0's server.py, execution.py and
comfy_execution/progress.py. A job is held inside its sampler (the fake's `hold` file) whenever a
test must act mid-job, so nothing here depends on how fast this machine is.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
import websocket

import common.services.comfyui.client as client_module
from common.services.comfyui.client import ComfyClient
from common.services.comfyui.errors import WorkflowRejectedError
from common.services.comfyui.messages import Progress
from tests.support.seed import image_prompt
from tests.fakes import FakeServer, start_fake_comfyui

pytestmark = pytest.mark.timeout(90)

WAIT = 30.0  # the longest any one message or answer may take: a generous bound, not a pace
SAMPLER, SAVE = "16", "21"  # in the seed system's character_location workflow
PROGRESS_KEYS = {"value", "max", "state", "node_id", "prompt_id", "display_node_id", "parent_node_id", "real_node_id"}
Message = dict[str, Any]


@pytest.fixture(scope="module")
def hold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hold") / "hold"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory, hold: Path) -> Iterator[FakeServer]:
    with start_fake_comfyui(tmp_path_factory.mktemp("comfy"), job_seconds=0.1, hold=hold) as server:
        yield server


def connect(fake: FakeServer, client_id: str) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://127.0.0.1:{fake.port}/ws?clientId={client_id}", timeout=WAIT,
                                       suppress_origin=True)


def read_until(ws: websocket.WebSocket, done: Callable[[Message], bool]) -> list[Message]:
    """Text messages up to and including the first that is `done` (binary previews skipped)."""
    messages: list[Message] = []
    while True:
        raw = ws.recv()  # a message missing for WAIT seconds fails the test with a timeout
        if isinstance(raw, bytes):
            continue
        messages.append(json.loads(raw))
        if done(messages[-1]):
            return messages


def finished(pid: str) -> Callable[[Message], bool]:
    return lambda m: m["type"] == "executing" and m["data"].get("node") is None and m["data"].get("prompt_id") == pid


def executing(node: str) -> Callable[[Message], bool]:
    return lambda m: m["type"] == "executing" and m["data"].get("node") == node


def post(fake: FakeServer, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{fake.url}/prompt", json=body, timeout=WAIT)


def eventually(check: Callable[[], Any]) -> Any:
    give_up = time.monotonic() + WAIT
    while not (result := check()):
        assert time.monotonic() < give_up, "the fake never got there"
        time.sleep(0.05)
    return result


# ------------------------------------------------------------------ (f) a reconnect mid-job

def test_a_reconnect_mid_job_hears_the_running_node_without_a_prompt_id(fake: FakeServer, hold: Path,
                                                                        fixtures_dir: Path) -> None:
    """server.py websocket_handler: on connect, `status`; then, if this client's job is inside a
    node, `{"type": "executing", "data": {"node": id}}` and nothing more."""
    cid = uuid.uuid4().hex
    hold.touch()
    try:
        first = connect(fake, cid)
        pid = post(fake, {"prompt": image_prompt("reconnect raw", (64, 48)), "client_id": cid}).json()["prompt_id"]
        read_until(first, executing(SAMPLER))
        again = connect(fake, cid)
        hello = read_until(again, lambda m: m["type"] == "executing")
    finally:
        hold.unlink(missing_ok=True)
    assert [m["type"] for m in hello] == ["status", "executing"]
    assert hello[0]["data"]["sid"] == cid
    assert hello[1] == {"type": "executing", "data": {"node": SAMPLER}}
    rest = read_until(again, finished(pid))  # the new socket hears the rest of the job, with its id
    assert {m["data"]["prompt_id"] for m in rest if m["type"] != "status"} == {pid}
    assert [m["data"]["node"] for m in rest if m["type"] == "executed"] == [SAVE]
    first.close()
    again.close()


class Heard:
    """What our client's socket reader was given and said, in order, with the progress it reported."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, on_bare: Callable[[], None] = lambda: None) -> None:
        self.timeline: list[tuple[str, Any, Any]] = []
        real = client_module.read_message

        def spy(pid: str, raw: str, on_progress: Any) -> str | None:
            message = json.loads(raw)
            at = len(self.timeline)
            self.timeline.append(("message", message, None))
            said = real(pid, raw, on_progress)  # may report progress, after this message
            self.timeline[at] = ("message", message, said)
            if message["type"] == "executing" and "prompt_id" not in message["data"]:
                on_bare()
            return said

        monkeypatch.setattr(client_module, "read_message", spy)

    def progress(self, report: Progress) -> None:
        self.timeline.append(("progress", report, None))

    def messages(self, kind: str) -> list[tuple[Message, Any]]:
        return [(m, said) for what, m, said in self.timeline if what == "message" and m["type"] == kind]


def test_our_client_listening_again_mid_job_keeps_watching_it_to_the_end(fake: FakeServer, hold: Path,
                                                                          fixtures_dir: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    client = ComfyClient(fake.url)
    heard = Heard(monkeypatch, on_bare=lambda: hold.unlink(missing_ok=True))  # told the node: let the job go on
    hold.touch()
    try:
        pid = client.queue(image_prompt("reconnect client", (64, 48)))
        watcher = connect(fake, client.client_id)  # our socket of the moment: it sees the job reach the sampler
        read_until(watcher, executing(SAMPLER))
        entry = client.wait(pid, timeout=WAIT, on_progress=heard.progress)  # listens again, mid-job
        watcher.close()
    finally:
        hold.unlink(missing_ok=True)
    bare = [(m, said) for m, said in heard.messages("executing") if "prompt_id" not in m["data"]]
    assert bare == [({"type": "executing", "data": {"node": SAMPLER}}, None)]  # neither an end nor news of ours
    reports = [p for what, p, _ in heard.timeline if what == "progress"]
    assert all(p.prompt_id == pid for p in reports) and any(p.max and p.value == p.max for p in reports)
    files = client.download_outputs(entry, tmp_path)
    assert [f.suffix for f in files] == [".png"] and files[0].stat().st_size > 0


def test_a_bare_executing_of_another_job_is_never_taken_for_ours(fake: FakeServer, hold: Path, fixtures_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One client, two jobs: waiting for the second while the first is inside its sampler hears the
    first's node with no id; it must not show as progress of the second."""
    client = ComfyClient(fake.url)
    heard = Heard(monkeypatch, on_bare=lambda: hold.unlink(missing_ok=True))
    hold.touch()
    try:
        first = client.queue(image_prompt("first of two", (64, 48)))
        watcher = connect(fake, client.client_id)
        read_until(watcher, executing(SAMPLER))
        second = client.queue(image_prompt("second of two", (64, 48)))
        client.wait(second, timeout=WAIT, on_progress=heard.progress)
        watcher.close()
    finally:
        hold.unlink(missing_ok=True)
    assert client.history(first) is not None
    kinds = [("start" if what == "message" and m["type"] == "execution_start" and m["data"]["prompt_id"] == second
              else what) for what, m, _ in heard.timeline]
    assert "start" in kinds and "progress" not in kinds[:kinds.index("start")]
    assert [m["data"] for m, _ in heard.messages("executing") if "prompt_id" not in m["data"]] == [{"node": SAMPLER}]


# ------------------------------------------------------------------ (g) cached outputs, progress_state

def test_progress_state_lists_started_nodes_only_and_a_cached_output_is_still_executed(fake: FakeServer,
                                                                                       fixtures_dir: Path) -> None:
    cid = uuid.uuid4().hex
    prompt = image_prompt("progress state", (64, 48))
    prompt["90"] = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
    ws, bystander = connect(fake, cid), connect(fake, uuid.uuid4().hex)
    pid = post(fake, {"prompt": prompt, "client_id": cid}).json()["prompt_id"]
    run = read_until(ws, finished(pid))
    ran = [m["data"]["node"] for m in run if m["type"] == "executing" and m["data"]["node"] is not None]
    reused = {n for m in run if m["type"] == "execution_cached" for n in m["data"]["nodes"]}  # loaders of the last job
    states = [m["data"] for m in run if m["type"] == "progress_state"]
    assert states and "90" not in ran  # an unconnected node never runs
    listed: set[str] = set()
    for data in states:
        assert data["prompt_id"] == pid
        for node_id, entry in data["nodes"].items():
            assert set(entry) == PROGRESS_KEYS and entry["state"] in ("running", "finished")
            assert (entry["node_id"], entry["display_node_id"], entry["real_node_id"]) == (node_id,) * 3
            assert entry["prompt_id"] == pid and entry["parent_node_id"] is None
        new = set(data["nodes"]) - listed
        assert len(new) <= 1 and set(data["nodes"]) >= listed  # nodes appear one at a time, as they start
        for node_id in new:
            assert data["nodes"][node_id] == {**data["nodes"][node_id], "state": "running", "value": 0, "max": 1}
        listed |= new
    assert len(states[0]["nodes"]) == 1 and listed == set(ran)
    assert all(e["state"] == "finished" and e["value"] == e["max"] for e in states[-1]["nodes"].values())
    for before, message in zip(run, run[1:]):  # each sampler step: its progress_state, then progress
        if message["type"] == "progress":
            step = before["data"]["nodes"][message["data"]["node"]]
            assert before["type"] == "progress_state" and (step["value"], step["max"]) == (message["data"]["value"], message["data"]["max"])
    first_output = [m["data"]["output"] for m in run if m["type"] == "executed"]
    # progress_state goes to the job's client only (progress.py sends it to server.client_id)
    busy: list[int] = []

    def idle_again(m: Message) -> bool:  # the queue status broadcast when our job is over
        if m["type"] != "status" or "sid" in m["data"]:
            return False
        busy.append(m["data"]["status"]["exec_info"]["queue_remaining"])
        return busy[-1] == 0 and any(busy)

    assert {m["type"] for m in read_until(bystander, idle_again)} == {"status"}

    again = post(fake, {"prompt": prompt, "client_id": cid}).json()["prompt_id"]
    cached_run = read_until(ws, finished(again))
    cached = [m["data"]["nodes"] for m in cached_run if m["type"] == "execution_cached"]
    assert cached and set(cached[0]) == set(ran) | reused
    assert not [m for m in cached_run if m["type"] == "executing" and m["data"]["node"] is not None]
    executed = [m["data"] for m in cached_run if m["type"] == "executed"]
    assert executed == [{"node": SAVE, "display_node": SAVE, "output": first_output[0], "prompt_id": again}]
    for data in (m["data"] for m in cached_run if m["type"] == "progress_state"):
        assert set(data["nodes"]) == {SAVE} and data["nodes"][SAVE]["state"] == "finished"
    history = requests.get(f"{fake.url}/history/{again}", timeout=WAIT).json()[again]
    assert history["outputs"] == {SAVE: first_output[0]}
    ws.close()
    bystander.close()


def test_our_client_downloads_the_outputs_of_a_fully_cached_job(fake: FakeServer, fixtures_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    client = ComfyClient(fake.url)
    prompt = image_prompt("cached job, client", (64, 48))
    first = client.run(prompt, tmp_path / "first", timeout=WAIT)
    heard = Heard(monkeypatch)
    again = client.run(prompt, tmp_path / "again", timeout=WAIT, on_progress=heard.progress, stall_timeout=WAIT,
                       adopt=False)  # a new job of the same graph: every node cached
    assert fake.record_events("job_done")[-1]["cached"] is True
    assert [said.kind for _, said in heard.messages("executed")] == ["sign"]  # news of our job, not its end
    assert [f.read_bytes() for f in again] == [f.read_bytes() for f in first]
    assert [p for what, p, _ in heard.timeline if what == "progress"] == []  # nothing ran, nothing to report


# ------------------------------------------------------------------ (h) prompt_id null, create_time, tracebacks

def test_a_null_prompt_id_becomes_None_and_queue_items_carry_their_create_time(fake: FakeServer, hold: Path,
                                                                                fixtures_dir: Path) -> None:
    cid = uuid.uuid4().hex
    before = int(time.time() * 1000)
    hold.touch()
    try:
        answer = post(fake, {"prompt": image_prompt("null id", (64, 48)), "prompt_id": None, "client_id": cid,
                             "extra_data": {"api_key_comfy_org": "secret", "mine": 1}}).json()
        assert answer["prompt_id"] == "None"
        behind = post(fake, {"prompt": image_prompt("behind null id", (64, 48))}).json()["prompt_id"]
        queue = eventually(lambda: (q := requests.get(f"{fake.url}/queue", timeout=WAIT).json())["queue_running"] and q)
    finally:
        hold.unlink(missing_ok=True)
    after = int(time.time() * 1000)
    [running], [pending] = queue["queue_running"], queue["queue_pending"]
    assert len(running) == len(pending) == 5 and (running[1], pending[1]) == ("None", behind)
    assert running[3] == {"mine": 1, "client_id": cid, "create_time": running[3]["create_time"]}  # the key is not kept
    assert isinstance(running[3]["create_time"], int) and before <= running[3]["create_time"] <= pending[3]["create_time"] <= after
    assert pending[3] == {"create_time": pending[3]["create_time"]}
    entry = eventually(lambda: requests.get(f"{fake.url}/history/None", timeout=WAIT).json().get("None"))
    assert entry["prompt"][1] == "None" and entry["prompt"][3] == running[3]
    eventually(lambda: requests.get(f"{fake.url}/history/{behind}", timeout=WAIT).json())


def test_validation_exceptions_carry_a_traceback(fake: FakeServer) -> None:
    """execution.py validate_inputs: a linked node whose own validation raises is blamed with
    exception_during_inner_validation; an output node that raises, exception_during_validation."""
    prompt = {
        "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["9", 0], "upscale_method": "nearest-exact", "scale_by": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inner"}},
    }
    resp = post(fake, {"prompt": prompt})
    assert resp.status_code == 400
    node = resp.json()["node_errors"]["2"]
    assert (node["class_type"], node["dependent_outputs"]) == ("ImageScaleBy", ["3"])
    [reason] = node["errors"]
    assert (reason["type"], reason["message"], reason["details"]) == (
        "exception_during_inner_validation", "Exception when validating inner node", "'9'")
    extra = reason["extra_info"]
    images_spec = requests.get(f"{fake.url}/object_info/SaveImage", timeout=WAIT).json()["SaveImage"]["input"]["required"]["images"]
    assert extra == {"input_name": "images", "input_config": [images_spec[0], images_spec[1] if len(images_spec) > 1 else {}],
                     "exception_message": "'9'", "exception_type": "KeyError", "traceback": extra["traceback"],
                     "linked_node": ["2", 0]}
    assert extra["traceback"] and all(isinstance(line, str) and line.startswith("  File ") for line in extra["traceback"])

    prompt["3"]["inputs"]["images"] = ["9", 0]
    [reason] = post(fake, {"prompt": prompt}).json()["node_errors"]["3"]["errors"]
    assert reason["type"] == "exception_during_validation" and set(reason["extra_info"]) == {"exception_type", "traceback"}
    assert reason["extra_info"]["traceback"][0].startswith("  File ")


def test_our_client_never_sends_a_null_prompt_id_and_names_a_broken_link(fake: FakeServer, fixtures_dir: Path,
                                                                         tmp_path: Path) -> None:
    client = ComfyClient(fake.url)
    queued = client.queue(image_prompt("own id", (64, 48)), prompt_id=None)
    client.wait(queued, timeout=WAIT)
    client.run(image_prompt("own id, run", (64, 48)), tmp_path, timeout=WAIT)
    ours = [e["prompt_id"] for e in fake.record_events("prompt") if e["client_id"] == client.client_id]
    assert len(ours) == 2 and queued in ours and all(str(uuid.UUID(p)) == p for p in ours)

    broken = {
        "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["9", 0], "upscale_method": "nearest-exact", "scale_by": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inner"}},
    }
    with pytest.raises(WorkflowRejectedError) as err:
        client.queue(broken)
    assert str(err.value).startswith("Node 2 (ImageScaleBy) links to a node the workflow does not have ('9'): ")
    assert "\n" not in str(err.value) and "File " not in str(err.value)
