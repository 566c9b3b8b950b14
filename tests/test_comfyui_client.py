"""ComfyClient against the fake ComfyUI (a real process speaking the real protocol)."""
from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path
from typing import Iterator

import av
import pytest
import requests
from PIL import Image

import common.services.comfyui.client as client_module
from common.services.comfyui.client import ComfyClient
from common.services.comfyui.errors import (
    ExecutionError,
    JobInterruptedError,
    JobLostError,
    JobTimeoutError,
    MissingModelError,
    MissingNodeError,
    OutOfMemoryJobError,
    WorkflowRejectedError,
)
from common.services.comfyui.messages import Progress
from common.services.comfyui.workflow import Workflow
from common.run.errors import JobError, ServiceError
from tests.support.seed import image_prompt
from tests.fakes import FakeServer, start_fake_comfyui
from tests.support.project import REPO

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    with start_fake_comfyui(tmp_path_factory.mktemp("comfy"), job_seconds=0.1) as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_image_job_end_to_end(fake: FakeServer, fixtures_dir: Path, tmp_path: Path) -> None:
    client = ComfyClient(fake.url)
    assert client.is_up()
    assert client.system_stats()["system"]["comfyui_version"]
    seen: list[Progress] = []
    files = client.run(image_prompt("a red door", (96, 64)), tmp_path / "a", timeout=30, on_progress=seen.append)
    assert [f.suffix for f in files] == [".png"] and files[0].parent == tmp_path / "a"
    with Image.open(files[0]) as img:
        assert img.size == (96, 64)
    assert any(p.max > 0 and p.value == p.max for p in seen)  # sampler steps reported
    other = client.run(image_prompt("a blue window", (96, 64)), tmp_path / "b", timeout=30)
    assert files[0].read_bytes() != other[0].read_bytes()  # the prompt shows in the picture


def test_identical_resubmission_is_cached_with_the_same_files(fake: FakeServer, fixtures_dir: Path, tmp_path: Path) -> None:
    client = ComfyClient(fake.url)
    prompt = image_prompt("cached twice", (64, 64))
    first_id = client.queue(prompt)
    first = client.wait(first_id, timeout=30)
    second_id = client.queue(prompt)
    second = client.wait(second_id, timeout=30)
    assert client.output_items(first) == client.output_items(second)
    cached = [m for m in second["status"]["messages"] if m[0] == "execution_cached"][0][1]["nodes"]
    assert set(cached) == set(prompt)
    assert client.download_outputs(second, tmp_path)[0].stat().st_size > 0


def test_audio_job(fake: FakeServer, fixtures_dir: Path, tmp_path: Path) -> None:
    wf = Workflow.load(fixtures_dir / "gen.audio/workflow/sfx.json")
    wf.set_prompt("rain on a window")
    wf.set_seconds(1.5)
    files = ComfyClient(fake.url).run(wf.to_prompt(), tmp_path, timeout=30)
    assert [f.suffix for f in files] == [".flac"]
    with av.open(str(files[0])) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "flac"
        seconds = float(container.duration) / av.time_base
    assert 1.3 < seconds < 1.7


def test_video_job_with_uploaded_start_image(fake: FakeServer, fixtures_dir: Path, tmp_path: Path) -> None:
    client = ComfyClient(fake.url)
    still = tmp_path / "scene_1.1.png"
    Image.new("RGB", (80, 48), (200, 120, 40)).save(still)
    wf = Workflow.load(fixtures_dir / "gen.video/workflow/animate.json")
    wf.set_input_image(client.upload_image(still), required_for="image-to-video")
    wf.set_prompt("slow pan")
    wf.set_size(64, 64)
    wf.set_length(9)
    wf.set_fps(12)
    files = client.run(wf.to_prompt(), tmp_path / "out", timeout=60)
    videos = [f for f in files if f.suffix == ".mp4"]
    frames = [f for f in files if f.suffix == ".png"]
    assert len(videos) == 1 and len(frames) == 9  # VHS_VideoCombine (gifs) + SaveImage of every frame
    with av.open(str(videos[0])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 64)
        assert sum(1 for _ in container.decode(stream)) == 9


def test_upload_same_name_different_content_is_renamed(fake: FakeServer, tmp_path: Path) -> None:
    client = ComfyClient(fake.url)
    path = tmp_path / "face.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    assert client.upload_image(path) == "face.png"
    assert client.upload_image(path) == "face.png"  # identical content keeps its name
    Image.new("RGB", (8, 8), (9, 9, 9)).save(path)
    assert client.upload_image(path) == "face (1).png"
    assert client.upload_image(path, name="other.png") == "other.png"
    uploads = [e for e in fake.record_events("upload") if e["name"].startswith("face")]
    assert [e["name"] for e in uploads][-1] == "face (1).png"


