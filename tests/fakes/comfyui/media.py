"""Real media made from a graph without a model: pictures, video, tones, noise and speech.

Each follows from what the graph says (sizes, lengths, frame rates, text, seeds), so different
prompts give different files, and each is a file a real decoder opens.
"""
from __future__ import annotations

import hashlib
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .graph import _is_link, _text_of, _upstream


IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
AUDIO_EXT = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4")
SAMPLE_RATE = 44100
TTS_SECONDS_PER_CHAR = 0.06


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg(args: list[str], data: bytes) -> None:
    proc = subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args],
                          input=data, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("ffmpeg failed: " + proc.stderr.decode("utf-8", "replace")[-500:])


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _frames(width: int, height: int, count: int, text: str) -> np.ndarray:
    """`count` RGB frames tinted by the text's hash, with a band that moves frame to frame."""
    d = _digest(text)
    base = np.array([64 + d[0] % 192, 64 + d[1] % 192, 64 + d[2] % 192], dtype=np.float32)
    ys = np.linspace(0.55, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.75, 1.0, width, dtype=np.float32)[None, :]
    shade = (ys * xs)[:, :, None]
    still = (base[None, None, :] * shade).astype(np.uint8)
    out = np.empty((count, height, width, 3), dtype=np.uint8)
    band = max(2, width // 12)
    for i in range(count):
        frame = still.copy()
        x0 = int((i / max(1, count)) * width + d[3] * width / 255) % width
        frame[:, x0:x0 + band] = 255 - frame[:, x0:x0 + band]
        out[i] = frame
    return out


def _write_png(path: Path, frame: np.ndarray) -> None:
    Image.fromarray(frame, "RGB").save(path, format="PNG", compress_level=1)


def _write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    count, height, width, _ = frames.shape
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
            "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]
    _run_ffmpeg(args, frames.tobytes())


def _tone(seconds: float, freq: float, seed: bytes) -> np.ndarray:
    n = max(1, int(seconds * SAMPLE_RATE))
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    # A voiced-sounding tone: fundamental plus harmonics, with a syllable-rate envelope.
    wave_ = np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(4 * np.pi * freq * t) + 0.25 * np.sin(6 * np.pi * freq * t)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * (3.0 + seed[0] % 3) * t) ** 2
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    return (0.25 * wave_ * envelope * ramp).astype(np.float32)


def _noise(seconds: float, seed: bytes) -> np.ndarray:
    n = max(1, int(seconds * SAMPLE_RATE))
    rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
    white = rng.standard_normal(n).astype(np.float32)
    # A crude low-pass so it sounds like rain or fire rather than hiss.
    kernel = np.ones(8, dtype=np.float32) / 8
    return (0.3 * np.convolve(white, kernel, mode="same")).astype(np.float32)


def _write_audio(path: Path, samples: np.ndarray, fmt: str) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    codec = {"flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame", "-q:a", "0"], "opus": ["-c:a", "libopus", "-b:a", "64k"],
             "wav": ["-c:a", "pcm_s16le"]}[fmt]
    _run_ffmpeg(["-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "-", *codec, str(path)], pcm)


def _wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getnframes() / float(handle.getframerate())
    except (OSError, wave.Error, EOFError):
        return None


@dataclass
class Picture:
    width: int = 512
    height: int = 512
    frames: int = 1


def _picture(prompt: dict[str, Any], node_id: str, input_dir: Path) -> Picture:
    """Size and frame count of the image batch reaching `node_id`, read off the nearest source."""
    ups = _upstream(prompt, node_id)
    scale = 1.0
    for up in ups:
        if prompt[up]["class_type"] == "ImageScaleBy":
            try:
                scale *= float(prompt[up]["inputs"].get("scale_by", 1.0))
            except (TypeError, ValueError):
                pass
    for up in ups:
        cls = prompt[up]["class_type"]
        inputs = prompt[up]["inputs"]
        if cls == "LoadImage":
            try:
                with Image.open(input_dir / str(inputs.get("image"))) as img:
                    return Picture(max(1, int(img.width * scale)), max(1, int(img.height * scale)), 1)
            except OSError:
                return Picture()
        width, height = inputs.get("width"), inputs.get("height")
        if isinstance(width, (int, float)) and isinstance(height, (int, float)):
            frames = inputs.get("length", inputs.get("batch_size", 1))
            frames = int(frames) if isinstance(frames, (int, float)) else 1
            return Picture(max(1, int(width * scale)), max(1, int(height * scale)), max(1, frames))
    return Picture()


def _audio(prompt: dict[str, Any], node_id: str, input_dir: Path) -> tuple[np.ndarray, str | None]:
    """The samples reaching an audio output node, and an error message if the TTS node would refuse."""
    text = _text_of(prompt, node_id)
    seed = _digest(text)
    for up in _upstream(prompt, node_id):
        cls = prompt[up]["class_type"]
        inputs = prompt[up]["inputs"]
        if "num_speakers" in inputs:
            return _speech(prompt, up)
        if cls == "EmptyLatentAudio":
            return _noise(float(inputs.get("seconds", 1.0)), seed), None
        if cls == "EmptyAudio":
            return np.zeros(max(1, int(float(inputs.get("duration", 1.0)) * SAMPLE_RATE)), dtype=np.float32), None
        if cls == "LoadAudio":
            seconds = _wav_seconds(input_dir / str(inputs.get("audio"))) or 1.0
            return _tone(seconds, 220.0, seed), None
    return _noise(1.0, seed), None


def _speech(prompt: dict[str, Any], tts_id: str) -> tuple[np.ndarray, str | None]:
    """What the OmniVoice multi-speaker node does with its inputs, minus the model."""
    import re

    inputs = prompt[tts_id]["inputs"]
    try:
        count = int(inputs.get("num_speakers", 0))
    except (TypeError, ValueError):
        count = 0
    missing = [i for i in range(1, count + 1) if not _is_link(inputs.get(f"num_speakers.speaker_{i}_audio"))]
    if missing:
        return np.zeros(1, np.float32), f"Missing reference audio for speakers: {missing}. Please connect audio to each speaker input."
    text = str(inputs.get("text", ""))
    if not text.strip():
        return np.zeros(1, np.float32), "Text cannot be empty."
    turns = []
    for line in text.strip().splitlines():
        match = re.match(r"\[speaker_(\d+)\]:\s*(.*)", line.strip(), re.IGNORECASE)
        if match:
            turns.append((int(match.group(1)), match.group(2)))
        elif turns and line.strip():
            turns[-1] = (turns[-1][0], turns[-1][1] + " " + line.strip())
    if not turns:
        return np.zeros(1, np.float32), "No speaker lines found. Use [Speaker_N]: text format"
    pause = np.zeros(int(float(inputs.get("pause_between_speakers", 0.3)) * SAMPLE_RATE), dtype=np.float32)
    parts = []
    for index, (speaker, line) in enumerate(turns, start=1):
        if speaker < 1 or speaker > count:
            return np.zeros(1, np.float32), f"Line {index} uses speaker index {speaker} but only {count} speakers are connected."
        seconds = max(0.2, TTS_SECONDS_PER_CHAR * len(line))
        parts += [_tone(seconds, 110.0 + 35.0 * speaker, _digest(line)), pause]
    return np.concatenate(parts[:-1] if len(parts) > 1 else parts), None
