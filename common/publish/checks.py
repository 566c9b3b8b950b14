"""Refuse to publish what should not be published: offline previews and broken video files.

An upload costs a day's quota share and may notify subscribers, so the file is checked
first the way YouTube and a viewer would see it: an MP4 with H.264 video and AAC audio, as
long as the story's final.wav, neither silent nor black. The offline engine's output is a
preview (storyboard cards, eSpeak voices): its checkpoints say so, and it is refused unless
the user asks for it with --allow-preview.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.config.paths import is_pipeline_dir
from common.state.checkpoints import CLEANED_SUFFIX, read_cleaned_mark, read_entries
from common.formats.srt import read_srt
from common.run.errors import InputError
from common.media.ffmpeg import audio_duration, ff_path, ffmpeg_log, probe

OWN_STATE = "12.youtube.state.json"
DURATION_TOLERANCE = 1.0  # seconds between the video and final.wav
SILENCE_DB = -50  # quieter than this is silence
BLACK_PIXEL_THRESHOLD = 0.10  # blackdetect pix_th: fraction of full luma that still counts as black
MIN_SPAN = 0.5  # seconds: shorter dips do not count as silent/black
MAX_DEAD_FRACTION = 0.9  # more of the video than this silent (or black) = broken
SHORTS_MAX_SECONDS = 180.0
THUMBNAIL_MAX_BYTES = 2 * 1024 * 1024
VIDEO_CODEC = "h264"
AUDIO_CODEC = "aac"

_SILENCE_START = re.compile(r"silence_start:\s*(-?[\d.]+)")
_SILENCE_END = re.compile(r"silence_end:\s*(-?[\d.]+)")
_BLACK = re.compile(r"black_start:\s*(-?[\d.]+)\s+black_end:\s*(-?[\d.]+)")


def tracking_dir_for(video: Path) -> Path | None:
    """The checkpoints of the pipeline that made `video`: the nearest `tracking/` folder above it.

    output/final.mp4 -> output/tracking; output/shorts/shorts.v1.mp4 -> output/tracking.
    """
    for folder in list(Path(video).resolve().parents)[:3]:
        candidate = folder / "tracking"
        if candidate.is_dir():
            return candidate
        if is_pipeline_dir(folder):  # reached the pipeline folder itself (or a story workspace's)
            break
    return None


def preview_evidence(video: Path, warn: Any = print) -> bool | None:
    """True: the pipeline that made `video` made something as an offline-engine preview; False: it made
    everything for real; None: it cannot tell (its checkpoints are gone). A video outside any pipeline
    folder counts as real: it is the user's own file.

    A script's state file says it, or, once CLEANUP_TRACKING_FILES removed that file, the
    `<script>.cleaned.json` mark CheckpointStore.finish leaves in its place."""
    tracking = tracking_dir_for(video)
    if tracking is None:
        return False
    seen = set()
    for state in sorted(tracking.glob("*.state.json")):
        if state.name == OWN_STATE:
            continue
        seen.add(state.name.removesuffix(".state.json"))
        # Other scripts' files are read, never written: one of them may be running (read_entries deletes nothing).
        if any(entry.get("preview") for entry in read_entries(state, bookkeeping=True).values()):
            return True
    for mark in sorted(tracking.glob(f"*{CLEANED_SUFFIX}")):
        if mark.name.removesuffix(CLEANED_SUFFIX) in seen:
            continue  # the script ran again since: its state file is the newer word
        seen.add(mark.name)
        if read_cleaned_mark(mark).get("preview", True):  # an unreadable mark proves nothing
            return True
    if seen:
        return False
    # Nothing left to tell: in a pipeline folder (it has scripts/) the checkpoints were removed, so no
    # one can say; anywhere else the tracking folder is only step 12's own and the file the user's.
    return None if is_pipeline_dir(tracking.parent.parent) else False


def made_as_preview(video: Path, warn: Any = print) -> bool:
    """True when any checkpoint of the pipeline that made `video` is an offline-engine preview, or
    when nothing is left to tell."""
    return preview_evidence(video, warn=warn) is not False


def refuse_preview(video: Path, allow: bool, warn: Any = print) -> bool:
    evidence = preview_evidence(video, warn=warn)
    if evidence is None and not allow:
        raise InputError(
            f"cannot tell whether {video} is the real video or an offline-engine preview: the checkpoints in "
            f"{tracking_dir_for(video)} that would say so are gone; run the pipeline again to remake them, or "
            "pass --allow-preview if you know this is the video to publish."
        )
    if evidence and not allow:
        raise InputError(
            f"{video} was made by the offline engine (a preview: storyboard cards and eSpeak voices, see "
            f"{tracking_dir_for(video)}); run the pipeline with ComfyUI and an LLM server for the real video, "
            "or pass --allow-preview to upload the preview anyway."
        )
    return evidence is not False


@dataclass(frozen=True)
class VideoCheck:
    """What the pre-upload check measured; kept in the manifest and the checkpoint."""

    file: str
    size: int
    duration: float
    width: int
    height: int
    video_codec: str
    audio_codec: str
    silent_seconds: float
    black_seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _spans(log: str, duration: float) -> tuple[float, float]:
    """Seconds of silence and of black reported by silencedetect / blackdetect in one ffmpeg log."""
    silent = 0.0
    start: float | None = None
    for line in log.splitlines():
        begun = _SILENCE_START.search(line)
        if begun:
            start = max(0.0, float(begun.group(1)))
            continue
        ended = _SILENCE_END.search(line)
        if ended and start is not None:
            silent += max(0.0, float(ended.group(1)) - start)
            start = None
    if start is not None:  # silence that runs to the end of the file
        silent += max(0.0, duration - start)
    black = sum((max(0.0, float(b) - float(a)) for a, b in _BLACK.findall(log)), 0.0)
    return silent, black


def measure_dead_air(path: Path, duration: float) -> tuple[float, float]:
    """(silent seconds, black seconds) of a video, in one decoding pass."""
    log = ffmpeg_log(
        ["-i", ff_path(path), "-map", "0:v:0", "-map", "0:a:0",
         "-vf", f"blackdetect=d={MIN_SPAN}:pix_th={BLACK_PIXEL_THRESHOLD}",
         "-af", f"silencedetect=n={SILENCE_DB}dB:d={MIN_SPAN}", "-f", "null", "-"],
        what=f"checking {path.name} for silence and black frames",
    )
    return _spans(log, duration)


def check_video(path: Path, *, what: str, reference_audio: Path | None = None,
                vertical: bool = False, max_duration: float | None = None) -> VideoCheck:
    """`reference_audio` (final.wav) fixes the length the video must have (+-1 s)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{what} {path} is missing or empty; run the step that renders it (11.video.py) first.")
    info = probe(path)
    fix = "render it again (11.video.py writes H.264/AAC MP4)"
    if path.suffix.lower() != ".mp4" or "mp4" not in info.format:
        raise InputError(f"{what} {path} is not an MP4 file (format {info.format}); {fix}.")
    video, audio = info.video, info.audio
    if video is None or audio is None:
        raise InputError(f"{what} {path} has no {'video' if video is None else 'audio'} stream; {fix}.")
    if video.codec != VIDEO_CODEC or audio.codec != AUDIO_CODEC:
        raise InputError(f"{what} {path} is {video.codec}/{audio.codec}, YouTube uploads here must be "
                         f"{VIDEO_CODEC}/{AUDIO_CODEC}; {fix}.")
    duration = info.duration
    if reference_audio is not None:
        if not Path(reference_audio).is_file():
            raise InputError(f"{reference_audio} (the audio the video must match) is missing; run 8.combine.py, "
                             "or pass --audio-file with the audio the video was made from.")
        expected = audio_duration(reference_audio)
        if abs(duration - expected) > DURATION_TOLERANCE:
            raise InputError(f"{what} {path} lasts {duration:.1f} s but {Path(reference_audio).name} lasts "
                             f"{expected:.1f} s; the video is stale or cut short, render it again (11.video.py).")
    width, height = video.width or 0, video.height or 0
    if vertical and not height > width:
        raise InputError(f"{what} {path} is {width}x{height}; a Short must be vertical (e.g. 1080x1920).")
    if max_duration is not None and duration > max_duration:
        raise InputError(f"{what} {path} lasts {duration:.0f} s; YouTube counts only videos up to "
                         f"{max_duration:.0f} s as Shorts, render it shorter.")
    silent, black = measure_dead_air(path, duration)
    if duration > 0 and silent >= MAX_DEAD_FRACTION * duration:
        raise InputError(f"{what} {path} is silent for {silent:.1f} of {duration:.1f} s; check final.wav and render it again.")
    if duration > 0 and black >= MAX_DEAD_FRACTION * duration:
        raise InputError(f"{what} {path} is black for {black:.1f} of {duration:.1f} s; check the images and render it again.")
    return VideoCheck(str(path), path.stat().st_size, round(duration, 3), width, height,
                      video.codec, audio.codec, round(silent, 3), round(black, 3))


def check_thumbnail(path: Path) -> str:
    """The thumbnail's mimetype, once it is known to be a PNG or JPEG that YouTube takes."""
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"the thumbnail {path} is missing or empty; run 10.thumbnail.py, or pass --thumbnail-file.")
    size = path.stat().st_size
    if size > THUMBNAIL_MAX_BYTES:
        raise InputError(f"the thumbnail {path} is {size / 1e6:.1f} MB, YouTube takes at most 2 MB; "
                         "save it smaller (JPEG).")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    raise InputError(f"the thumbnail {path} is neither PNG nor JPEG; YouTube takes only those, render it again (10.thumbnail.py).")


def check_captions(path: Path) -> None:
    """Captions YouTube would take: an SRT holding at least one subtitle."""
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"the captions {path} are missing or empty; run 3.transcribe.py, or pass --captions-file.")
    if not read_srt(path).cues:
        raise InputError(f"the captions {path} hold no subtitle; run 3.transcribe.py again.")