def test_a_missing_input_file_is_named_from_the_node_and_a_subfolder_upload_loads(fake: FakeServer,
                                                                                  tmp_path: Path) -> None:
    """The real server's custom_validation_failed carries only input_name (no received_value), so the
    sentence takes the file from the node's own inputs; an upload into a subfolder loads as `sub/name`."""
    client = ComfyClient(fake.url)
    wf = Workflow.load(REPO / "gen.video/workflow/animate.json")
    wf.set_input_image("never-uploaded.png", required_for="image-to-video")
    answer = requests.post(f"{fake.url}/prompt", json={"prompt": wf.to_prompt()}, timeout=10).json()
    reasons = [r for node in answer["node_errors"].values() for r in node["errors"]]
    assert [r["extra_info"] for r in reasons if r["type"] == "custom_validation_failed"] == [{"input_name": "image"}]
    with pytest.raises(WorkflowRejectedError, match="needs the file never-uploaded.png, which is not in"):
        client.queue(wf.to_prompt())
    still = tmp_path / "start.png"
    Image.new("RGB", (16, 16), (4, 5, 6)).save(still)
    name = client.upload_image(still, subfolder="scenes")
    assert name == "scenes/start.png"
    wf.set_input_image(name)
    wf.set_size(64, 64)
    wf.set_length(5)
    assert [f.suffix for f in client.run(wf.to_prompt(), tmp_path / "out", timeout=30)].count(".mp4") == 1


def test_unknown_node_class_names_the_class_and_the_missing_pack(fake: FakeServer, fixtures_dir: Path) -> None:
    prompt = image_prompt("x", (96, 64))
    prompt["50"] = {"class_type": "NoSuchUpscaler", "inputs": {}}
    with pytest.raises(MissingNodeError) as err:
        ComfyClient(fake.url).queue(prompt)
    text = str(err.value)
    assert "NoSuchUpscaler" in text and "node 50" in text and "custom node pack is missing" in text
    assert "\n" not in text


def test_missing_model_names_node_input_file_and_folder(fake: FakeServer, fixtures_dir: Path) -> None:
    prompt = image_prompt("x", (96, 64))
    prompt["41"]["inputs"]["unet_name"] = "flux1-dev-Q4_0.gguf"
    with pytest.raises(MissingModelError) as err:
        ComfyClient(fake.url).queue(prompt)
    text = str(err.value)
    assert "flux1-dev-Q4_0.gguf" in text and "node 41 (UnetLoaderGGUF)" in text and "unet_name" in text
    assert "ComfyUI/models/unet" in text
    assert err.value.folder == "unet" and err.value.model_file == "flux1-dev-Q4_0.gguf"


def test_partly_valid_prompt_is_refused_and_its_valid_half_cancelled(fake: FakeServer, fixtures_dir: Path) -> None:
    # ComfyUI answers 200 and queues the valid outputs; the node_errors must still stop us.
    prompt = image_prompt("half", (96, 64))
    prompt["60"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}}
    prompt["61"] = {"class_type": "VAEDecode", "inputs": {"samples": ["16", 0], "vae": ["60", 2]}}
    prompt["62"] = {"class_type": "SaveImage", "inputs": {"images": ["61", 0], "filename_prefix": "half"}}
    with pytest.raises(MissingModelError) as err:
        ComfyClient(fake.url).queue(prompt)
    assert "ComfyUI/models/checkpoints" in str(err.value)
    assert err.value.prompt_id in [e["prompt_id"] for e in fake.record_events("interrupt")]


def test_find_problems_before_queueing(fake: FakeServer, fixtures_dir: Path) -> None:
    client = ComfyClient(fake.url)
    prompt = Workflow.load(fixtures_dir / "gen.audio/workflow/sfx.json").to_prompt()
    assert client.find_problems(prompt) == []
    prompt["4"]["inputs"]["ckpt_name"] = "nope.safetensors"
    prompt["90"] = {"class_type": "MysteryNode", "inputs": {}}
    problems = [str(p) for p in client.find_problems(prompt)]
    assert len(problems) == 2
    assert any("nope.safetensors" in p and "ComfyUI/models/checkpoints" in p for p in problems)
    assert any("MysteryNode" in p for p in problems)


def test_free_and_plain_interrupt(fake: FakeServer) -> None:
    client = ComfyClient(fake.url)
    client.free()
    client.interrupt()
    assert fake.record_events("free")[-1]["unload_models"] is True


def test_connection_refused_is_one_plain_sentence() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = ComfyClient(url, request_timeout=2)
    assert not client.is_up()
    with pytest.raises(ServiceError) as err:
        client.queue({"1": {"class_type": "EmptyImage", "inputs": {}}})
    assert str(err.value) == (
        f"ComfyUI is not answering at {url}: start it, or set COMFYUI_DIR so the pipeline can start it, then run again."
    )


