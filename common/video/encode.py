"""How gen.audio step 11 encodes final.mp4 (a still picture over final.wav) and the Shorts.

Speed comes from not encoding what does not change:
- final.mp4 from a still: one GOP (GOP_SECONDS at 24 fps: an IDR frame, then P-frames that
  are all "skip") is encoded once and stream-copied in a loop to the length of the sound,
  so a two-hour video costs one ten-second encode plus the AAC encode of its sound. The
  result is an ordinary constant 24 fps H.264 stream with a keyframe every GOP_SECONDS.
- a Short from a still: the picture only changes when a caption comes or goes, so only
  those frames and one every MAX_FRAME_GAP (1/8 s) are kept: variable frame rate on a
  24 fps grid, captions on time to 1/24 s, about a third of the encoding work of constant
  24 fps. The regular frames keep the stream dense enough that a player or transcoder that
  resamples to the average rate still shows each caption within 1/8 s. The captions are
  rendered by libass (ffmpeg's `ass` filter).
- a Short from a video (--video-file) is a real encode: every frame changes.

Every output is checked before it replaces the old one (`verify_video`): H.264 yuv420p,
AAC, the expected size and length, and the `moov` atom before `mdat` (faststart), so a
broken file never reaches the upload step.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageFilter

from common.state.atomic import atomic_path
from common.run.errors import InputError, PipelineError
from common.formats.srt import Cue
from common.media.ffmpeg import X264_REPEATABLE, MediaInfo, audio_duration, ff_path, filter_value, probe, run_ffmpeg
from common.video.captions import CaptionFont, ass_filter, format_ass

RECIPE = 1  # bump when an encode changes, so checkpoints of the old recipe are redone
FPS = 24
GOP_SECONDS = 10  # keyframe interval of final.mp4; the still GOP is encoded once and looped
MAX_FRAME_GAP = 0.125  # seconds between kept frames of a still Short, at most (8 fps or more)
SHORT_KEYINT = 80  # kept frames between keyframes of a still Short (<= 10 s, as final.mp4)
SHORTS_SIZE = (1080, 1920)
FINAL_SIZES = ((1280, 720), (1920, 1080))  # what SPEC 8 allows for the main video
DEFAULT_AUDIO_BITRATE = "192k"
_COLOR = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
_TO_YUV = "scale=out_color_matrix=bt709:out_range=tv:flags=lanczos,format=yuv420p"


# ------------------------------------------------------------------ pictures


def _cover(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scaled to cover `size`, centre-cropped: no distortion, no bars."""
    width, height = size
    scale = max(width / picture.width, height / picture.height)
    scaled = picture.resize((max(width, round(picture.width * scale)), max(height, round(picture.height * scale))),
                            Image.LANCZOS)
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))


