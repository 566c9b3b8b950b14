"""What gen.audio step 11 (see its docstring) makes, and from what, with their fingerprints; encode.py encodes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from common.config.paths import require_file
from common.formats.srt import Cue
from common.run.errors import ConfigError
from common.state.checkpoints import fingerprint
from common.video.captions import CaptionFont, format_ass
from common.video.encode import RECIPE, SHORTS_SIZE, encode_short, encode_still, remux_video
from common.video.shorts import Passage, captions_in

MAX_SHORT_SECONDS = 180.0  # YouTube counts vertical videos up to 3 minutes as Shorts


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); even sizes only, as yuv420p needs."""
    try:
        width, height = (int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"a video size is written WIDTHxHEIGHT (e.g. 1280x720), not {text!r}.") from None
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ConfigError(f"the video size {text} must be at least 16x16 with even width and height.")
    return width, height


def check_settings(s: Any) -> None:
    """Refuse impossible settings before any encode, not after final.mp4 took its time."""
    parse_size(s.FINAL_VIDEO_SIZE)
    if not 0 < s.SHORTS_SECONDS <= MAX_SHORT_SECONDS:
        raise ConfigError(f"SHORTS_SECONDS is {s.SHORTS_SECONDS:g}; use more than 0 and at most {MAX_SHORT_SECONDS:g} "
                          "(YouTube treats longer vertical videos as ordinary videos).")
    if s.SHORTS_VARIATIONS < 0:
        raise ConfigError(f"SHORTS_VARIATIONS is {s.SHORTS_VARIATIONS}; use 0 or more.")


def file_identity(path: Path, *, hash_below: int = 64 << 20) -> Any:
    """Small files by content; big media by name, size and mtime, so an idle rerun reads no gigabytes."""
    path = Path(path)
    stat = path.stat()
    if stat.st_size < hash_below:
        return path
    return {"file": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


@dataclass(frozen=True)
class FinalVideo:
    """final.mp4: `source` (the thumbnail, or --video-file's video) over `wav`."""

    dst: Path
    wav: Path
    source: Path
    from_video: bool
    size: tuple[int, int]
    audio_bitrate: str

    def fingerprint(self) -> str:
        return fingerprint(self.dst.name, RECIPE, "video" if self.from_video else "still", self.size,
                           self.audio_bitrate, file_identity(self.wav), file_identity(self.source))

    def make(self) -> tuple[list[Path], dict[str, Any]]:
        if self.from_video:
            info, how = remux_video(self.source, self.wav, self.dst, size=self.size, audio_bitrate=self.audio_bitrate)
        else:
            info = encode_still(self.source, self.wav, self.dst, size=self.size, audio_bitrate=self.audio_bitrate)
            how = "still"
        return [self.dst], {"duration": round(info.duration, 3), "picture": how,
                            "size": f"{info.video.width}x{info.video.height}"}


def plan_final(output_dir: Path, wav: Path, video: Path | None, size: tuple[int, int],
               audio_bitrate: str) -> FinalVideo:
    thumbnail = output_dir / "thumbnail.png"
    source = video or require_file(thumbnail, "the thumbnail", "run 10.thumbnail.py first; it draws it.")
    return FinalVideo(output_dir / "final.mp4", wav, source, video is not None, size, audio_bitrate)


@dataclass(frozen=True)
class Short:
    """One Short: `passage` of `wav` over `picture` (a cover, the thumbnail, or --video-file), `captions` burned in."""

    key: str  # shorts.vN
    dst: Path
    passage: Passage
    picture: Path
    captions: tuple[Cue, ...]  # timed from the Short's start
    wav: Path
    font: CaptionFont
    audio_bitrate: str
    from_video: bool

    def describe(self) -> str:
        p = self.passage
        cut = "" if p.clean_end == "sentence" else f" (no sentence end fits: cut at a {p.clean_end} end)"
        return (f"  {self.key}: {clock(p.start)}-{clock(p.end)} ({p.duration:.1f} s) from line {p.first_line}, "
                f"{p.reason}{cut}, over {self.picture.name}")

    def fingerprint(self) -> str:
        p = self.passage
        shown = format_ass(self.captions, SHORTS_SIZE, self.font)  # texts, times, style, font
        return fingerprint(self.key, RECIPE, SHORTS_SIZE, round(p.start, 3), round(p.end, 3), round(p.fade_out, 3),
                           shown, Path(self.font.file).name, self.audio_bitrate, file_identity(self.wav),
                           file_identity(self.picture), self.from_video)

    def make(self) -> tuple[list[Path], dict[str, Any]]:
        p = self.passage
        info = encode_short(self.picture, self.wav, self.dst, start=p.start, end=p.end, captions=self.captions,
                            font=self.font, fade_in=p.fade_in, fade_out=p.fade_out, from_video=self.from_video,
                            audio_bitrate=self.audio_bitrate)
        return [self.dst], {"start": round(p.start, 3), "end": round(p.end, 3), "duration": round(info.duration, 3),
                            "first_line": p.first_line, "reason": p.reason}


def plan_shorts(passages: Sequence[Passage], cues: Sequence[Cue], *, output_dir: Path, wav: Path,
                video: Path | None, font: CaptionFont, audio_bitrate: str) -> list[Short]:
    shorts_dir = output_dir / "shorts"

    def picture(number: int) -> Path:
        cover = shorts_dir / f"cover.v{number}.png"
        if video is not None:
            return video
        if cover.is_file() and cover.stat().st_size > 0:
            return cover
        return require_file(output_dir / "thumbnail.png", "the thumbnail",
                            "run 10.thumbnail.py first; it draws it and the Shorts covers.")

    return [Short(f"shorts.v{n}", shorts_dir / f"shorts.v{n}.mp4", p, picture(n),
                  tuple(captions_in(cues, p.start, p.end)), wav, font, audio_bitrate, video is not None)
            for n, p in enumerate(passages, 1)]


def remove_stale_shorts(shorts_dir: Path, keep: Sequence[str]) -> list[Path]:
    """Shorts from a run with more SHORTS_VARIATIONS: 12.youtube.py must not upload them."""
    stale = [path for path in shorts_dir.glob("shorts.v*.mp4") if path.stem not in keep] if shorts_dir.is_dir() else []
    for path in stale:
        path.unlink()
    return stale
