"""The contract lane: our ComfyUI client and three pipeline steps against a real ComfyUI.

The fakes in tests/fakes answer as COMFYUI_API.md says the real server does; this lane checks
that claim where it matters, against the real thing, with model-free stand-in workflows (kept in
tests/contract/workflows) so it runs on a CPU box without a single model file. What each test
proves is the part of the protocol our code relies on: queueing, waiting over the WebSocket,
/history, /view downloads, uploads, the error answers, /interrupt and /free.

Run it (README, "Checking against a real ComfyUI"):
    COMFYUI_CONTRACT_URL=http://127.0.0.1:8188 python -m pytest tests/contract -n 0
or  COMFYUI_CONTRACT_DIR=~/ComfyUI COMFYUI_PYTHON=~/ComfyUI/venv/bin/python python -m pytest tests/contract -n 0
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from tests.contract.real_server import HOW, RealServer, configured, real_comfyui

if not configured():
    pytest.skip(HOW, allow_module_level=True)

from common.media import ffmpeg as media  # noqa: E402  (after the skip: nothing to import for a skipped lane)
from common.video import clips  # noqa: E402
from common.video.animation import slot_frames  # noqa: E402
from common.video.storyboard import read_storyboard  # noqa: E402
from common.services.comfyui.client import ComfyClient  # noqa: E402
from common.services.comfyui.errors import (  # noqa: E402
    JobInterruptedError, MissingModelError, MissingNodeError, WorkflowRejectedError,
)
from common.services.comfyui.workflow import Workflow  # noqa: E402
from tests.support.image_inputs import SMALL, image_pipeline  # noqa: E402
from tests.support.project import copy_pipeline, env_for, run_script  # noqa: E402
from tests.support.video_inputs import make_inputs  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parent / "workflows"
pytestmark = pytest.mark.timeout(600)  # a CPU server on a slow machine; every wait inside is bounded too


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    with real_comfyui(tmp_path_factory.mktemp("real-comfyui")) as running:
        yield running


@pytest.fixture
def client(server: RealServer) -> Iterator[ComfyClient]:
    with ComfyClient(server.url) as c:
        yield c


def _unique() -> int:
    """A colour no earlier run used, so ComfyUI's cache never answers instead of running the job."""
    return uuid.uuid4().int % 0xFFFFFF


def picture_prompt(width: int, height: int, prefix: str = "contract") -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": 1, "color": _unique()}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def test_system_stats_name_the_version(client: ComfyClient) -> None:
    system = client.system_stats()["system"]
    major, minor, *_ = (int(part) for part in system["comfyui_version"].split(".")[:2])
    assert (major, minor) >= (0, 8)
    info = client.object_info("SaveImage")
    assert info["SaveImage"]["output_node"] is True
    assert client.object_info("NoSuchNodeAnywhere") == {}


def test_a_picture_job_is_queued_watched_and_downloaded(client: ComfyClient, tmp_path: Path) -> None:
    seen = []
    files = client.run(_slow_prompt(blurs=4, side=1024), tmp_path, timeout=300, on_progress=seen.append)
    assert [f.suffix for f in files] == [".png"]
    with Image.open(files[0]) as img:
        assert img.size == (1024, 1024)
    # A job that runs a while is seen node by node over the WebSocket (an instant one may end
    # before the first message is read: /history alone then tells us it finished).
    assert {p.node for p in seen} >= {"1", "2", "3", "4"}, seen
    assert client.queue_state().keys() >= {"queue_running", "queue_pending"}


def test_the_same_job_again_is_taken_from_the_first_run(client: ComfyClient, tmp_path: Path) -> None:
    prompt = picture_prompt(48, 32)
    first = client.run(prompt, tmp_path / "a", timeout=120)
    again = client.run(prompt, tmp_path / "b", timeout=120)  # same graph, same id: adopted, not re-run
    assert [f.read_bytes() for f in again] == [f.read_bytes() for f in first]


