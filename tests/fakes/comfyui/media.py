"""Real media made from a graph without a model: pictures, video, tones, noise and speech, what an
edit model (Qwen-Image-Edit) is asked to do with its input pictures, done crudely (`edit_frame`), and
a speaking face's mouth for Wan S2V (`mouth_frames`).

Each follows from what the graph says (sizes, lengths, frame rates, text, seeds), so different
prompts give different files, and each is a file a real decoder opens. Audio a LoadAudio names is
decoded as the real node does (`load_audio`, with PyAV), so it fails with the real exception.

The mouth of an S2V video (the rule a test measures; Wan S2V hears its audio at 16 fps):
    frame i stands for time t = i / 16 s of the LoadAudio file feeding the S2V node's audio encoder;
    loudness = min(1, sqrt(2) * RMS) of that file's samples (as floats in -1..1, channels averaged) in
        [t - 1/32 s, t + 1/32 s): a sine of peak amplitude a reads as a; past the end of the file, 0;
    the mouth region is columns [w//4, 3*w//4) and rows [3*h//4 - h//8, 3*h//4 + h//8) (R = 2*(h//8)
        rows); m = round(loudness * R) rows of it, from row 3*h//4 - m//2 down, are white (255), the
        rest of the region black (0); so its mean value / 255 is the loudness, to 1/R.
The rest of the frame is drawn as every other fake video frame is.
"""
from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .graph import _is_link, _text_of, _upstream


IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
AUDIO_EXT = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4")
SAMPLE_RATE = 44100
TTS_SECONDS_PER_CHAR = 0.06
S2V_FPS = 16  # Wan S2V's own frame rate: video frame i is audio time i / 16 s


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