def blurred_fill(picture: Image.Image, size: tuple[int, int], *, top_share: float = 0.5) -> Image.Image:
    """The whole picture fitted into `size`, over a blurred, darkened cover of itself.

    `top_share` places the picture vertically (0.5 = centred); a Short puts it a little
    above the middle so the captions below sit on the calm blurred part.
    """
    picture = picture.convert("RGB")
    width, height = size
    small = _cover(picture, (max(1, width // 16), max(1, height // 16)))  # blur small, scale up: same look, cheaper
    back = small.filter(ImageFilter.GaussianBlur(2)).resize(size, Image.BICUBIC)
    back = Image.eval(back, lambda v: int(v * 0.55))
    scale = min(width / picture.width, height / picture.height)
    shown = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.LANCZOS)
    back.paste(shown, ((width - shown.width) // 2, round((height - shown.height) * top_share)))
    return back


def fit_picture(picture: Image.Image, size: tuple[int, int], *, top_share: float = 0.5) -> Image.Image:
    """`picture` at exactly `size`: resized when the shape matches (within 1%), else a blurred fill."""
    picture = picture.convert("RGB")
    if picture.size == size:
        return picture
    if abs(picture.width / picture.height - size[0] / size[1]) <= 0.01 * size[0] / size[1]:
        return picture.resize(size, Image.LANCZOS)
    return blurred_fill(picture, size, top_share=top_share)


def vertical_cover(picture: Image.Image, size: tuple[int, int] = SHORTS_SIZE) -> Image.Image:
    """A 9:16 Short cover from a 16:9 thumbnail: the whole thumbnail above the middle, blurred around."""
    return fit_picture(picture, size, top_share=0.38)


def save_frame(picture: Image.Image, path: Path) -> Path:
    """PNG without compression effort: it is read once by ffmpeg and thrown away."""
    picture.convert("RGB").save(path, format="PNG", compress_level=1)
    return path


# ------------------------------------------------------------------ checks


def top_level_boxes(path: Path, limit: int = 64) -> list[str]:
    """Read from the box headers only (ftyp, moov, mdat, ...)."""
    boxes: list[str] = []
    size_total = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while offset + 8 <= size_total and len(boxes) < limit:
            handle.seek(offset)
            header = handle.read(16)
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = size_total - offset
            if size < 8:
                break
            boxes.append(kind)
            offset += size
    return boxes


def verify_video(path: Path, *, size: tuple[int, int], duration: float, what: str, fps: float = FPS) -> MediaInfo:
    """Length must match `duration` to one frame: the sound is cut exactly, the last frame may run on past it."""
    info = probe(path)
    video, audio = info.video, info.audio
    problems = []
    if video is None:
        problems.append("it has no video stream")
    else:
        if video.codec != "h264":
            problems.append(f"its video is {video.codec}, not h264")
        if video.pix_fmt != "yuv420p":
            problems.append(f"its pixel format is {video.pix_fmt}, not yuv420p")
        if (video.width, video.height) != tuple(size):
            problems.append(f"it is {video.width}x{video.height}, not {size[0]}x{size[1]}")
    if audio is None:
        problems.append("it has no audio stream")
    elif audio.codec != "aac":
        problems.append(f"its audio is {audio.codec}, not aac")
    tolerance = 1.0 / fps + 0.002  # + float rounding of the container times
    if abs(info.duration - duration) > tolerance:
        problems.append(f"it lasts {info.duration:.3f} s instead of {duration:.3f} s")
    boxes = top_level_boxes(Path(path))
    # `moov` (the index) before `mdat` (the data): playback starts before the download ends.
    if not ("moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")):
        problems.append("its index (moov) is not at the start (no faststart)")
    if problems:
        raise PipelineError(f"the encoded {what} is wrong: {'; '.join(problems)}. This is a bug or a broken ffmpeg; "
                            "run the step again, and report it if it repeats.")
    return info


# ------------------------------------------------------------------ encodes


def _x264(crf: int, extra: Sequence[str]) -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-x264-params", X264_REPEATABLE,
            "-pix_fmt", "yuv420p", *extra, *_COLOR]


def _scratch_dir(near: Path) -> "tempfile.TemporaryDirectory[str]":
    """A temporary folder beside the output (same disk), removed afterwards even on Ctrl+C."""
    near.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".video.", dir=near.parent)


def _write_mp4(dst: Path, args: Sequence[str], *, audio_bitrate: str, length: float, size: tuple[int, int],
               fps: float = FPS, what: str = "") -> MediaInfo:
    """The last ffmpeg run of every output: AAC sound, cut to `length`, faststart; checked before it lands."""
    with atomic_path(dst) as out:
        run_ffmpeg([*args, "-c:a", "aac", "-b:a", audio_bitrate, "-t", f"{length:.6f}", "-map_metadata", "-1",
                    "-movflags", "+faststart", "-f", "mp4", ff_path(out)], what=what or f"writing {dst.name}")
        return verify_video(out, size=size, duration=length, what=dst.name, fps=fps)


def _picture(source: Path | Image.Image) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    try:
        with Image.open(source) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise InputError(f"{source} is not a picture Pillow can read ({exc}); run 10.thumbnail.py again.") from exc


def _video_stream(video: Path) -> tuple[MediaInfo, float]:
    """The video's description and frame rate (FPS when the container does not say)."""
    info = probe(video)
    if info.video is None or not info.video.width or not info.video.height:
        raise InputError(f"{video} has no video stream; pass the video made by gen.image or gen.video "
                         "with --video-file.")
    return info, info.video.fps or FPS


def encode_still(picture: Path | Image.Image, audio: Path, dst: Path, *, size: tuple[int, int] = (1280, 720),
                 audio_bitrate: str = DEFAULT_AUDIO_BITRATE) -> MediaInfo:
    """final.mp4: `picture` for as long as `audio` lasts, one looped GOP (see the module's doc)."""
    audio = Path(audio)
    length = audio_duration(audio)
    if length <= 0:
        raise InputError(f"{audio} holds no sound; run 8.combine.py again.")
    image = _picture(picture)
    frames = max(1, min(GOP_SECONDS * FPS, math.ceil(length * FPS)))
    with _scratch_dir(dst) as tmp:
        frame = save_frame(fit_picture(image, size), Path(tmp) / "frame.png")
        gop = Path(tmp) / "gop.mp4"
        run_ffmpeg(
            ["-framerate", str(FPS), "-i", ff_path(frame),
             "-vf", f"{_TO_YUV},loop=loop=-1:size=1:start=0", "-frames:v", str(frames),
             *_x264(18, ["-tune", "stillimage", "-g", str(frames), "-keyint_min", str(frames),
                         "-sc_threshold", "0", "-bf", "0"]),
             "-an", "-f", "mp4", ff_path(gop)],
            what="encoding the still picture",
        )
        return _write_mp4(dst, ["-stream_loop", "-1", "-i", ff_path(gop), "-i", ff_path(audio),
                                "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy"],
                          audio_bitrate=audio_bitrate, length=length, size=size)


def remux_video(video: Path, audio: Path, dst: Path, *, size: tuple[int, int] = (1280, 720),
                audio_bitrate: str = DEFAULT_AUDIO_BITRATE) -> tuple[MediaInfo, str]:
    """final.mp4 from another pipeline's video: its picture (copied when YouTube-ready, else fitted with
    bars, its last frame held if short), final.wav's sound."""
    length = audio_duration(audio)
    info, fps = _video_stream(video)
    stream = info.video
    assert stream is not None
    source_length = stream.duration or info.duration
    copy = (stream.codec == "h264" and stream.pix_fmt == "yuv420p" and (stream.width, stream.height) in FINAL_SIZES
            and source_length >= length - 1.0 / fps)
    if copy:
        video_args = ["-c:v", "copy"]
    else:
        width, height = size
        chain = (f"scale={width}:{height}:force_original_aspect_ratio=decrease:flags=lanczos,"
                 f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,tpad=stop_mode=clone:stop=-1,"
                 "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p")
        video_args = ["-vf", chain, *_x264(20, ["-g", str(max(1, round(2 * fps)))])]
    result = _write_mp4(dst, ["-i", ff_path(video), "-i", ff_path(audio), "-map", "0:v:0", "-map", "1:a:0",
                              *video_args], audio_bitrate=audio_bitrate, length=length,
                        size=(stream.width, stream.height) if copy else size, fps=min(fps, FPS) if copy else fps,
                        what=f"writing {dst.name} from {Path(video).name}")
    return result, "copied" if copy else "re-encoded"


def kept_frames(length: float, cues: Sequence[Cue], fps: int = FPS, max_gap: float = MAX_FRAME_GAP) -> list[int]:
    """Frame numbers a still Short needs: the first and last, one every `max_gap`, and each caption change.

    A caption starting at t shows from the first frame at or after t, so it is never early
    and at most 1/fps late.
    """
    total = max(1, math.ceil(length * fps - 1e-6))
    step = max(1, round(max_gap * fps))
    keep = set(range(0, total, step)) | {total - 1}
    for cue in cues:
        for moment in (cue.start, cue.end):
            frame = math.ceil(moment * fps - 1e-6)
            if 0 <= frame < total:
                keep.add(frame)
    return sorted(keep)


def encode_short(
    source: Path | Image.Image, audio: Path, dst: Path, *, start: float, end: float, captions: Sequence[Cue],
    font: CaptionFont, fade_in: float, fade_out: float, from_video: bool = False,
    size: tuple[int, int] = SHORTS_SIZE, audio_bitrate: str = DEFAULT_AUDIO_BITRATE,
) -> MediaInfo:
    """`source` is a picture, or with `from_video` a video cut at the same times, cropped (never stretched).

    `captions` are timed from the Short's start.
    """
    length = end - start
    if length <= 0:
        raise ValueError(f"a Short needs end > start, not {start}..{end}")
    with _scratch_dir(dst) as tmp:
        ass_file = Path(tmp) / "captions.ass"
        ass_file.write_text(format_ass(captions, size, font), encoding="utf-8")
        subtitles = ass_filter(ass_file, font) if captions else "null"
        width, height = size
        if from_video:
            fps = _video_stream(Path(source))[1]
            inputs = ["-ss", f"{start:.6f}", "-i", ff_path(Path(source))]
            chain = (f"[0:v]scale={width}:{height}:force_original_aspect_ratio=increase:flags=lanczos,"
                     f"crop={width}:{height},setsar=1,tpad=stop_mode=clone:stop=-1,trim=duration={length:.6f},"
                     f"scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,{subtitles}[v]")
            video_args = _x264(20, ["-g", str(max(1, round(2 * fps)))])
        else:
            frame = save_frame(vertical_cover(_picture(source), size), Path(tmp) / "cover.png")
            frames = kept_frames(length, captions)
            step = max(1, round(MAX_FRAME_GAP * FPS))
            # Every `step`-th frame, and the frames where a caption comes or goes.
            select = "+".join([f"not(mod(n,{step}))", *(f"eq(n,{f})" for f in frames if f % step)])
            inputs = ["-framerate", str(FPS), "-i", ff_path(frame)]
            chain = (f"[0:v]{_TO_YUV},loop=loop=-1:size=1:start=0,trim=end_frame={frames[-1] + 1},"
                     f"select={filter_value(select)},{subtitles}[v]")
            video_args = [*_x264(20, ["-tune", "stillimage", "-g", str(SHORT_KEYINT), "-bf", "0"]), "-fps_mode", "vfr"]
            fps = FPS
        chain += (f";[1:a]atrim=start={start:.6f}:end={end:.6f},asetpts=PTS-STARTPTS,afade=t=in:st=0:d={fade_in:.4f},"
                  f"afade=t=out:st={max(0.0, length - fade_out):.6f}:d={fade_out:.4f}[a]")
        return _write_mp4(dst, [*inputs, "-i", ff_path(audio), "-filter_complex", chain, "-map", "[v]", "-map", "[a]",
                                *video_args], audio_bitrate=audio_bitrate, length=length, size=size, fps=min(fps, FPS))
