"""Frame-exact video plumbing for gen.video: last frames, joined segments, the final video.

Clips are decoded with PyAV and their frames streamed, already in the output's Y'CbCr 4:2:0
layout and size, into one ffmpeg encoder. Working on frames rather than timestamps is what
keeps everything exact: a segment joins the previous one by dropping its first frame (the
previous one's last, which it started from), a clip fills its scene's slot to the frame, and
a clip that came back short is padded by holding its last frame instead of drifting the
picture away from the narration. Memory stays at a few frames whatever the length.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from common.media import ffmpeg as media
from common.state.atomic import atomic_path
from common.run.errors import InputError, PipelineError



def last_frame(video: Path, png: Path) -> Path:
    """The video's last frame as a PNG (the start picture of the segment that continues it).

    ffmpeg seeks to just before the end and keeps overwriting one image, so the file left is
    the last frame decoded, whatever the container's index says.
    """
    video, png = Path(video), Path(png)
    duration = media.probe(video).duration
    seek = ["-sseof", "-1.5"] if duration > 2.0 else []
    with atomic_path(png) as tmp:
        media.run_ffmpeg([*seek, "-i", media.ff_path(video), "-map", "0:v:0", "-an", "-update", "1",
                          "-f", "image2", "-c:v", "png", media.ff_path(tmp)],
                         what=f"taking the last frame of {video.name}")
        if not tmp.stat().st_size:
            raise InputError(f"{video} has no video frame to continue from; delete it and run again.")
    return png


def frames_of(video: Path, width: int, height: int) -> Iterator[bytes]:
    """Each frame of `video` as yuv420p bytes at width x height (scaled if the model made another size)."""
    import av

    try:
        container = av.open(str(video))
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{video} is not a video ffmpeg can read ({exc}); delete it and run the step that makes it.") from exc
    with container:
        if not container.streams.video:
            raise InputError(f"{video} has no video stream; delete it and run the step that makes it.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.width != width or frame.height != height or frame.format.name != "yuv420p":
                    frame = frame.reformat(width=width, height=height, format="yuv420p")
                yield frame.to_ndarray().tobytes()
        except av.FFmpegError as exc:
            raise InputError(f"{video} is damaged ({exc}); delete it and run the step that makes it.") from exc


def pick(frames: Iterable[bytes], indices: Sequence[int]) -> Iterator[bytes]:
    """The frames at `indices` (ascending, repeats allowed); past the end, the last frame again.

    A job that returned fewer frames than asked (a user's workflow, a VHS quirk) is held on
    its last frame rather than failing a night's run; the shortfall is reported by the caller.
    """
    wanted = iter(indices)
    target = next(wanted, None)
    last: bytes | None = None
    position = -1
    for position, frame in enumerate(frames):
        last = frame
        while target is not None and target == position:
            yield frame
            target = next(wanted, None)
        if target is None:
            return
    if last is None:
        return
    while target is not None:
        yield last
        target = next(wanted, None)


def _encoder_args(width: int, height: int, fps: float, out: Path, *, audio: Path | None, crf: int) -> list[str]:
    rate = Fraction(fps).limit_denominator(1001)
    args = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-framerate", str(rate),
            "-i", "pipe:0"]
    if audio is not None:
        args += ["-i", media.ff_path(audio), "-map", "0:v:0", "-map", "1:a:0",
                 "-c:a", "aac", "-b:a", "192k", "-ar", "48000"]
    else:
        args += ["-an"]
    args += ["-r", str(rate), "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
             "-x264-params", media.X264_REPEATABLE, "-pix_fmt", "yuv420p",
             "-movflags", "+faststart", "-f", "mp4", media.ff_path(out)]
    return args


def encode(frames: Iterable[bytes], out: Path, *, width: int, height: int, fps: float, audio: Path | None = None,
           crf: int = 18) -> int:
    """Encode raw yuv420p frames (and an audio track) into an H.264 MP4, atomically; returns the frame count."""
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise InputError(f"Video size {width}x{height} is not usable for H.264 4:2:0; use even sizes of 16 or more.")
    out = Path(out)
    with atomic_path(out) as tmp:
        count = media.pipe_to_ffmpeg(_encoder_args(width, height, fps, tmp, audio=audio, crf=crf), frames,
                                     what=f"encoding {out.name}")
        if count == 0:
            raise PipelineError(f"no frames to encode into {out.name}; check the clips it is made from.")
    return count


def join_segments(parts: Sequence[tuple[Path, Sequence[int]]], out: Path, *, width: int, height: int,
                  fps: float) -> int:
    """One clip from segment files, taking the given frames of each (see animation.Segment.frame_indices)."""
    def stream() -> Iterator[bytes]:
        for path, indices in parts:
            yield from pick(frames_of(path, width, height), indices)

    return encode(stream(), out, width=width, height=height, fps=fps)


def assemble(clips: Sequence[tuple[Path, int]], audio: Path, out: Path, *, width: int, height: int,
             fps: float) -> int:
    """The final video: each clip fitted to its frame count, back to back, over `audio`."""
    def stream() -> Iterator[bytes]:
        for path, count in clips:
            if count > 0:
                yield from pick(frames_of(path, width, height), range(count))  # held on its last if short

    return encode(stream(), out, width=width, height=height, fps=fps, audio=audio, crf=20)


def decoded_frame_count(video: Path) -> int:
    """Frames in a video, by decoding it (container indexes can be missing or wrong)."""
    import av

    with av.open(os.fspath(video)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))
