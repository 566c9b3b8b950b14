"""Ken Burns moves: the offline engine's animation, a slow pan or zoom over a still picture.

Why frames are drawn here instead of with ffmpeg's zoompan: zoompan crops at whole pixels,
so a slow move steps visibly (jitter) unless the source is enlarged many times, which is
slow. We resample each frame from the still at sub-pixel positions (Pillow's box resize,
which also filters properly when shrinking), and we do it directly in the video's own
colour format, Y'CbCr 4:2:0 BT.709, so each frame costs 1.5 samples per pixel instead of 4
and ffmpeg only has to encode. Frames are streamed to ffmpeg through a pipe: the two cores
draw and encode at the same time.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from common.atomic import atomic_path
from common.errors import InputError, PipelineError

MOVES: tuple[str, ...] = ("zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down")
FITS: tuple[str, ...] = ("cover", "contain")
DEFAULT_ZOOM = 1.15
_RESAMPLE = Image.Resampling.BILINEAR
# Output colour tags; they must match the matrix used in _to_yuv420.
_COLOUR_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
_ENCODE_TIMEOUT_S = 600.0

ImageSource = str | os.PathLike[str] | Image.Image


def _ffmpeg_exe() -> str:
    # Private until common.media offers it; the imageio-ffmpeg wheel carries the binary.
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class Window:
    """The part of the prepared still that one frame shows, in its pixels (floats: sub-pixel)."""

    x: float
    y: float
    width: float
    height: float


def choose_move(seed_text: str) -> str:
    """A move picked from the text's hash: the same scene always gets the same move."""
    return MOVES[hashlib.sha256(seed_text.encode("utf-8")).digest()[0] % len(MOVES)]


def frame_count(seconds: float, fps: float) -> int:
    """Frames in a clip: round(seconds * fps), at least one."""
    if not seconds > 0 or not fps > 0:
        raise InputError(f"A clip needs a positive length and frame rate, got {seconds} s at {fps} fps.")
    return max(1, round(seconds * fps))


def window_at(move: str, t: float, width: float, height: float, zoom: float = DEFAULT_ZOOM) -> Window:
    """The window at time t in [0, 1] over a still of width x height.

    Zooms change scale geometrically (the same ratio each frame), which the eye reads as a
    steady push; pans move the same distance each frame at a fixed zoom, so they never
    reveal an edge.
    """
    if move in ("zoom_in", "zoom_out"):
        z = zoom ** (t if move == "zoom_in" else 1.0 - t)
        w, h = width / z, height / z
        return Window((width - w) / 2.0, (height - h) / 2.0, w, h)
    if move not in MOVES:
        raise InputError(f"Unknown camera move {move!r}; use one of {', '.join(MOVES)}.")
    w, h = width / zoom, height / zoom
    x, y = (width - w) / 2.0, (height - h) / 2.0
    if move == "pan_left":  # the camera turns left: the view slides from the right side to the left
        x = (width - w) * (1.0 - t)
    elif move == "pan_right":
        x = (width - w) * t
    elif move == "pan_up":
        y = (height - h) * (1.0 - t)
    elif move == "pan_down":
        y = (height - h) * t
    return Window(x, y, w, h)


def _open(image: ImageSource) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        with Image.open(image) as opened:
            return opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"Cannot read the picture {os.fspath(image)!r} ({exc}); regenerate it.") from exc


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2.0))


