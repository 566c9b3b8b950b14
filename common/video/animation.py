"""How a scene's clip is cut into model jobs: frame rules, maximum lengths, chained segments.

Pure arithmetic, no I/O, so every rule is tested on its own. Video models take only certain
frame counts (LTX 8n+1, WAN 4n+1: one latent frame per 8 or 4 pixel frames, plus the first)
and only so many of them; a scene slot on the narration's timeline is whatever length the
speech made it. So a slot becomes one job rounded up to the model's rule and trimmed back, or,
past the model's maximum, several segments where each starts from the previous one's last
frame: that shared frame is dropped from the later segment when joining, so motion continues
without a repeated frame or a jump.

Trimming only ever shortens the *last* segment: cutting the tail of an earlier one would make
the next segment start from a frame the viewer never saw. When the last segment must end on a
given picture (first-last-frame mode: the next scene's image), it is retimed instead of cut:
evenly spaced frames are kept, first and last included, so the clip still lands exactly on it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from common.run.errors import ConfigError, InputError

MODELS: tuple[str, ...] = ("ltx", "wan")
# Frames per latent frame of each model family: a job's length must be step * n + 1.
MODEL_FRAME_STEPS: dict[str, int] = {"ltx": 8, "wan": 4}


@dataclass(frozen=True)
class FrameRule:
    """Which frame counts a model accepts: `step * n + 1` (step 1: any), at most `max_seconds` long.

    A model's length limit is stated in seconds (WAN: 81 frames at 16 fps is "5 seconds", 80
    intervals), so the longest job at `fps` is `max_seconds * fps + 1` frames, rounded down to
    the rule. `max_seconds=None` means no limit (the offline engine).
    """

    step: int = 1
    max_seconds: float | None = None
    name: str = "any"

    def __post_init__(self) -> None:
        if self.step < 1:
            raise ValueError(f"a frame step must be at least 1, not {self.step}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"a maximum clip length must be positive, not {self.max_seconds}")

    @property
    def min_frames(self) -> int:
        """The shortest job: one latent frame past the first (LTX 9, WAN 5); 1 for step 1."""
        return 1 if self.step == 1 else self.step + 1

    def valid(self, frames: int) -> bool:
        return frames >= self.min_frames and (frames - 1) % self.step == 0

    def round_up(self, frames: int) -> int:
        frames = max(self.min_frames, frames)
        return 1 + math.ceil((frames - 1) / self.step) * self.step

    def round_down(self, frames: int) -> int:
        if frames < self.min_frames:
            return self.min_frames
        return 1 + ((frames - 1) // self.step) * self.step

    def max_frames(self, fps: float) -> int | None:
        if self.max_seconds is None:
            return None
        return self.round_down(math.floor(self.max_seconds * fps + 1e-6) + 1)


def model_rule(model: str, max_seconds: dict[str, float] | None) -> FrameRule:
    if model not in MODEL_FRAME_STEPS:
        raise ConfigError(f"VIDEO_WORKFLOW is {model!r}; use one of {', '.join(MODELS)}.")
    limits = max_seconds or {}
    seconds = limits.get(model)
    if seconds is not None:
        try:
            seconds = float(seconds)
        except (TypeError, ValueError):
            seconds = None
        if seconds is None or not seconds > 0:
            raise ConfigError(f"MODEL_MAX_SECONDS[{model!r}] is {limits.get(model)!r}; give a positive number of seconds.")
    return FrameRule(MODEL_FRAME_STEPS[model], seconds, model)


# ---------------------------------------------------------------- segments

@dataclass(frozen=True)
class Segment:
    """One model job of a clip.

    `frames` is what the job is asked for; when joining, the first frame is skipped if
    `drop_first` (it repeats the previous segment's last frame) and `keep` frames are taken
    from the rest: the first `keep` of them, or with `retime` `keep` evenly spaced ones that
    include the last (so a clip that must end on a picture does).
    """

    index: int
    frames: int
    drop_first: bool
    keep: int
    retime: bool = False

    def frame_indices(self) -> list[int]:
        """Which frames of this segment's job go into the clip, in order."""
        base = 1 if self.drop_first else 0
        available = self.frames - base
        if self.keep > available or self.keep < 1:
            raise ValueError(f"segment {self.index} cannot keep {self.keep} of {available} frames")
        if not self.retime or self.keep == available:
            return list(range(base, base + self.keep))
        if self.keep == 1:
            return [self.frames - 1]
        span = available - 1
        return [base + round(i * span / (self.keep - 1)) for i in range(self.keep)]


@dataclass(frozen=True)
class ClipPlan:
    frames: int
    segments: tuple[Segment, ...]

    @property
    def direct(self) -> bool:
        """One job that is already exactly the clip: nothing to join or trim."""
        return len(self.segments) == 1 and self.segments[0].frames == self.frames

    def to_json(self) -> dict[str, object]:
        return {"frames": self.frames, "segments": [[s.frames, s.drop_first, s.keep, s.retime] for s in self.segments]}


def _segments(frames: int, count: int, size: int, rule: FrameRule, retime_last: bool) -> tuple[Segment, ...]:
    """`count` segments, all but the last of `size` frames; the last takes the rest (and the trim)."""
    before = size + (count - 2) * (size - 1) if count > 1 else 0  # frames the earlier segments give
    rest = frames - before  # still needed from the last one
    if count == 1:
        last = rule.round_up(frames)
        return (Segment(0, last, False, frames, retime_last and last != frames),)
    last = rule.round_up(rest + 1)
    segments = [Segment(0, size, False, size)]
    segments += [Segment(i, size, True, size - 1) for i in range(1, count - 1)]
    segments.append(Segment(count - 1, last, True, rest, retime_last and last - 1 != rest))
    return tuple(segments)


def plan_clip(frames: int, rule: FrameRule, fps: float, *, ends_on_image: bool = False) -> ClipPlan:
    """The fewest, most even segments that make a clip of exactly `frames` frames under `rule`.

    `ends_on_image`: the last job ends on a given picture (first-last-frame), so its surplus
    frames are removed by retiming rather than by cutting the end off.
    """
    if frames < 1:
        raise InputError(f"A clip needs at least one frame, not {frames}; check the scene's duration in the timeline.")
    most = rule.max_frames(fps)
    if most is None or frames <= most:
        return ClipPlan(frames, _segments(frames, 1, 0, rule, ends_on_image))
    if most < 2:
        raise ConfigError(f"A {rule.max_seconds} s limit at {fps} fps leaves no room to chain segments; raise MODEL_MAX_SECONDS.")
    # Each segment after the first adds (size - 1) new frames.
    count = 1 + math.ceil((frames - most) / (most - 1))
    while True:
        # Even segments, rounded to the rule; shrink them while the earlier ones alone would
        # already cover the clip, so the last one still has new frames to add.
        size = min(most, rule.round_up(math.ceil((frames - 1) / count) + 1))
        while size - rule.step >= rule.min_frames and size + (count - 2) * (size - 1) >= frames:
            size -= rule.step
        before = size + (count - 2) * (size - 1)
        rest = frames - before
        if rest >= 1 and rule.round_up(rest + 1) <= most:
            return ClipPlan(frames, _segments(frames, count, size, rule, ends_on_image))
        count += 1  # only when rounding left the last segment too long


def slot_frames(start: float, end: float, fps: float) -> int:
    """Frames of a slot on the timeline, from frame-exact boundaries so slots add up exactly."""
    return max(0, round(end * fps) - round(start * fps))


def fill_slots(starts: Sequence[float], total_frames: int, fps: float) -> list[int]:
    """Frames of each shot in a video of `total_frames`: frame-exact starts, the last shot running
    to the end. The narration's mix may be a little longer or shorter than the timeline says (a
    tail, a resample); only the last shot absorbs that, and shots past the end get no frames."""
    bounds = [min(total_frames, max(0, round(start * fps))) for start in starts]
    if bounds:
        bounds[0] = 0
    ends = bounds[1:] + [total_frames]
    return [max(0, end - begin) for begin, end in zip(bounds, ends)]


# ---------------------------------------------------------------- camera moves

# Ken Burns moves (common.offline.kenburns.MOVES) and how a motion prompt says them.
CAMERA_PHRASES: dict[str, str] = {
    "zoom_in": "The camera slowly pushes in.",
    "zoom_out": "The camera slowly pulls back.",
    "pan_left": "The camera pans slowly to the left.",
    "pan_right": "The camera pans slowly to the right.",
    "pan_up": "The camera tilts slowly up.",
    "pan_down": "The camera tilts slowly down.",
}
_CAMERA_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("zoom_in", re.compile(r"\b(push(es|ing)?|zoom(s|ing)?|dolly|dollies|move[sd]?|creep(s|ing)?)\s+(slowly\s+)?in(wards?|to)?\b", re.I)),
    ("zoom_out", re.compile(r"\b(pull(s|ing)?|zoom(s|ing)?|dolly|dollies|draw(s|ing)?|move[sd]?)\s+(slowly\s+)?(back|out|away)\b", re.I)),
    ("pan_left", re.compile(r"\b(pan(s|ning)?|track(s|ing)?|truck(s|ing)?|drift(s|ing)?)\s+(slowly\s+)?(to\s+the\s+)?left\b", re.I)),
    ("pan_right", re.compile(r"\b(pan(s|ning)?|track(s|ing)?|truck(s|ing)?|drift(s|ing)?)\s+(slowly\s+)?(to\s+the\s+)?right\b", re.I)),
    ("pan_up", re.compile(r"\b(tilt(s|ing)?|pan(s|ning)?|crane(s)?|rise(s)?|rising)\s+(slowly\s+)?up(wards?)?\b", re.I)),
    ("pan_down", re.compile(r"\b(tilt(s|ing)?|pan(s|ning)?|crane(s)?|descend(s|ing)?)\s+(slowly\s+)?down(wards?)?\b", re.I)),
)


def camera_move_in(text: str) -> str | None:
    """("pushes in" -> zoom_in): the offline engine cannot animate people but can honour the camera line."""
    found: list[tuple[int, str]] = []
    for move, pattern in _CAMERA_WORDS:
        match = pattern.search(text)
        if match:
            found.append((match.start(), move))
    return min(found)[1] if found else None
