"""gen.image's video: one clip per scene over its time on the narration, then merged.mp4.

Cuts are placed on the cumulative timeline: frame k of the merged video belongs to the scene
whose interval [start, next start) contains k/fps, so scene j gets
ceil(next_start*fps) - ceil(start*fps) frames and the whole video round(total*fps), whatever
the number of scenes. Rounding each clip's own length instead would drift by up to half a
frame per cut: minutes over an hour-long story of short lines.

Clips are encoded alike (same size, rate and encoder settings), so merged.mp4 is their
concatenation by ffmpeg's concat demuxer with stream copy: nothing is encoded twice. Should
clips from different encoder settings ever meet, they are decoded and encoded once instead.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from common.media import ffmpeg as media
from common.state.atomic import atomic_path
from common.run.errors import InputError, PipelineError
from common.formats.timeline import ScriptTimeline
from common.video.storyboard import build_storyboard

VERSION = 1
_PRECISION = 10**6  # starts are read to the microsecond: float noise never moves a cut


def frame_rate(fps: float | int | str) -> Fraction:
    """24 -> 24/1, 29.97 -> 2997/100, '30000/1001' -> 30000/1001."""
    rate = Fraction(str(fps)) if isinstance(fps, str) else Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise InputError(f"VIDEO_FPS must be positive, not {fps}.")
    return rate


def total_frames(seconds: float, fps: Fraction) -> int:
    return round(Fraction(round(seconds * _PRECISION), _PRECISION) * fps)


def cut_frames(starts: Sequence[float], seconds: float, fps: Fraction) -> list[int]:
    """Frames of each scene in a video of `seconds`: scene j owns the frames k with
    starts[j] <= k/fps < starts[j+1]; the first scene starts at 0, the last runs to the end, and a
    scene shorter than a frame may get none."""
    total = total_frames(seconds, fps)
    bounds: list[int] = []
    for index, start in enumerate(starts):
        exact = Fraction(round(start * _PRECISION), _PRECISION) * fps
        at = 0 if index == 0 else min(total, max(0, math.ceil(exact)))
        bounds.append(max(at, bounds[-1]) if bounds else at)
    ends = bounds[1:] + [total]
    return [end - begin for begin, end in zip(bounds, ends)]


@dataclass(frozen=True)
class Slide:
    """One clip: `clip` names its file (`scene_1.2`, or `scene_1.2_2` when a scene comes back later)."""

    clip: str
    scene_id: str
    first_frame: int
    frames: int


def plan_slides(timeline: ScriptTimeline, seconds: float, fps: Fraction) -> list[Slide]:
    """The timeline's shots (consecutive entries of one scene merged, pauses on the scene before
    them) cut to frames over a video of `seconds`; shots too short for a frame are left out."""
    shots = build_storyboard(timeline).shots
    counts = cut_frames([shot.start for shot in shots], seconds, fps)
    slides: list[Slide] = []
    at = 0
    for shot, count in zip(shots, counts):
        if count > 0:
            slides.append(Slide(shot.clip, shot.scene_id, at, count))
        at += count
    return slides


def render_clip(picture: Path, out: Path, *, frames: int, fps: Fraction, width: int, height: int,
                push: bool, zoom: float, fit: str, seed_text: str) -> Path:
    """A held picture (or a slow push over it) of exactly `frames` frames."""
    from common.offline.kenburns import ken_burns, still_video

    seconds = float(Fraction(frames) / fps)  # kenburns turns it back into exactly `frames` frames
    if push:
        ken_burns(picture, out, seconds=seconds, width=width, height=height, fps=float(fps), seed_text=seed_text,
                  zoom=zoom, fit=fit)
    else:
        still_video(picture, out, seconds, width, height, fps=float(fps), fit=fit)
    check_frames(out, frames, "came out with", "delete it and run again.")
    return out


def check_frames(path: Path, frames: int, verb: str, fix: str) -> None:
    made = media.probe(path).video
    if made is None or (made.frames is not None and made.frames != frames):
        raise PipelineError(f"{path.name} {verb} {made.frames if made else 0} frames instead of {frames}; {fix}")


def _extradata(path: Path) -> bytes:
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        return bytes(ctx.extradata or b"") + f"|{ctx.name}|{ctx.width}x{ctx.height}|{ctx.pix_fmt}|{stream.average_rate}".encode()


def _concat_line(path: Path) -> str:
    escaped = str(Path(path).absolute()).replace("'", "'\\''")
    return f"file 'file:{escaped}'"


def join_clips(clips: Sequence[Path], out: Path, *, fps: Fraction, width: int, height: int) -> str:
    """merged.mp4 from the clips in order; returns how: "stream copy" or "encoded once"."""
    if not clips:
        raise InputError("there are no scene clips to join; check input/2.timeline.script.txt (run 4.audio.py).")
    out = Path(out)
    if len({_extradata(c) for c in clips}) == 1:
        with tempfile.TemporaryDirectory(prefix="concat-", dir=out.parent) as folder:
            listing = Path(folder) / "clips.ffconcat"
            listing.write_text("ffconcat version 1.0\n" + "".join(_concat_line(c) + "\n" for c in clips), encoding="utf-8")
            with atomic_path(out) as tmp:
                media.run_ffmpeg(["-f", "concat", "-safe", "0", "-i", media.ff_path(listing), "-map", "0:v:0",
                                  "-c", "copy", "-movflags", "+faststart", "-f", "mp4", media.ff_path(tmp)],
                                 what=f"joining {len(clips)} clips into {out.name}")
        return "stream copy"
    from common.video import clips as clip_frames

    def frames():
        for clip in clips:
            yield from clip_frames.frames_of(clip, width, height)

    clip_frames.encode(frames(), out, width=width, height=height, fps=float(fps))
    return "encoded once"


def mux(video: Path, audio: Path, out: Path, *, bitrate: str) -> None:
    """The picture stream copied as it is, the sound as AAC, the index at the front (faststart)."""
    with atomic_path(out) as tmp:
        media.run_ffmpeg(["-i", media.ff_path(video), "-i", media.ff_path(audio), "-map", "0:v:0", "-map", "1:a:0",
                          "-c:v", "copy", "-c:a", "aac", "-b:a", bitrate, "-ar", "48000",
                          "-movflags", "+faststart", "-f", "mp4", media.ff_path(tmp)],
                         what=f"putting {audio.name} under {video.name}")


def check_combined(out: Path, *, audio_seconds: float, fps: float) -> media.MediaInfo:
    """final_sd.mp4 has H.264 picture and AAC sound, each as long as the narration (within a frame,
    plus AAC's own frame of padding)."""
    info = media.probe(out)
    video, sound = info.video, info.audio
    if video is None or sound is None or video.codec != "h264" or sound.codec != "aac":
        raise PipelineError(f"{out} lacks its H.264 picture or AAC sound; delete it and run 6.combine.py again.")
    tolerance = 1.0 / fps + 0.05
    for what, seconds in (("picture", video.duration), ("sound", sound.duration)):
        if seconds is not None and abs(seconds - audio_seconds) > tolerance:
            raise PipelineError(f"{out.name}'s {what} lasts {seconds:.3f} s but the narration {audio_seconds:.3f} s; "
                                "run 4.audio.py and 5.video.py again so they match.")
    return info

