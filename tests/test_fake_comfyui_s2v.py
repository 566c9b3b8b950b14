"""The fake ComfyUI runs Wan 2.2 S2V speaking shots as the real 0.8.0 would shape them.

A speaking shot is made in chunks from gen.video/workflow/speak_wan.json: every chunk but the last
saves its accumulated latent (SaveLatent), which the client downloads and uploads again for the
next chunk (LoadLatent -> WanSoundImageToVideoExtend.video_latent, and LatentConcat(dim "t") of it
with the new samples); the last decodes the whole latent to video. The fake must give what the real
chain gives: T = (length-1)//4 + 1 latent frames a chunk (length is not checked against 4n+1), a
decoded video of 4(T1+T2+...-1)+1 frames at the latent's size times 8, and a mouth that moves with
the line's loudness (the rule in tests/fakes/comfyui/media.py), so a test of the client can see
lip-sync. The model-free checks shared with the contract lane (tests/support/s2v_checks.py) run
here against the fake, as they run there against the real server.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np
import pytest
import requests
from PIL import Image

from common.services.comfyui.client import ComfyClient
from common.services.comfyui.errors import ExecutionError, MissingModelError, WorkflowRejectedError
from tests.fakes import FakeServer, start_fake_comfyui
from tests.support import s2v_checks
from tests.support.seed import REPO

pytestmark = pytest.mark.timeout(120)

SPEAK = json.loads((REPO / "gen.video/workflow/speak_wan.json").read_text(encoding="utf-8"))
EXCERPT = json.loads((REPO / "tests/fixtures/comfyui-0.8.0-object_info.excerpt.json").read_text(encoding="utf-8"))
S2V_CLASSES = ("WanSoundImageToVideo", "WanSoundImageToVideoExtend", "AudioEncoderEncode", "AudioEncoderLoader", "LoadAudio",
               "EmptyHunyuanLatentVideo", "LatentConcat", "SaveLatent", "LoadLatent")
# The line: silence, loud, quiet, silence, half (until seconds, peak amplitude).
LINE = [(0.5, 0.0), (1.0, 0.9), (1.5, 0.3), (2.0, 0.0), (2.5, 0.6)]
WAIT = 60.0


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    with start_fake_comfyui(tmp_path_factory.mktemp("comfy"), job_seconds=0.02) as server:
        yield server


@pytest.fixture
def client(fake: FakeServer) -> Iterator[ComfyClient]:
    with ComfyClient(fake.url) as c:
        yield c


# ------------------------------------------------------------------ the chunk graphs, as the client edits them
def first_chunk(audio: str, image: str, size: tuple[int, int], length: int) -> dict[str, Any]:
    prompt = copy.deepcopy(SPEAK)
    prompt["58"]["inputs"]["audio"] = audio
    prompt["52"]["inputs"]["image"] = image
    prompt["55"]["inputs"].update(width=size[0], height=size[1], length=length)
    return prompt


def extension_chunk(audio: str, image: str, latent: str, length: int) -> dict[str, Any]:
    """WanSoundImageToVideoExtend from the loaded latent; the samples joined to it before the decode."""
    prompt = first_chunk(audio, image, (0, 0), length)
    s2v = prompt["55"]
    s2v["class_type"] = "WanSoundImageToVideoExtend"
    for name in ("width", "height", "batch_size"):
        del s2v["inputs"][name]
    s2v["inputs"]["video_latent"] = ["70", 0]
    prompt["70"] = {"class_type": "LoadLatent", "inputs": {"latent": latent}}
    prompt["71"] = {"class_type": "LatentConcat", "inputs": {"samples1": ["70", 0], "samples2": ["3", 0], "dim": "t"}}
    prompt["8"]["inputs"]["samples"] = ["71", 0]
    return prompt


def keep_latent(prompt: dict[str, Any], prefix: str = "latents/s2v") -> dict[str, Any]:
    """A chunk that is not the last: no decode, no video; SaveLatent of the accumulated latent."""
    accumulated = prompt["8"]["inputs"]["samples"]
    for node in ("8", "59", "60"):
        del prompt[node]
    prompt["80"] = {"class_type": "SaveLatent", "inputs": {"samples": accumulated, "filename_prefix": prefix}}
    return prompt


def start_image(tmp_path: Path) -> Path:
    path = tmp_path / "start.png"
    Image.new("RGB", (80, 60), (90, 140, 200)).save(path)  # not the video's size: the latent sets that
    return path


def frames_of(clip: Path) -> np.ndarray:
    with av.open(str(clip)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def mouth_opening(frame: np.ndarray) -> float:
    """The mouth rule read back (tests/fakes/comfyui/media.py): the region's mean value / 255."""
    h, w, _ = frame.shape
    region = frame[3 * h // 4 - h // 8:3 * h // 4 + h // 8, w // 4:3 * w // 4]
    return float(region.mean() / 255)


def loudness(wav: Path, frame: int) -> float:
    """min(1, sqrt(2) * RMS) of the line around frame / 16 s, computed here from the file itself."""
    samples, rate, _ = s2v_checks.read_audio(wav)
    t = frame / 16
    window = samples[max(0, round((t - 1 / 32) * rate)):round((t + 1 / 32) * rate)] / 32768
    return min(1.0, math.sqrt(2 * float(np.mean(window ** 2)))) if len(window) else 0.0


# ------------------------------------------------------------------ the node classes
def test_the_s2v_classes_answer_as_the_real_server_lists_them(fake: FakeServer) -> None:
    for cls in S2V_CLASSES:
        entry = requests.get(f"{fake.url}/object_info/{cls}", timeout=WAIT).json()[cls]
        for name, decl in entry["input"]["required"].items():  # file lists: this server's files, the real had none
            if decl[0] == "COMBO" and name in ("audio_encoder_name", "audio"):
                decl[1]["options"] = []
            elif name == "latent":
                decl[0] = []
        assert entry == EXCERPT[cls], cls


def test_the_s2v_models_are_there_by_default_and_a_missing_encoder_is_named(tmp_path: Path, client: ComfyClient) -> None:
    assert "wan2.2_s2v_14B_fp8_scaled.safetensors" in requests.get(f"{client.base_url}/models/diffusion_models", timeout=WAIT).json()
    assert requests.get(f"{client.base_url}/models/audio_encoders", timeout=WAIT).json() == ["wav2vec2_large_english_fp16.safetensors"]
    assert client.find_problems(SPEAK) == []
    with start_fake_comfyui(tmp_path, missing_model=["wav2vec2_large_english_fp16.safetensors"]) as bare:
        with ComfyClient(bare.url) as other:
            audio = other.upload_image(s2v_checks.write_wav(tmp_path / "line.wav", 1.0))
            image = other.upload_image(start_image(tmp_path))
            with pytest.raises(MissingModelError, match="wav2vec2_large_english_fp16.safetensors") as missing:
                other.queue(first_chunk(audio, image, (64, 48), 17))
    assert missing.value.folder == "audio_encoders"


# ------------------------------------------------------------------ a speaking shot in two chunks
def test_two_chunks_give_the_joined_frame_count_at_the_latent_size_with_the_mouth_on_the_line(
        client: ComfyClient, fake: FakeServer, tmp_path: Path) -> None:
    wav = s2v_checks.write_wav(tmp_path / "line.wav", 2.5, segments=LINE)
    audio, image = client.upload_image(wav), client.upload_image(start_image(tmp_path))
    (saved,) = client.run(keep_latent(first_chunk(audio, image, (128, 96), 17)), tmp_path / "one", timeout=WAIT)
    header, _ = s2v_checks.latent_header(saved)
    assert saved.name.startswith("s2v_") and saved.suffix == ".latent"
    assert header["latent_tensor"]["shape"] == [1, 16, 5, 12, 16]  # T1 = (17-1)//4 + 1
    latent = client.upload_image(saved)
    (clip,) = client.run(extension_chunk(audio, image, latent, 13), tmp_path / "two", timeout=WAIT)
    frames = frames_of(clip)
    assert frames.shape == (4 * (5 + 4 - 1) + 1, 96, 128, 3)  # T2 = 4: 33 frames, the latent's size x 8
    with av.open(str(clip)) as container:
        assert container.streams.video[0].average_rate == 16
    openings = [mouth_opening(f) for f in frames]
    for i, opening in enumerate(openings):  # the documented rule, to a row of the mouth (and H.264's blur)
        assert abs(opening - loudness(wav, i)) <= 0.1, (i, opening, loudness(wav, i))
    silent, loud, quiet, silent_again = openings[4], openings[12], openings[20], openings[28]
    assert silent < 0.05 and silent_again < 0.05 and loud > 0.8 and 0.2 < quiet < 0.4
    extend = [p for p in fake.prompts() if "70" in p][-1]
    assert extend["55"]["class_type"] == "WanSoundImageToVideoExtend" and extend["58"]["inputs"]["audio"] == audio


@pytest.mark.parametrize("length, frames", [(77, 77), (10, 9), (1, 1)])
def test_a_first_and_last_chunk_decodes_the_real_frame_count_whatever_the_length(
        client: ComfyClient, tmp_path: Path, length: int, frames: int) -> None:
    """The widget's step of 4 is a UI hint: any length is queued, and T = (length-1)//4 + 1."""
    audio = client.upload_image(s2v_checks.write_wav(tmp_path / "line.wav", 1.0))
    image = client.upload_image(start_image(tmp_path))
    (clip,) = client.run(first_chunk(audio, image, (70, 50), length), tmp_path / "out", timeout=WAIT)
    assert frames_of(clip).shape == (frames, 48, 64, 3)  # 70x50 -> a 8x6 latent -> 64x48


def test_a_latent_uploaded_again_under_the_same_name_is_read_again(client: ComfyClient, tmp_path: Path) -> None:
    """LoadLatent's IS_CHANGED hashes the file: the same graph on a replaced file runs again (on the
    server; our client would adopt the first job, whose id is the graph's, so it is told not to)."""
    shapes = []
    for length in (9, 21):
        source = {"src": {"class_type": "EmptyHunyuanLatentVideo",
                          "inputs": {"width": 32, "height": 32, "length": length, "batch_size": 1}}}
        made = s2v_checks.save_latent(client, source, tmp_path / f"made{length}", "latents/again")
        name = client.upload_image(made, "again.latent", overwrite=True)
        loaded = {"src": {"class_type": "LoadLatent", "inputs": {"latent": name}}}
        header, _ = s2v_checks.latent_header(s2v_checks.save_latent(client, loaded, tmp_path / f"read{length}", "latents/read",
                                                                    adopt=False))
        shapes.append(header["latent_tensor"]["shape"])
    assert shapes == [[1, 16, 3, 4, 4], [1, 16, 6, 4, 4]]


# ------------------------------------------------------------------ refusals and failures
def test_a_chunk_whose_latent_or_line_is_missing_is_refused_by_name(client: ComfyClient, tmp_path: Path) -> None:
    audio, image = client.upload_image(s2v_checks.write_wav(tmp_path / "line.wav", 1.0)), client.upload_image(start_image(tmp_path))
    with pytest.raises(WorkflowRejectedError, match="gone.latent") as rejected:
        client.queue(extension_chunk(audio, image, "gone.latent", 13))
    assert rejected.value.node_errors["70"]["errors"][0]["details"] == "latent - Invalid latent file: gone.latent"
    with pytest.raises(WorkflowRejectedError, match="gone.wav") as rejected:
        client.queue(first_chunk("gone.wav", image, (64, 48), 17))
    assert rejected.value.node_errors["58"]["errors"][0]["details"] == "audio - Invalid audio file: gone.wav"
    s2v_checks.check_missing_latent(client)
    s2v_checks.check_missing_audio(client)


def test_a_line_that_is_not_audio_fails_the_chunk_in_loadaudio(client: ComfyClient, tmp_path: Path) -> None:
    text = tmp_path / "line.wav"
    text.write_text("not a sound\n")
    audio, image = client.upload_image(text), client.upload_image(start_image(tmp_path))
    with pytest.raises(ExecutionError) as failed:
        client.run(first_chunk(audio, image, (64, 48), 17), tmp_path / "out", timeout=WAIT)
    assert (failed.value.node_id, failed.value.exception_type) == ("58", "av.error.InvalidDataError")


# ------------------------------------------------------------------ the checks the contract lane runs on the real server
def test_shared_wav_round_trip(client: ComfyClient, tmp_path: Path) -> None:
    s2v_checks.check_wav_round_trip(client, tmp_path)


def test_shared_latent_round_trip(client: ComfyClient, tmp_path: Path) -> None:
    s2v_checks.check_latent_round_trip(client, tmp_path)


def test_shared_audio_that_is_not_audio(client: ComfyClient, tmp_path: Path) -> None:
    s2v_checks.check_audio_that_is_not_audio(client, tmp_path)


def test_shared_latent_that_is_not_safetensors(client: ComfyClient, tmp_path: Path) -> None:
    s2v_checks.check_latent_that_is_not_safetensors(client, tmp_path)


def test_shared_latents_that_do_not_fit(client: ComfyClient, tmp_path: Path) -> None:
    s2v_checks.check_latents_that_do_not_fit(client, tmp_path)


def test_shared_chunk_graphs_fail_only_for_models(tmp_path: Path) -> None:
    models = ["wan2.2_s2v_14B_fp8_scaled.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
              "wan_2.1_vae.safetensors", "wav2vec2_large_english_fp16.safetensors"]
    with start_fake_comfyui(tmp_path, missing_model=models) as fake, ComfyClient(fake.url) as bare:
        s2v_checks.check_chunk_graphs_fail_only_for_models(bare, tmp_path / "graphs")
