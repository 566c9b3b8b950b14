"""Model-free checks of what a Wan S2V chunk chain relies on, run the same way against the fake
(tests/test_fake_comfyui_s2v.py) and a real ComfyUI 0.8.0 (tests/contract/test_real_comfyui.py):
a 16-bit WAV through /upload/image and LoadAudio, .latent files through SaveLatent, /view,
/upload/image, LoadLatent and LatentConcat, and the answers when a file is missing or not audio,
or two latents do not fit together.

Every graph carries something unique (a tone, a size, a file name), so neither server's cache
answers in place of the job. What the real server answered is in the contract test's docstring.
"""
from __future__ import annotations

import json
import struct
import uuid
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests
from PIL import Image

from common.services.comfyui.client import ComfyClient
from common.services.comfyui.errors import ExecutionError, WorkflowRejectedError

TIMEOUT = 300.0  # a bound for a CPU server on a slow machine, not a pace


def write_wav(path: Path, seconds: float, rate: int = 16000, segments: list[tuple[float, float]] | None = None) -> Path:
    """A mono 16-bit PCM WAV: a 220-440 Hz tone whose peak amplitude is `segments` [(until_s, amplitude)]
    in turn (0.5 throughout by default); the pitch is drawn at random, so no two files are alike."""
    t = np.arange(int(round(seconds * rate))) / rate
    amplitude = np.full_like(t, 0.5)
    start = 0.0
    for until, level in segments or []:
        amplitude[(t >= start) & (t < until)] = level
        start = until
    tone = amplitude * np.sin(2 * np.pi * (220 + uuid.uuid4().int % 220) * t)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((tone * 32767).astype("<i2").tobytes())
    return path


def read_audio(path: Path) -> tuple[np.ndarray, int, int]:
    """(samples on the 16-bit scale, channels averaged; rate; channels) of an audio file."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.channels
        chunks = [frame.to_ndarray().reshape(channels, -1) if frame.format.is_planar
                  else frame.to_ndarray().reshape(-1, channels).T for frame in container.decode(stream)]
    data = np.concatenate(chunks, axis=1)
    scale = 32768.0 if data.dtype.kind == "f" else {2: 1.0, 4: 1 / 65536}[data.dtype.itemsize]
    return data.astype(np.float64).mean(axis=0) * scale, rate, channels


def latent_header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors header of a .latent file and the byte count of its data."""
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + size]), len(data) - 8 - size


def save_latent(client: ComfyClient, source: dict[str, Any], dest: Path, prefix: str, *, adopt: bool = True) -> Path:
    """Run `source` (a graph whose node "src" gives a LATENT) into a SaveLatent; the downloaded file."""
    prompt = {**source, "save": {"class_type": "SaveLatent", "inputs": {"samples": ["src", 0], "filename_prefix": prefix}}}
    (path,) = client.run(prompt, dest, timeout=TIMEOUT, adopt=adopt)
    assert path.suffix == ".latent", path
    return path