def test_an_upload_into_a_subfolder_is_loaded_by_name(client: ComfyClient, tmp_path: Path) -> None:
    source = tmp_path / "start.png"
    colour = (_unique() >> 16, 40, 200)
    Image.new("RGB", (40, 24), colour).save(source)
    name = client.upload_image(source, subfolder="contract")
    assert name.startswith("contract/")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "contract-load"}},
    }
    (saved,) = client.run(prompt, tmp_path / "out", timeout=120)
    pixels = np.asarray(Image.open(saved).convert("RGB"), dtype=np.int16)
    assert pixels.shape == (24, 40, 3)
    assert np.abs(pixels - np.array(colour)).max() <= 1


def test_audio_and_video_outputs_download(client: ComfyClient, tmp_path: Path) -> None:
    audio = {
        "1": {"class_type": "EmptyAudio", "inputs": {"duration": 0.5 + _unique() % 100 / 1000, "sample_rate": 22050, "channels": 1}},
        "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "contract-audio"}},
    }
    (sound,) = client.run(audio, tmp_path / "audio", timeout=120)
    assert abs(media.probe(sound).duration - 0.5) < 0.2
    video = Workflow.load(WORKFLOWS / "animate_wan.json")
    video.set_size(64, 48)
    video.set_length(9)
    video.set_input_image(client.upload_image(_start_picture(tmp_path)))
    (clip,) = client.run(video.to_prompt(), tmp_path / "video", timeout=300)
    probe = media.probe(clip)
    assert probe.video.codec == "h264" and (probe.video.width, probe.video.height) == (64, 48)


def _start_picture(tmp_path: Path) -> Path:
    path = tmp_path / f"start-{_unique()}.png"
    Image.new("RGB", (80, 60), (_unique() % 256, 120, 30)).save(path)
    return path


def test_rejections_name_what_to_fix(client: ComfyClient) -> None:
    unknown = {"1": {"class_type": "NoSuchNodeAnywhere", "inputs": {}},
               "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    with pytest.raises(MissingNodeError, match="NoSuchNodeAnywhere"):
        client.queue(unknown)
    model = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "contract-missing.safetensors"}},
             "2": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
             "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
             "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    with pytest.raises(MissingModelError, match="contract-missing.safetensors"):
        client.queue(model)
    no_input = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}
    with pytest.raises(WorkflowRejectedError, match="images"):
        client.queue(no_input)
    missing_file = {"1": {"class_type": "LoadImage", "inputs": {"image": "contract-no-such-file.png"}},
                    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    with pytest.raises(WorkflowRejectedError, match="contract-no-such-file.png"):
        client.queue(missing_file)


def _slow_prompt(blurs: int = 40, side: int = 2048) -> dict[str, Any]:
    """Silent nodes in a row on a big picture: each takes a moment on a CPU, and an interrupt
    lands at the next node boundary, as it does on a real job."""
    prompt: dict[str, Any] = {"0": {"class_type": "EmptyImage",
                                    "inputs": {"width": side, "height": side, "batch_size": 1, "color": _unique()}}}
    for n in range(1, blurs + 1):
        prompt[str(n)] = {"class_type": "ImageBlur", "inputs": {"image": [str(n - 1), 0], "blur_radius": 9, "sigma": 3.0}}
    prompt["99"] = {"class_type": "SaveImage", "inputs": {"images": [str(blurs), 0], "filename_prefix": "contract-slow"}}
    return prompt


def _running(client: ComfyClient, prompt_id: str) -> bool:
    return any(item[1] == prompt_id for item in client.queue_state()["queue_running"])


def test_interrupt_stops_a_running_job_between_nodes(client: ComfyClient) -> None:
    prompt_id = client.queue(_slow_prompt())
    give_up = time.monotonic() + 120
    while not _running(client, prompt_id):
        assert time.monotonic() < give_up, "the job never started running"
        assert client.history(prompt_id) is None, "the job finished before it could be interrupted"
        time.sleep(0.05)
    client.interrupt(prompt_id)
    with pytest.raises(JobInterruptedError):
        client.wait(prompt_id, timeout=300)
    entry = client.history(prompt_id)
    assert entry is not None and entry["status"]["status_str"] == "error"
    assert not _running(client, prompt_id)


def test_a_silent_node_slower_than_the_stall_timeout_is_left_to_finish(client: ComfyClient, tmp_path: Path) -> None:
    """Blurs send no progress on a real server: the stall limit (for nodes that reported progress)
    must not interrupt them; only the silent-node limit could, and it is far away."""
    files = client.run(_slow_prompt(blurs=6, side=1536), tmp_path, timeout=300, stall_timeout=0.2)
    assert [f.suffix for f in files] == [".png"]


def test_preflight_reads_the_real_object_info(client: ComfyClient) -> None:
    """A loader whose node pack is missing is reported with its model file in one go; a node that
    feeds no output is ignored, as the server itself ignores it."""
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "contract-absent.safetensors"}},
        "2": {"class_type": "NoSuchLoaderPack", "inputs": {"clip_name": "contract-clip.safetensors"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["2", 0]}},
        "4": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["3", 0], "negative": ["3", 0],
                                                   "latent_image": ["5", 0], "seed": 1, "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "x"}},
        "8": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "contract-unused.pth"}},  # feeds nothing
    }
    said = " | ".join(str(p) for p in client.find_problems(prompt))
    assert "NoSuchLoaderPack" in said and "contract-clip.safetensors" in said
    assert "contract-absent.safetensors" in said
    assert "contract-unused.pth" not in said