@pytest.mark.parametrize("ws_mode", ["refuse", "drop"])
def test_waits_through_history_when_the_socket_fails(ws_mode: str, fixtures_dir: Path, tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, ws=ws_mode, job_seconds=0.3) as server:
        files = ComfyClient(server.url).run(image_prompt(f"no socket {ws_mode}", (96, 64)), tmp_path / "out", timeout=30)
        assert len(files) == 1 and files[0].stat().st_size > 0
        assert server.jobs_run("success") == 1


def test_execution_error_then_oom_are_told_apart(fixtures_dir: Path, tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, fail_mode="execution_error", fail_jobs=1) as server:
        client = ComfyClient(server.url)
        with pytest.raises(ExecutionError) as err:
            client.run(image_prompt("boom", (96, 64)), tmp_path / "o", timeout=30)
        assert not isinstance(err.value, OutOfMemoryJobError)
        assert "node 16 (KSampler)" in str(err.value) and "RuntimeError" in str(err.value)
        assert client.run(image_prompt("fine now", (96, 64)), tmp_path / "o", timeout=30)


def test_out_of_memory_is_recognisable(fixtures_dir: Path, tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, fail_mode="oom", fail_jobs=1) as server:
        client = ComfyClient(server.url)
        with pytest.raises(OutOfMemoryJobError) as err:
            client.run(image_prompt("too big", (96, 64)), tmp_path / "o", timeout=30)
        assert isinstance(err.value, JobError)
        assert "ran out of GPU memory in node 16 (KSampler)" in str(err.value)
        assert err.value.exception_type == "torch.OutOfMemoryError"
        assert client.run(image_prompt("retry", (96, 64)), tmp_path / "o", timeout=30)  # the retry works


def test_ctrl_c_interrupts_the_job_timeout_interrupts_and_a_restart_loses_it(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with start_fake_comfyui(tmp_path, fail_mode="hang") as server:
        client = ComfyClient(server.url)

        def press_ctrl_c(progress: Progress) -> None:
            if progress.max:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            client.run(image_prompt("ctrl c", (96, 64)), tmp_path / "o", timeout=30, on_progress=press_ctrl_c)
        pid = server.record_events("prompt")[-1]["prompt_id"]
        assert pid in [e["prompt_id"] for e in server.record_events("interrupt")]
        with pytest.raises(JobInterruptedError):
            client.wait(pid, timeout=10)  # the server stopped it: its history says interrupted

        with pytest.raises(JobTimeoutError) as late:
            client.run(image_prompt("too slow", (96, 64)), tmp_path / "o", timeout=1.0)
        with pytest.raises(JobInterruptedError):
            client.wait(late.value.prompt_id, timeout=10)  # giving up also stopped it on the server
        assert server.jobs_run("interrupted") == 2

        stuck = client.queue(image_prompt("lost on restart", (96, 64)))
        port = server.port
        server.kill()
    monkeypatch.setattr(client_module, "_SERVER_GONE_AFTER", 0.5)
    with pytest.raises(ServiceError, match="stopped answering"):
        client.wait(stuck, timeout=10)
    with start_fake_comfyui(tmp_path, port=port) as again:
        with pytest.raises(JobLostError, match="submit the job again"):
            ComfyClient(again.url).wait(stuck, timeout=20)


class _EvilView(http.server.BaseHTTPRequestHandler):
    """A server that hands out any file name asked for: the client must still stay in its folder."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"payload:" + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_hostile_output_names_cannot_escape_the_destination(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EvilView)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dest = tmp_path / "dest" / "inner"
        names = ["../../escape.png", "/tmp/absolute.png", "..\\..\\windows.png", "sub/dir/deep.png", "..", ".hidden",
                 "ok.png", "ok.png", "C:\\evil\\drive.png"]
        entry = {"outputs": {"9": {"images": [{"filename": n, "subfolder": "../..", "type": "output"} for n in names]}}}
        files = ComfyClient(f"http://127.0.0.1:{server.server_port}").download_outputs(entry, dest)
    finally:
        server.shutdown()
        server.server_close()
    assert len(files) == len(names)
    assert all(f.parent == dest.resolve() for f in files)
    assert len({f.name for f in files}) == len(names)
    assert {f.name for f in files} >= {"escape.png", "absolute.png", "windows.png", "deep.png", "ok.png", "ok-2.png", "drive.png"}
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and dest.resolve() not in p.resolve().parents]
    assert outside == []
    assert not Path("/tmp/absolute.png").exists() or Path("/tmp/absolute.png").read_bytes()[:8] != b"payload:"
    assert not any(sep in f.name for f in files for sep in ("/", "\\", ".."))
