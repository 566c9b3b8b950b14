"""4.sfx.txt -> one clip per effect -> output/sfx.wav, aligned to story.wav to the sample (7.sfx.py).

sfx.wav is mono 16-bit PCM at story.wav's sample rate and exactly story.wav's length in
samples. Mono because the narration it is mixed with is mono and the mix (8.combine.py)
places both in the same centre: a stereo effects track would double the file for width the
final mix does not keep, and sample-for-sample alignment with a mono story.wav is simplest
to check. Stable Audio's stereo output is downmixed when each clip is fetched.

Slot boundaries are computed from the plan's exact decimal durations (the numbers as written,
not floats), cumulatively, so no slot drifts however long the story. The file is written as a
stream: silence in blocks, one clip in memory at a time (SFX_MAX_SECONDS at most), so a
two-hour story takes a few megabytes.
"""
from __future__ import annotations

import hashlib
import re
import tempfile
import wave
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from common.media import ffmpeg as media
from common.media.ffmpeg import fade_gains as _ramp  # the raised-cosine ramp the joins of story.wav use
from common.state.atomic import atomic_path
from common.run.errors import InputError
from common.formats.timeline import Timeline, TimelineEntry, written_seconds
from common.audio.sfx_plan import is_silence

TRACK_VERSION = 1  # bump when placement or fades change, so sfx.wav is assembled again
FADE_IN = 0.05  # seconds: no click where a clip starts
FADE_OUT = 0.3  # seconds: a clip cut to its slot ends softly
_BLOCK = 1 << 16


@dataclass(frozen=True)
class ClipJob:
    """One clip to make; identical (description, seconds) entries share one clip."""

    key: str
    description: str
    seconds: float


@dataclass(frozen=True)
class WavInfo:
    frames: int
    sample_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def wav_info(path: Path) -> WavInfo:
    """Frames, rate and channels of a PCM WAV (story.wav), or one sentence if it is not one."""
    try:
        with wave.open(str(path), "rb") as handle:
            return WavInfo(handle.getnframes(), handle.getframerate(), handle.getnchannels())
    except (wave.Error, EOFError) as exc:
        raise InputError(f"{path} is not a PCM WAV file ({exc}); run 2.story.py again to rewrite it.") from exc


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    slug = "_".join(words)[:40].rstrip("_")
    return slug or "sfx"


def clip_key(description: str, seconds: float) -> str:
    """A readable, content-derived key (also the clip's file stem): same sound, same clip."""
    digest = hashlib.sha256(f"{description}\x1f{seconds:.6f}".encode("utf-8")).hexdigest()[:8]
    return f"{_slug(description)}_{digest}"


def clip_jobs(plan: Timeline) -> list[ClipJob]:
    """The distinct clips the plan needs, in order of first use."""
    jobs: dict[str, ClipJob] = {}
    for entry in plan.entries:
        if is_silence(entry.text) or entry.seconds <= 0:
            continue
        key = clip_key(entry.text.strip(), entry.seconds)
        jobs.setdefault(key, ClipJob(key, entry.text.strip(), entry.seconds))
    return list(jobs.values())


def _exact(entry: TimelineEntry) -> Fraction:
    """The duration as written in the file (2.920 is 73/25 exactly), else the float's value."""
    written = written_seconds(entry)
    return Fraction(Decimal(written)) if written is not None else Fraction(entry.seconds)


def slots(plan: Timeline, sample_rate: int, total_frames: int) -> Iterator[tuple[int, int, TimelineEntry]]:
    """(first frame, end frame, entry) per plan line, clipped to `total_frames`; boundaries are
    the rounded exact cumulative times, so neighbouring slots always meet."""
    at = Fraction(0)
    for entry in plan.entries:
        start = min(total_frames, round(at * sample_rate))
        at += _exact(entry)
        end = min(total_frames, round(at * sample_rate))
        if end > start:
            yield start, end, entry


def check_length(plan: Timeline, story: WavInfo, source: str = "4.sfx.txt") -> None:
    """A plan made for another take of the story would put every effect in the wrong place."""
    total = float(sum((_exact(e) for e in plan.entries), Fraction(0)))
    allowed = max(1.0, 0.01 * story.seconds)
    if abs(total - story.seconds) > allowed:
        raise InputError(
            f"{source} lasts {total:.2f} s but story.wav lasts {story.seconds:.2f} s, so it was made for another "
            "take of the story: run 3.transcribe.py, 5.timeline.py and 6.timing.py again."
        )


def _clip_samples(path: Path, sample_rate: int, scratch: Path) -> np.ndarray:
    """The clip as mono int16 at `sample_rate`, converting (and downmixing) if it is not."""
    info = wav_info(path) if path.is_file() else None
    if info is None or (info.channels, info.sample_rate) != (1, sample_rate):
        path = media.to_wav(path, scratch / "clip.wav", sample_rate=sample_rate, channels=1)
    samples, _ = media.read_wav(path)
    return samples


def fit_clip(samples: np.ndarray, frames: int, sample_rate: int) -> np.ndarray:
    """The clip cut or padded to its slot, faded in and out (the fade-out where the sound ends)."""
    out = np.zeros(frames, dtype=np.float64)
    used = min(frames, len(samples))
    piece = samples[:used].astype(np.float64)
    fade_in = min(int(FADE_IN * sample_rate), used // 4)
    fade_out = min(int(FADE_OUT * sample_rate), used // 4)
    if fade_in:
        piece[:fade_in] *= _ramp(fade_in)
    if fade_out:
        piece[used - fade_out:] *= _ramp(fade_out)[::-1]
    out[:used] = piece
    return np.round(out).astype(np.int16)


@dataclass(frozen=True)
class TrackStats:
    frames: int
    sample_rate: int
    effects: int
    effect_seconds: float


def build_sfx_track(plan: Timeline, clips: Mapping[str, Path], story: WavInfo, out_wav: Path) -> TrackStats:
    """Write sfx.wav: silence, and each clip in its slot; exactly `story.frames` long."""
    rate = story.sample_rate
    zeros = bytes(2 * _BLOCK)
    effects, effect_frames = 0, 0
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_wav) as tmp, tempfile.TemporaryDirectory(prefix=".sfx.", dir=out_wav.parent) as scratch:
        with media.wav_writer(tmp, rate) as out:
            position = 0

            def silence_until(frame: int) -> None:
                nonlocal position
                while position < frame:
                    step = min(_BLOCK, frame - position)
                    out.writeframes(zeros[: 2 * step])
                    position += step

            for start, end, entry in slots(plan, rate, story.frames):
                if is_silence(entry.text):
                    continue
                silence_until(start)
                key = clip_key(entry.text.strip(), entry.seconds)
                piece = fit_clip(_clip_samples(clips[key], rate, Path(scratch)), end - start, rate)
                out.writeframes(piece.astype("<i2", copy=False).tobytes())
                position = end
                effects += 1
                effect_frames += end - start
            silence_until(story.frames)
    return TrackStats(story.frames, rate, effects, round(effect_frames / rate, 3))