def test_free_is_accepted_while_a_job_runs(client: ComfyClient, tmp_path: Path) -> None:
    done: list[list[Path]] = []
    worker = threading.Thread(target=lambda: done.append(client.run(picture_prompt(64, 64), tmp_path, timeout=120)))
    worker.start()
    with ComfyClient(client.base_url) as other:
        other.free()
    worker.join(timeout=180)
    assert done and done[0][0].suffix == ".png"


# ---------------------------------------------------------------- pipeline steps, as a user runs them
def _comfy_env(server: RealServer, **settings: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=server.url, LM_STUDIO_CMD="no-such-lms-command",
                   COMFYUI_QUEUE_DEPTH="1", **settings)


def _use_stand_ins(pipeline: Path, *names: str) -> None:
    for name, stand_in in (n.split("=") for n in names):
        (pipeline / "workflow" / name).write_text((WORKFLOWS / stand_in).read_text(encoding="utf-8"), encoding="utf-8")


def test_gen_image_characters_and_scenes(server: RealServer, tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    _use_stand_ins(pipeline, "character_location.json=picture.json", "scene.json=picture.json")
    env = _comfy_env(server, **SMALL, COMFYUI_TIMEOUT_IMAGE="300")
    for script in ("2.character.py", "2.location.py", "3.scene.py"):
        result = run_script(pipeline, script, env=env, timeout=600)
        assert result.returncode == 0, script + "\n" + result.stdout[-2000:] + result.stderr[-3000:]
    out = pipeline / "output"
    characters = sorted((out / "characters").glob("*.png"))
    scenes = sorted((out / "scene").glob("*.png"))
    assert len(characters) == 2 and len(scenes) == 3
    with Image.open(characters[0]) as img:
        assert img.size == (int(SMALL["CHARACTER_WIDTH"]), int(SMALL["CHARACTER_HEIGHT"]))
    with Image.open(scenes[0]) as img:
        assert img.size == (int(SMALL["IMAGE_WIDTH"]), int(SMALL["IMAGE_HEIGHT"]))
    state = json.loads((out / "tracking" / "3.scene.state.json").read_text(encoding="utf-8"))
    assert len(state["items"]) == 3
    again = run_script(pipeline, "3.scene.py", env=env, timeout=300)  # finished work is kept
    assert again.returncode == 0 and [p.stat().st_mtime_ns for p in scenes] == \
        [p.stat().st_mtime_ns for p in sorted((out / "scene").glob("*.png"))]


def test_gen_video_animates_scenes(server: RealServer, tmp_path: Path) -> None:
    make_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    _use_stand_ins(pipeline, "animate_wan.json=animate_wan.json")
    assert run_script(pipeline, "1.story.py", env=env_for(PIPELINE_ENGINE="offline")).returncode == 0
    env = _comfy_env(server, VIDEO_WORKFLOW="wan", VIDEO_WIDTH="64", VIDEO_HEIGHT="48", FRAMES_PER_SECOND="8",
                     MODEL_MAX_SECONDS='{"wan": 5}', ENABLE_MOTION="false",
                     FIRST_LAST_FRAME="false")  # the stand-in has no end-picture branch
    result = run_script(pipeline, "3.animate.py", env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    board = read_storyboard(pipeline)
    assert board.shots
    for shot in board.shots:  # every slot filled exactly, the chained 12 s scene included
        clip = pipeline / "output" / "animation" / f"{shot.clip}.mp4"
        probe = media.probe(clip)
        assert (probe.video.width, probe.video.height) == (64, 48)
        assert clips.decoded_frame_count(clip) == slot_frames(shot.start, shot.end, 8)


# ---------------------------------------------------------------- what a Wan S2V chunk chain relies on
# tests/support/s2v_checks.py: the same checks tests/test_fake_comfyui_s2v.py runs against the fake.

def test_s2v_a_wav_line_and_latent_files_go_through(client: ComfyClient, tmp_path: Path) -> None:
    """Observed on the real 0.8.0 (CPU, no models): LoadAudio -> SaveAudio of a 16 kHz mono 16-bit WAV
    gives a 16 kHz mono FLAC of the same samples. SaveLatent writes `latents/<prefix>_00001_.latent`,
    ui {"latents": [...]}: a safetensors file whose compact JSON header (padded with spaces to 8 bytes)
    holds `__metadata__` {"prompt": the prompt as JSON, LoadLatent nodes with an `is_changed` hash},
    `latent_format_version_0` F32 [0] and `latent_tensor` F32 [b, 16, T, h/8, w/8]; it uploads through
    /upload/image and LoadLatent lists it. EmptyHunyuanLatentVideo's length 10 (not 4n+1) is taken: T = 3."""
    from tests.support import s2v_checks

    s2v_checks.check_wav_round_trip(client, tmp_path / "wav")
    s2v_checks.check_latent_round_trip(client, tmp_path / "latent")


def test_s2v_a_missing_latent_or_line_is_refused_by_name(client: ComfyClient) -> None:
    """custom_validation_failed "latent - Invalid latent file: <name>" (LoadLatent's VALIDATE_INPUTS),
    "audio - Invalid audio file: <name>"; extra_info holds only input_name."""
    from tests.support import s2v_checks

    s2v_checks.check_missing_latent(client)
    s2v_checks.check_missing_audio(client)


def test_s2v_run_time_failures_carry_the_real_exception(client: ComfyClient, tmp_path: Path) -> None:
    """Every exception_message ends in "\n" (execution.py: "{ex}\n{tips}"). A text .wav fails in
    LoadAudio with av.error.InvalidDataError "[Errno 1094995529] Invalid data found when processing
    input: '<input dir>/<name>'" (a PNG named .wav: ValueError "No audio stream found in the file.");
    a text .latent fails in LoadLatent with safetensors._safetensors_rust.SafetensorError "Error while
    deserializing header: header too large"; LatentConcat(t) of widths 8 and 4 with RuntimeError "Sizes
    of tensors must match except in dimension 2. Expected size 8 but got size 4 for tensor number 1 in
    the list.", of a 5-D and a 4-D latent with "Tensors must have same number of dimensions: got 5 and 4"."""
    from tests.support import s2v_checks

    s2v_checks.check_audio_that_is_not_audio(client, tmp_path / "not-audio")
    s2v_checks.check_latent_that_is_not_safetensors(client, tmp_path / "not-safetensors")
    s2v_checks.check_latents_that_do_not_fit(client, tmp_path / "misfit")


def test_s2v_the_speaking_chunk_graphs_are_refused_only_for_their_models(client: ComfyClient, tmp_path: Path) -> None:
    """Our first, middle (Extend + LoadLatent + LatentConcat + SaveLatent) and last chunk graphs, with real
    uploads: the real server (no models) finds nothing wrong with them but the four model files."""
    from tests.support import s2v_checks

    s2v_checks.check_chunk_graphs_fail_only_for_models(client, tmp_path)
