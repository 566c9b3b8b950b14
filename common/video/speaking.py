"""Speaking shots: which clips move a character's lips to their own line, and the audio they get.

A shot speaks when exactly one character of its scene line's cast (not the narrator) says a
line during its slot on the narration, and that speech is long enough for the model's
shortest job. SPEAKING_SHOTS=false turns the rule off; a scene line may force it either way
with the words "lip sync" (on) or "no lip sync" (off), written in any brace of the line, e.g.
`{Night, no lip sync}`.

The times come from gen.audio's `story.timings.json` (2.story.py: every line's start and end
in story.wav) and the span's audio is cut from story.wav to the sample, so what the model hears
is exactly what the viewer hears under that clip. final.wav keeps story.wav's timing, so the
same seconds place the clip in final_sd.mp4.

A sound-to-video model (Wan 2.2 S2V) makes the clip in jobs counted at its own frame rate, chained
for a long line (TalkRule, TalkPlan, plan_talk; the graphs are common.engines.comfy_talk's); the
clip then goes on the film's frames by the instant each frame shows (TalkPlan.indices).
"""
from __future__ import annotations

import json
import math
import re
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from common.run.errors import ConfigError, InputError
from common.state.atomic import atomic_path
from common.state.checkpoints import file_digest
from common.video.animation import FrameRule
from common.video.storyboard import Shot, Storyboard

TIMINGS_FILE = "story.timings.json"
_FORCE_OFF = re.compile(r"\bno\s+lip[\s-]?sync\b", re.I)
_FORCE_ON = re.compile(r"\blip[\s-]?sync\b", re.I)


@dataclass(frozen=True)
class LineTiming:
    """One line of the story as spoken in story.wav."""

    line: int
    speaker: str
    start: float
    end: float


@dataclass(frozen=True)
class SpeakingSpan:
    """The speaker's words under one shot, in story.wav seconds (also final.wav's)."""

    clip: str
    speaker: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def sample_range(self, rate: int) -> tuple[int, int]:
        """The span in samples at `rate`: both ends rounded the same way, so spans never overlap."""
        return round(self.start * rate), round(self.end * rate)

    def frames(self, fps: float) -> int:
        """Pixel frames the span covers at `fps` (before the model's rule rounds it up)."""
        return max(1, math.ceil(self.seconds * fps - 1e-6))


def is_narrator(tag: str) -> bool:
    return "narrator" in tag.lower()


def forced(scene_line: str) -> bool | None:
    """True/False when the scene line says "lip sync"/"no lip sync", None when it says neither."""
    if _FORCE_OFF.search(scene_line):
        return False
    if _FORCE_ON.search(scene_line):
        return True
    return None