def check_wav_round_trip(client: ComfyClient, tmp_path: Path) -> None:
    """LoadAudio -> SaveAudio keeps a 16 kHz mono WAV's rate, channels, length and samples (FLAC is lossless)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = write_wav(tmp_path / f"line-{uuid.uuid4().hex[:8]}.wav", 1.2345)
    name = client.upload_image(source)
    prompt = {"1": {"class_type": "LoadAudio", "inputs": {"audio": name}},
              "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/contract-wav"}}}
    (saved,) = client.run(prompt, tmp_path / "out", timeout=TIMEOUT)
    assert saved.suffix == ".flac"
    got, rate, channels = read_audio(saved)
    want, want_rate, _ = read_audio(source)
    assert (rate, channels) == (16000, 1)
    assert abs(len(got) / rate - len(want) / want_rate) <= 0.001
    assert np.abs(got - want).max() <= 1.0


def check_latent_round_trip(client: ComfyClient, tmp_path: Path) -> None:
    """SaveLatent writes float32 safetensors; uploaded again, LoadLatent -> LatentConcat(t) doubles T.
    The length is not 4n+1 (the widget's step 4 is a UI hint): T = (length-1)//4 + 1 all the same."""
    width = 16 * (3 + uuid.uuid4().int % 5)
    source = {"src": {"class_type": "EmptyHunyuanLatentVideo",
                      "inputs": {"width": width, "height": 48, "length": 10, "batch_size": 1}}}
    first = save_latent(client, source, tmp_path / "a", "latents/contract")
    header, data = latent_header(first)
    assert set(header) == {"__metadata__", "latent_format_version_0", "latent_tensor"}
    assert header["latent_format_version_0"] == {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    assert header["latent_tensor"] == {"dtype": "F32", "shape": [1, 16, 3, 6, width // 8],
                                       "data_offsets": [0, 4 * 16 * 3 * 6 * (width // 8)]}
    assert data == header["latent_tensor"]["data_offsets"][1]
    assert json.loads(header["__metadata__"]["prompt"])["save"]["class_type"] == "SaveLatent"
    name = client.upload_image(first)
    assert name in client.object_info("LoadLatent")["LoadLatent"]["input"]["required"]["latent"][0]
    joined = {"load": {"class_type": "LoadLatent", "inputs": {"latent": name}},
              "src": {"class_type": "LatentConcat", "inputs": {"samples1": ["load", 0], "samples2": ["load", 0], "dim": "t"}}}
    header, data = latent_header(save_latent(client, joined, tmp_path / "b", "latents/contract-joined"))
    assert header["latent_tensor"]["shape"] == [1, 16, 6, 6, width // 8]
    assert header["latent_tensor"]["dtype"] == "F32" and data == 4 * 16 * 6 * 6 * (width // 8)


def raw_rejection(client: ComfyClient, prompt: dict[str, Any]) -> dict[str, Any]:
    """POST /prompt as a stranger would; the 400 answer's body."""
    answer = requests.post(f"{client.base_url}/prompt", json={"prompt": prompt}, timeout=60)
    assert answer.status_code == 400, answer.text
    return answer.json()


def check_missing_latent(client: ComfyClient) -> None:
    """LoadLatent of a file the input folder lacks: its VALIDATE_INPUTS refuses it, by name."""
    missing = f"contract-no-such-{uuid.uuid4().hex[:8]}.latent"
    prompt = {"1": {"class_type": "LoadLatent", "inputs": {"latent": missing}},
              "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "latents/x"}}}
    assert raw_rejection(client, prompt) == {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                  "details": "", "extra_info": {}},
        "node_errors": {"1": {"errors": [{"type": "custom_validation_failed", "message": "Custom validation failed for node",
                                          "details": f"latent - Invalid latent file: {missing}",
                                          "extra_info": {"input_name": "latent"}}],
                              "dependent_outputs": ["2"], "class_type": "LoadLatent"}}}
    with pytest.raises(WorkflowRejectedError, match=missing):
        client.queue(prompt)


def check_missing_audio(client: ComfyClient) -> None:
    """LoadAudio of a file the input folder lacks: refused the same way, as an audio file."""
    missing = f"contract-no-such-{uuid.uuid4().hex[:8]}.wav"
    prompt = {"1": {"class_type": "LoadAudio", "inputs": {"audio": missing}},
              "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/x"}}}
    (error,) = raw_rejection(client, prompt)["node_errors"]["1"]["errors"]
    assert error == {"type": "custom_validation_failed", "message": "Custom validation failed for node",
                     "details": f"audio - Invalid audio file: {missing}", "extra_info": {"input_name": "audio"}}


def check_audio_that_is_not_audio(client: ComfyClient, tmp_path: Path) -> None:
    """A .wav that is text passes validation (the file exists) and fails in LoadAudio, with PyAV's error."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    fake = tmp_path / f"contract-not-audio-{uuid.uuid4().hex[:8]}.wav"
    fake.write_text("this is not audio\n")
    name = client.upload_image(fake)
    prompt = {"1": {"class_type": "LoadAudio", "inputs": {"audio": name}},
              "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/x"}}}
    with pytest.raises(ExecutionError) as failed:
        client.run(prompt, tmp_path / "out", timeout=TIMEOUT)
    assert (failed.value.node_id, failed.value.node_type) == ("1", "LoadAudio")
    assert failed.value.exception_type == "av.error.InvalidDataError"
    message = failed.value.exception_message
    assert message.startswith("[Errno 1094995529] Invalid data found when processing input: '") and message.endswith(f"{name}'\n")
    picture = tmp_path / f"contract-picture-{uuid.uuid4().hex[:8]}.wav"
    Image.new("RGB", (8, 8), (uuid.uuid4().int % 256, 0, 0)).save(picture, format="PNG")
    prompt["1"]["inputs"]["audio"] = client.upload_image(picture)
    with pytest.raises(ExecutionError) as failed:
        client.run(prompt, tmp_path / "out", timeout=TIMEOUT)
    assert (failed.value.exception_type, failed.value.exception_message) == ("ValueError", "No audio stream found in the file.\n")


def check_latent_that_is_not_safetensors(client: ComfyClient, tmp_path: Path) -> None:
    """A text .latent passes validation and fails in LoadLatent, with safetensors' error."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    broken = tmp_path / f"contract-broken-{uuid.uuid4().hex[:8]}.latent"
    broken.write_bytes(b"this is not safetensors at all")
    loaded = {"src": {"class_type": "LoadLatent", "inputs": {"latent": client.upload_image(broken)}}}
    with pytest.raises(ExecutionError) as failed:
        save_latent(client, loaded, tmp_path / "out", "latents/broken")
    assert (failed.value.node_id, failed.value.node_type) == ("src", "LoadLatent")
    assert failed.value.exception_type == "safetensors._safetensors_rust.SafetensorError"
    assert failed.value.exception_message == "Error while deserializing header: header too large\n"


def check_latents_that_do_not_fit(client: ComfyClient, tmp_path: Path) -> None:
    """LatentConcat(t) of latents of different widths fails in LatentConcat with torch.cat's error."""
    height = 16 * (3 + uuid.uuid4().int % 5)
    prompt = {"1": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": height, "length": 9, "batch_size": 1}},
              "2": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 32, "height": height, "length": 5, "batch_size": 1}},
              "3": {"class_type": "LatentConcat", "inputs": {"samples1": ["1", 0], "samples2": ["2", 0], "dim": "t"}},
              "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "latents/x"}}}
    with pytest.raises(ExecutionError) as failed:
        client.run(prompt, tmp_path, timeout=TIMEOUT)
    assert (failed.value.node_id, failed.value.node_type, failed.value.exception_type) == ("3", "LatentConcat", "RuntimeError")
    assert failed.value.exception_message == ("Sizes of tensors must match except in dimension 2. "
                                              "Expected size 8 but got size 4 for tensor number 1 in the list.\n")
    prompt["2"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": height, "batch_size": 1}}
    with pytest.raises(ExecutionError) as failed:
        client.run(prompt, tmp_path, timeout=TIMEOUT)
    assert failed.value.exception_message == "Tensors must have same number of dimensions: got 5 and 4\n"


# The model inputs of speak_wan.json: a server without the models refuses these and nothing else.
S2V_MODEL_INPUTS = {"unet_name", "clip_name", "vae_name", "audio_encoder_name"}


def check_chunk_graphs_fail_only_for_models(client: ComfyClient, tmp_path: Path) -> None:
    """The three graphs a speaking clip's jobs send (common.engines.comfy_talk: the first chunk, a middle one
    that extends and saves the latent, the last that decodes it) pass the server's validation of every
    class, link and input, with real uploads for LoadImage, LoadAudio and LoadLatent; only the model files
    (which a model-free server lacks) are refused, as value_not_in_list."""
    from common.engines.base import ClipRequest
    from common.engines.comfy_talk import talk_workflow

    tmp_path.mkdir(parents=True, exist_ok=True)
    template = Path(__file__).resolve().parents[2] / "gen.video" / "workflow" / "speak_wan.json"
    picture = tmp_path / f"face-{uuid.uuid4().hex[:8]}.png"
    Image.new("RGB", (64, 48), (120, 90, 60)).save(picture)
    line = write_wav(tmp_path / f"line-{uuid.uuid4().hex[:8]}.wav", 1.0)
    source = {"src": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 48, "length": 9,
                                                                          "batch_size": 1}}}
    latent = save_latent(client, source, tmp_path / "latent", "latents/contract-chunk")
    names = {"image": client.upload_image(picture), "audio": client.upload_image(line)}
    uploaded = client.upload_image(latent)
    for label, continues, keep in (("first", None, False), ("middle", uploaded, True), ("last", uploaded, False)):
        request = ClipRequest(scene_id="scene_1.2", image=picture, prompt="She answers.", seconds=1.0, width=64,
                              height=48, fps=16, seed=7, frames=17, audio=line, keep_latent=keep,
                              latent=latent if continues else None)
        prompt = talk_workflow(template, request, fps=16, latent=continues, **names).to_prompt()
        body = raw_rejection(client, prompt)
        assert body["error"]["type"] == "prompt_outputs_failed_validation", (label, body)
        problems = [(node["class_type"], e["type"], e["extra_info"].get("input_name"))
                    for node in body["node_errors"].values() for e in node["errors"]]
        assert problems and all(kind == "value_not_in_list" and name in S2V_MODEL_INPUTS
                                for _, kind, name in problems), (label, problems)