def _write_audio(path: Path, samples: np.ndarray, fmt: str, rate: int = SAMPLE_RATE) -> None:
    """Mono samples, or [channels, n] as LoadAudio gives them, at `rate`."""
    frames = samples.reshape(1, -1) if samples.ndim == 1 else samples
    pcm = (np.clip(frames.T, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    codec = {"flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame", "-q:a", "0"], "opus": ["-c:a", "libopus", "-b:a", "64k"],
             "wav": ["-c:a", "pcm_s16le"]}[fmt]
    _run_ffmpeg(["-f", "s16le", "-ar", str(rate), "-ac", str(frames.shape[0]), "-i", "-", *codec, str(path)], pcm)


def load_audio(path: Path) -> tuple[np.ndarray, int]:
    """What LoadAudio gives: float samples [channels, n] and their rate, read with PyAV as the real node
    reads them, so a file that is not audio raises what the real one raises (av.error.InvalidDataError,
    or ValueError "No audio stream found in the file.")."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("No audio stream found in the file.")
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.channels
        chunks = []
        for frame in container.decode(streams=stream.index):
            block = frame.to_ndarray()
            chunks.append(block if block.shape[0] == channels else block.reshape(-1, channels).T)
    if not chunks:
        raise ValueError("No audio frames decoded.")
    wav = np.concatenate(chunks, axis=1)
    if wav.dtype.kind == "f":
        return wav.astype(np.float32), rate
    scale = {np.dtype(np.int16): 2.0 ** 15, np.dtype(np.int32): 2.0 ** 31}.get(wav.dtype)
    if scale is None:
        raise ValueError(f"Unsupported wav dtype: torch.{wav.dtype.name}")
    return (wav / scale).astype(np.float32), rate


def loudness(samples: np.ndarray, rate: int, frame: int) -> float:
    """The mouth rule's loudness of video frame `frame` (module docstring)."""
    mono = samples.mean(axis=0) if samples.ndim == 2 else samples
    t = frame / S2V_FPS
    lo = max(0, round((t - 0.5 / S2V_FPS) * rate))
    hi = min(len(mono), round((t + 0.5 / S2V_FPS) * rate))
    if hi <= lo:
        return 0.0
    window = mono[lo:hi].astype(np.float64)
    return float(min(1.0, np.sqrt(2.0) * np.sqrt(np.mean(window * window))))


def mouth_frames(width: int, height: int, count: int, text: str, audio: tuple[np.ndarray, int] | None) -> np.ndarray:
    """`_frames` with a mouth whose opening follows the audio's loudness frame by frame (module docstring)."""
    out = _frames(width, height, count, text)
    rows = 2 * (height // 8)
    centre, x0, x1 = 3 * height // 4, width // 4, 3 * width // 4
    for i in range(count):
        out[i, centre - height // 8:centre + height // 8, x0:x1] = 0
        opening = round((loudness(audio[0], audio[1], i) if audio else 0.0) * rows)
        top = centre - opening // 2
        out[i, top:top + opening, x0:x1] = 255
    return out


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


# Edit encoders whose own inputs are the pictures to combine (Qwen-Image-Edit), in order.
EDIT_IMAGE_INPUTS = {"TextEncodeQwenImageEditPlus": ("image1", "image2", "image3"), "TextEncodeQwenImageEdit": ("image",)}


def _loaded(prompt: dict[str, Any], value: Any, input_dir: Path) -> Image.Image | None:
    """The picture a LoadImage gives an IMAGE input, through single-image nodes (scaling) on the way."""
    seen: set[str] = set()
    while _is_link(value) and str(value[0]) in prompt and str(value[0]) not in seen:
        node_id = str(value[0])
        seen.add(node_id)
        node = prompt[node_id]
        if node["class_type"] == "LoadImage":
            try:
                with Image.open(input_dir / str(node["inputs"].get("image"))) as img:
                    return img.convert("RGB")
            except OSError:
                return None
        value = node["inputs"].get("image")
    return None


def edit_pictures(prompt: dict[str, Any], node_id: str, input_dir: Path) -> list[Image.Image]:
    """The pictures the first edit encoder upstream of `node_id` was given, image1 first; [] if none."""
    for up in _upstream(prompt, node_id):
        names = EDIT_IMAGE_INPUTS.get(prompt[up]["class_type"])
        if names:
            found = [_loaded(prompt, prompt[up]["inputs"].get(name), input_dir) for name in names]
            return [picture for picture in found if picture is not None]
    return []


def edit_frame(pictures: list[Image.Image], width: int, height: int) -> np.ndarray:
    """What an edit model is asked to do with its pictures, done crudely: image 1 fills the frame and the
    others stand on it side by side, left to right, so a test can find every input in the result."""
    canvas = ImageOps.fit(pictures[0], (width, height), method=Image.Resampling.LANCZOS)
    others = pictures[1:]
    for index, picture in enumerate(others):
        tall = max(1, int(height * 0.7))
        wide = max(1, int(tall * picture.width / picture.height))
        if wide > width / len(others) * 0.9:
            wide = max(1, int(width / len(others) * 0.9))
            tall = max(1, int(wide * picture.height / picture.width))
        x = int((index + 0.5) * width / len(others) - wide / 2)
        canvas.paste(picture.resize((wide, tall)), (x, height - tall - int(height * 0.03)))
    return np.asarray(canvas, dtype=np.uint8)


def _audio(prompt: dict[str, Any], node_id: str, input_dir: Path) -> tuple[np.ndarray, int, str | None]:
    """The samples reaching an audio output node and their rate, and an error message if the TTS node
    would refuse. A LoadAudio's file comes through as it is (its rate and channels), as in ComfyUI."""
    text = _text_of(prompt, node_id)
    seed = _digest(text)
    for up in _upstream(prompt, node_id):
        cls = prompt[up]["class_type"]
        inputs = prompt[up]["inputs"]
        if "num_speakers" in inputs:
            speech, problem = _speech(prompt, up)
            return speech, SAMPLE_RATE, problem
        if cls == "EmptyLatentAudio":
            return _noise(float(inputs.get("seconds", 1.0)), seed), SAMPLE_RATE, None
        if cls == "EmptyAudio":
            return np.zeros(max(1, int(float(inputs.get("duration", 1.0)) * SAMPLE_RATE)), dtype=np.float32), SAMPLE_RATE, None
        if cls == "LoadAudio":
            samples, rate = load_audio(input_dir / str(inputs.get("audio")))
            return samples, rate, None
    return _noise(1.0, seed), SAMPLE_RATE, None


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