def read_line_timings(audio_output: Path) -> list[LineTiming]:
    """gen.audio's per-line timings, or [] when 2.story.py has not written them (no speaking shots)."""
    path = Path(audio_output) / TIMINGS_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        lines = [LineTiming(int(x["line"]), str(x["speaker"]), float(x["start"]), float(x["end"])) for x in data["lines"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a timings file 2.story.py wrote ({exc}); run gen.audio's 2.story.py again.") from None
    return sorted(lines, key=lambda x: (x.start, x.line))


def _span_for(shot: Shot, lines: Sequence[LineTiming]) -> SpeakingSpan | None:
    """The one cast member's speech inside the shot's slot (lines whose middle falls in it)."""
    cast = {tag for tag, _ in shot.characters}
    inside = [x for x in lines if shot.start <= (x.start + x.end) / 2 < shot.end]
    talkers = {x.speaker for x in inside if x.speaker in cast and not is_narrator(x.speaker)}
    if len(talkers) != 1:
        return None  # nobody on screen speaks, or two do (a two-shot cannot move one mouth to both)
    speaker = talkers.pop()
    own = [x for x in inside if x.speaker == speaker]
    start, end = max(shot.start, own[0].start), min(shot.end, own[-1].end)
    return SpeakingSpan(shot.clip, speaker, start, end) if end > start else None


def speaking_spans(board: Storyboard, lines: Sequence[LineTiming], rule: FrameRule, fps: float, *,
                   enabled: bool = True) -> dict[str, SpeakingSpan]:
    """clip -> span for every speaking shot, by the rule in the module docstring."""
    found: dict[str, SpeakingSpan] = {}
    for shot in board.shots:
        force = forced(shot.scene_line)
        if force is False or (not enabled and force is not True):
            continue
        span = _span_for(shot, lines)
        if span is None:
            continue
        if force is not True and span.frames(fps) < rule.min_frames:
            continue  # too short for one model job: a still with moving lips would only flicker
        found[shot.clip] = span
    return found


# ---------------------------------------------------------------- sound-to-video jobs

@dataclass(frozen=True)
class TalkRule:
    """How a sound-to-video model makes a speaking clip (Wan 2.2 S2V: 4n+1 frames, at most 77 per job, 16 fps).

    The model hears its audio at its own frame rate (frame i is the sound at i / fps), so its jobs
    are counted at `fps`, not at the film's: asking Wan S2V for 24 frames a second would run the
    lips half again as fast as the voice. `identity` goes into every speaking job's fingerprint.
    """

    rule: FrameRule
    fps: float
    identity: Mapping[str, object] = field(default_factory=dict, compare=False)

    @property
    def max_latent(self) -> int:
        """Latent frames one job may add (77 frames at step 4: 20)."""
        most = self.rule.max_frames(self.fps)
        return (most - 1) // self.rule.step + 1 if most else 1 << 30


@dataclass(frozen=True)
class TalkPlan:
    """A speaking clip as model jobs: the first makes `chunks[0]` frames from the picture and the line,
    each next one extends the latent of all before it (WanSoundImageToVideoExtend, which reads the line
    from where the latent ends); the last job decodes the whole latent into `frames` frames at `fps`.

    A latent of T frames decodes to step * (T - 1) + 1 pixel frames, and a job of `length` frames
    makes (length - 1) // step + 1 latent frames, so each chunk's length is step * (t - 1) + 1."""

    chunks: tuple[int, ...]
    talk: TalkRule

    @property
    def step(self) -> int:
        return self.talk.rule.step

    @property
    def fps(self) -> float:
        return self.talk.fps

    @property
    def latent(self) -> int:
        return sum((length - 1) // self.step + 1 for length in self.chunks)

    @property
    def frames(self) -> int:
        return self.step * (self.latent - 1) + 1

    def to_json(self) -> dict[str, object]:
        return {"chunks": list(self.chunks), "step": self.step, "fps": self.fps, "model": self.talk.rule.name}

    def indices(self, slot: int, lead: int, fps: float) -> list[int]:
        """Which model frame each of the slot's `slot` film frames shows: the first model frame until the
        line starts (`lead` frames in), then the frame of the same instant (nearest), held at the end."""
        last = self.frames - 1
        return [min(last, max(0, round((k - lead) * self.fps / fps))) for k in range(slot)]


# Wan 2.2 S2V hears its audio at 16 frames a second (comfy_extras/nodes_wan.py, wan_sound_to_video: fps = 16)
# and makes 4n+1 frames; ComfyUI's own S2V template makes 77 of them (4.75 s) per job.
S2V_FPS = 16
S2V_MAX_SECONDS = 4.75


def s2v_rule(workflow: Path, max_seconds: Mapping[str, object] | None = None) -> TalkRule:
    """The Wan 2.2 S2V rule for a speaking workflow file (MODEL_MAX_SECONDS["s2v"] bounds one job)."""
    value = (max_seconds or {}).get("s2v", S2V_MAX_SECONDS)
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds * S2V_FPS >= 4:
        raise ConfigError(f"MODEL_MAX_SECONDS['s2v'] is {value!r}; give at least 0.25 seconds (one 5-frame job).")
    identity = {"engine": "comfyui-s2v", "workflow": workflow.name, "sha256": file_digest(workflow), "fps": S2V_FPS}
    return TalkRule(FrameRule(4, seconds, "wan-s2v"), S2V_FPS, identity)


def plan_talk(seconds: float, talk: TalkRule) -> TalkPlan:
    """The fewest, most even jobs whose decoded frames cover `seconds` of speech at the model's fps."""
    step = talk.rule.step
    needed = max(talk.rule.min_frames, math.ceil(seconds * talk.fps - 1e-6))
    total = (needed - 1 + step - 1) // step + 1  # latent frames: step * (total - 1) + 1 >= needed
    count = -(-total // talk.max_latent)
    share, extra = divmod(total, count)
    latents = [share + (1 if k < extra else 0) for k in range(count)]
    return TalkPlan(tuple(step * (t - 1) + 1 for t in latents), talk)


# ---------------------------------------------------------------- audio

def read_pcm(path: Path) -> tuple[bytes, int, int, int]:
    """(frames, rate, channels, sample width) of a PCM WAV such as story.wav."""
    try:
        with wave.open(str(path), "rb") as src:
            return src.readframes(src.getnframes()), src.getframerate(), src.getnchannels(), src.getsampwidth()
    except (wave.Error, EOFError, OSError) as exc:
        raise InputError(f"{path} is not a PCM WAV ({exc}); run gen.audio's 2.story.py again to rewrite it.") from None


def cut_span(story_wav: Path, span: SpeakingSpan, out: Path) -> Path:
    """The span of story.wav, sample-exact, as its own WAV (what the speaking job uploads)."""
    data, rate, channels, width = read_pcm(story_wav)
    first, last = span.sample_range(rate)
    step = channels * width
    total = len(data) // step
    if last > total:
        raise InputError(f"{story_wav} is {total / rate:.2f} s long but {span.clip}'s line ends at {span.end:.2f} s; "
                         "run gen.audio's 2.story.py again so the audio and its timings agree.")
    with atomic_path(out) as part, wave.open(str(part), "wb") as dst:
        dst.setnchannels(channels)
        dst.setsampwidth(width)
        dst.setframerate(rate)
        dst.writeframes(data[first * step:last * step])
    return out


def envelope(wav: Path, frames: int, fps: float) -> list[float]:
    """Loudness per video frame (RMS over each frame's samples), scaled so the loudest is 1."""
    import numpy as np

    data, rate, channels, width = read_pcm(wav)
    if width != 2:
        raise InputError(f"{wav} is {8 * width}-bit; speaking shots read 16-bit PCM (gen.audio writes it).")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float64).reshape(-1, channels).mean(axis=1)
    values = []
    for k in range(frames):
        a, b = round(k * rate / fps), round((k + 1) * rate / fps)
        chunk = samples[a:b]
        values.append(float(np.sqrt(np.mean(chunk ** 2))) if len(chunk) else 0.0)
    peak = max(values, default=0.0)
    return [v / peak if peak > 0 else 0.0 for v in values]


def describe(spans: Mapping[str, SpeakingSpan]) -> Iterable[str]:
    for span in spans.values():
        yield f"{span.clip}: {span.speaker} speaks {span.start:.2f}-{span.end:.2f} s"
