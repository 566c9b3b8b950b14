"""A stand-in for openai-whisper, put on PYTHONPATH by tests: no model, no torch.

It "hears" the story lines listed in the timings file named by FAKE_WHISPER_SCRIPT, but
only where the audio it is given actually holds sound: a line whose samples are silent is
not heard at all, as a real recogniser would miss it. So a test can make a line fail by
silencing it in story.wav and watch a retake bring it back; FAKE_WHISPER_DEAF (line numbers,
comma-separated) names lines it never hears, for a line no retake can fix. Like openai-whisper it takes
mono float32 samples at 16 kHz and returns segments with word timestamps. Every
`load_model` call is appended to FAKE_WHISPER_LOG, so a test can count model loads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16000
HEARD_RMS = 0.005


def load_model(name: str, device: Any = None, download_root: Any = None, in_memory: bool = False) -> "FakeModel":
    log = os.environ.get("FAKE_WHISPER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"load_model {name}\n")
    return FakeModel(name)


class _Device:
    type = "cpu"


class FakeModel:
    device = _Device()

    def __init__(self, name: str) -> None:
        self.name = name

    def transcribe(self, audio: Any, *, word_timestamps: bool = False, language: str | None = None,
                   **options: Any) -> dict[str, Any]:
        if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
            raise TypeError("the fake, like whisper without ffmpeg, wants mono float32 samples at 16 kHz")
        script = json.loads(Path(os.environ["FAKE_WHISPER_SCRIPT"]).read_text(encoding="utf-8"))
        deaf = {int(n) for n in os.environ.get("FAKE_WHISPER_DEAF", "").split(",") if n.strip()}
        segments = []
        for line in script["lines"]:
            if int(line["line"]) in deaf:
                continue
            part = audio[int(line["start"] * RATE):int(line["end"] * RATE)]
            if part.size == 0 or float(np.sqrt(np.mean(part.astype(np.float64) ** 2))) < HEARD_RMS:
                continue
            segments.append(_segment(len(segments), line["text"], float(line["start"]), float(line["end"]), word_timestamps))
        return {"text": "".join(s["text"] for s in segments), "segments": segments, "language": language or "en"}


def _segment(index: int, text: str, start: float, end: float, with_words: bool) -> dict[str, Any]:
    tokens = text.split()
    joined = " ".join(tokens)
    words, at = [], 0
    for token in tokens:
        words.append({"word": " " + token, "start": round(start + (end - start) * at / len(joined), 2),
                      "end": round(start + (end - start) * (at + len(token)) / len(joined), 2), "probability": 0.9})
        at += len(token) + 1
    segment = {"id": index, "seek": 0, "start": start, "end": end, "text": " " + joined, "tokens": [],
               "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.2, "no_speech_prob": 0.01}
    if with_words:
        segment["words"] = words
    return segment