def _cover(img: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to fill width x height and crop the overflow evenly (sub-pixel box, no loss)."""
    scale = max(width / img.width, height / img.height)
    crop_w, crop_h = width / scale, height / scale
    box = ((img.width - crop_w) / 2.0, (img.height - crop_h) / 2.0,
           (img.width + crop_w) / 2.0, (img.height + crop_h) / 2.0)
    return img.resize((width, height), Image.Resampling.LANCZOS, box=box)


def _contain(img: Image.Image, width: int, height: int) -> Image.Image:
    """The whole picture, centred over a blurred, darkened fill of itself (a portrait in 16:9)."""
    backdrop = _cover(img, width, height).filter(ImageFilter.GaussianBlur(max(2.0, min(width, height) / 30.0)))
    backdrop = Image.eval(backdrop, lambda v: int(v * 0.55))
    scale = min(width / img.width, height / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    backdrop.paste(img.resize(size, Image.Resampling.LANCZOS), ((width - size[0]) // 2, (height - size[1]) // 2))
    return backdrop


def prepare_still(image: ImageSource, width: int, height: int, fit: str = "cover",
                  detail: float = 1.0) -> Image.Image:
    """The still fitted to the frame's shape at `detail` times the frame size (capped by the
    picture's own resolution), so zooming in shows real detail when the picture has it."""
    if fit not in FITS:
        raise InputError(f"Unknown fit {fit!r}; use one of {', '.join(FITS)}.")
    img = _open(image)
    # How much larger than the frame the picture can be drawn without being enlarged.
    available = min(img.width / width, img.height / height) if fit == "cover" else max(
        img.width / width, img.height / height)
    k = max(1.0, min(detail, available))
    w, h = _even(width * k), _even(height * k)
    return _cover(img, w, h) if fit == "cover" else _contain(img, w, h)


def _to_yuv420(img: Image.Image) -> tuple[Image.Image, Image.Image, Image.Image]:
    """Limited-range BT.709 Y'CbCr planes; chroma averaged over 2x2 blocks (centre-sited)."""
    rgb = np.asarray(img, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    cb = (b - y) / 1.8556
    cr = (r - y) / 1.5748
    h, w = y.shape
    cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    def plane(values: np.ndarray, scale: float, offset: float) -> Image.Image:
        return Image.fromarray(np.clip(values * scale + offset + 0.5, 0, 255).astype(np.uint8), "L")

    return plane(y, 219.0 / 255.0, 16.0), plane(cb, 224.0 / 255.0, 128.0), plane(cr, 224.0 / 255.0, 128.0)


def _check_size(width: int, height: int) -> None:
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise InputError(f"Video size {width}x{height} is not usable for H.264 4:2:0; use even sizes of 16 or more.")


def _encode_args(width: int, height: int, fps: Fraction, frames: int, out: Path, *, still: bool,
                 video_filter: str | None = None) -> list[str]:
    args = [_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-framerate", str(fps),
            # Tag the input as what it is: with tags only on the output, ffmpeg would insert a
            # scaler that converts every frame through RGB (slower, and shifts colours).
            *_COLOUR_TAGS, "-i", "pipe:0"]
    if video_filter:
        args += ["-vf", video_filter]
    args += ["-frames:v", str(frames), "-r", str(fps), "-an",
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", *(["-tune", "stillimage"] if still else []),
             "-pix_fmt", "yuv420p", *_COLOUR_TAGS, "-movflags", "+faststart", "-f", "mp4", str(out)]
    return args


def _run_encoder(args: list[str], chunks: Iterator[bytes], out_name: str) -> None:
    """Stream raw frames into ffmpeg; a failure carries ffmpeg's own words."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        assert process.stdin is not None
        broken = False
        try:
            for chunk in chunks:
                try:
                    process.stdin.write(chunk)
                except BrokenPipeError:
                    broken = True
                    break
            try:
                process.stdin.close()
            except BrokenPipeError:
                broken = True
            code = process.wait(timeout=_ENCODE_TIMEOUT_S)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code != 0 or broken:
            errors.seek(0)
            detail = errors.read().decode("utf-8", "replace").strip().splitlines()
            reason = detail[-1] if detail else f"exit code {code}"
            raise PipelineError(f"ffmpeg could not encode {out_name}: {reason}. Check free disk space and the ffmpeg install.")


def ken_burns(image: ImageSource, out_mp4: str | os.PathLike[str], *, seconds: float, width: int, height: int,
              fps: float = 24, move: str | None = None, seed_text: str = "", zoom: float = DEFAULT_ZOOM,
              fit: str = "cover") -> Path:
    """A smooth pan or zoom over a still, written atomically as H.264 yuv420p MP4 (no audio).

    Exactly round(seconds * fps) frames. `move=None` picks one of MOVES from `seed_text`.
    `fit="contain"` keeps a picture of another shape whole (a portrait card in a 16:9 video).
    """
    _check_size(width, height)
    frames = frame_count(seconds, fps)
    move = move or choose_move(seed_text)
    if move not in MOVES:
        raise InputError(f"Unknown camera move {move!r}; use one of {', '.join(MOVES)}.")
    if not 1.0 <= zoom <= 4.0:
        raise InputError(f"Zoom {zoom} is out of range; use 1.0 (no move) to 4.0.")
    still = prepare_still(image, width, height, fit=fit, detail=zoom)
    planes = _to_yuv420(still)
    sw, sh = still.size
    scale_x, scale_y = sw / width, sh / height  # window sizes are in frame pixels; the still may be larger

    def render(index: int) -> bytes:
        t = index / (frames - 1) if frames > 1 else 0.0
        win = window_at(move, t, width, height, zoom)
        box = (win.x * scale_x, win.y * scale_y, (win.x + win.width) * scale_x, (win.y + win.height) * scale_y)
        luma = planes[0].resize((width, height), _RESAMPLE, box=box)
        half = tuple(v / 2.0 for v in box)
        cb = planes[1].resize((width // 2, height // 2), _RESAMPLE, box=half)
        cr = planes[2].resize((width // 2, height // 2), _RESAMPLE, box=half)
        return luma.tobytes() + cb.tobytes() + cr.tobytes()

    rate = Fraction(fps).limit_denominator(1001)
    out = Path(out_mp4)
    with atomic_path(out) as tmp:
        _run_encoder(_encode_args(width, height, rate, frames, tmp, still=False),
                     _ahead(render, frames), out.name)
    return out


def _ahead(render: Callable[[int], bytes], frames: int, depth: int = 4) -> Iterator[bytes]:
    """Frames in order, drawn by two threads a few frames ahead (memory stays bounded).

    Pillow releases the GIL while resampling, so drawing overlaps with writing to ffmpeg.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque[Future[bytes]] = deque()
        for index in range(frames):
            pending.append(pool.submit(render, index))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def still_video(image: ImageSource, out_mp4: str | os.PathLike[str], seconds: float, width: int, height: int,
                fps: float = 24, fit: str = "cover") -> Path:
    """A held frame: one picture sent once and repeated by ffmpeg, so it costs almost nothing."""
    _check_size(width, height)
    frames = frame_count(seconds, fps)
    still = prepare_still(image, width, height, fit=fit)
    if still.size != (width, height):
        still = still.resize((width, height), Image.Resampling.LANCZOS)
    frame = b"".join(plane.tobytes() for plane in _to_yuv420(still))
    rate = Fraction(fps).limit_denominator(1001)
    loop = f"loop=loop={frames - 1}:size=1:start=0,setpts=N/({rate.numerator}/{rate.denominator})/TB"
    out = Path(out_mp4)
    with atomic_path(out) as tmp:
        _run_encoder(_encode_args(width, height, rate, frames, tmp, still=True, video_filter=loop),
                     iter([frame]), out.name)
    return out
