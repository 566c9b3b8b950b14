"""Ken Burns moves: the offline engine's animation, a slow pan or zoom over a still picture.

Why frames are drawn here instead of with ffmpeg's zoompan: zoompan crops at whole pixels,
so a slow move steps visibly (jitter) unless the source is enlarged many times, which is
slow. We resample each frame from the still at sub-pixel positions instead, in NumPy
integer arithmetic: a zoom enlarges a window with a bilinear filter, a pan shifts a
once-enlarged still by a fraction of a pixel with a 4-tap cubic filter along one axis
(cheaper still, and sharper). Frames are drawn directly in the video's own format,
Y'CbCr 4:2:0 BT.709 (1.5 samples per pixel instead of 4 for Pillow's RGB), so ffmpeg only
encodes; they stream through a pipe, so the two cores draw and encode at the same time.
x264 remains about three quarters of the cost.
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from common.state.atomic import atomic_path
from common.run.errors import InputError
from common.media.ffmpeg import X264_REPEATABLE, ffmpeg_exe, pipe_to_ffmpeg

MOVES: tuple[str, ...] = ("zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down")
FITS: tuple[str, ...] = ("cover", "contain")
# Gentle enough that a card's motion-safe margin (cards.MOTION_SAFE_MARGIN) keeps its text in view.
DEFAULT_ZOOM = 1.10
# Output colour tags; they must match the matrix used in _to_yuv420.
_COLOUR_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
_ENCODE_TIMEOUT_S = 600.0

ImageSource = str | os.PathLike[str] | Image.Image


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


def _cover(img: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to fill width x height and crop the overflow evenly (sub-pixel box, no loss)."""
    scale = max(width / img.width, height / img.height)
    crop_w, crop_h = width / scale, height / scale
    left, top = max(0.0, (img.width - crop_w) / 2.0), max(0.0, (img.height - crop_h) / 2.0)
    box = (left, top, min(float(img.width), left + crop_w), min(float(img.height), top + crop_h))
    return img.resize((width, height), Image.Resampling.LANCZOS, box=box)


def _contain(img: Image.Image, width: int, height: int) -> Image.Image:
    """The whole picture, centred over a blurred, darkened fill of itself (a portrait in 16:9)."""
    backdrop = _cover(img, width, height).filter(ImageFilter.GaussianBlur(max(2.0, min(width, height) / 30.0)))
    backdrop = Image.eval(backdrop, lambda v: int(v * 0.55))
    scale = min(width / img.width, height / img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    backdrop.paste(img.resize(size, Image.Resampling.LANCZOS), ((width - size[0]) // 2, (height - size[1]) // 2))
    return backdrop


def prepare_still(image: ImageSource, width: int, height: int, fit: str = "cover") -> Image.Image:
    """The picture as an RGB still of exactly width x height, resampled once with Lanczos."""
    if fit not in FITS:
        raise InputError(f"Unknown fit {fit!r}; use one of {', '.join(FITS)}.")
    img = _open(image)
    return _cover(img, width, height) if fit == "cover" else _contain(img, width, height)


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


def _encode(data: Iterator[bytes], out_mp4: str | os.PathLike[str], width: int, height: int, fps: Fraction,
            frames: int, *, still: bool, video_filter: str | None = None) -> Path:
    """Raw Y'CbCr 4:2:0 frames piped into x264, written atomically as an MP4 (no audio)."""
    out = Path(out_mp4)
    with atomic_path(out) as tmp:
        pipe_to_ffmpeg(_encode_args(width, height, fps, frames, tmp, still=still, video_filter=video_filter), data,
                       what=f"encoding {out.name}", timeout=_ENCODE_TIMEOUT_S)
    return out


def _encode_args(width: int, height: int, fps: Fraction, frames: int, out: Path, *, still: bool,
                 video_filter: str | None = None) -> list[str]:
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-framerate", str(fps),
            # Tag the input as what it is: with tags only on the output, ffmpeg would insert a
            # scaler that converts every frame through RGB (slower, and shifts colours).
            *_COLOUR_TAGS, "-i", "pipe:0"]
    if video_filter:
        args += ["-vf", video_filter]
    # A held frame is x264's "still image" case. For moves, skipping the small-partition
    # search saves 10-20% of the encode on storyboard cards (flat colour, soft shapes) for
    # the same size and ~0.1 dB PSNR (measured on a scene card, 1024x576, crf 20).
    tuning = ["-tune", "stillimage", "-x264-params", X264_REPEATABLE] if still else \
        ["-x264-params", f"partitions=none:{X264_REPEATABLE}"]
    args += ["-frames:v", str(frames), "-r", str(fps), "-an",
             "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", *tuning,
             "-pix_fmt", "yuv420p", *_COLOUR_TAGS, "-movflags", "+faststart", "-f", "mp4", str(out)]
    return args


def _bilinear_taps(start: float, length: float, count: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Source index and weight (in 1/64ths) of the next sample for `count` outputs over [start, start+length)."""
    centres = start + (np.arange(count) + 0.5) * (length / count) - 0.5
    centres = np.clip(centres, 0.0, limit - 1.0)
    index = np.floor(centres).astype(np.intp)
    weight = np.round((centres - index) * 64.0).astype(np.int16)
    return index, weight


def _resample(plane: np.ndarray, box: tuple[float, float, float, float], width: int, height: int) -> bytes:
    """Bilinear resample of box (sub-pixel) to width x height, in int16 fixed point.

    `plane` carries one extra edge row and column so the "next sample" always exists.
    Only used to enlarge (scale >= 1), where two taps are exact and nothing aliases.
    """
    x0, y0, x1, y1 = box
    iy, fy = _bilinear_taps(y0, y1 - y0, height, plane.shape[0] - 1)
    ix, fx = _bilinear_taps(x0, x1 - x0, width, plane.shape[1] - 1)
    return _lerp(_lerp(plane, iy, fy[:, None], 0), ix, fx, 1).astype(np.uint8).tobytes()


def _lerp(plane: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """Samples `index` and `index + 1` along `axis` mixed by `weight` in 1/64ths, rounded (in place, int16)."""
    low = np.take(plane, index, axis=axis)
    high = np.take(plane, index + 1, axis=axis)
    high -= low
    high *= weight
    low <<= 6
    low += high
    low += 32
    low >>= 6
    return low


def _zoom_renderer(image: ImageSource, width: int, height: int, fit: str, zoom: float, move: str,
                   frames: int) -> Callable[[int], bytes]:
    """Zooms: each frame enlarges a shrinking (or growing) window of the frame-sized still.

    The scale changes every frame, so both axes resample; NumPy bilinear in int16 is about
    a third cheaper than Pillow's resize here, and enlarging never needs more than 2 taps.
    """
    still = prepare_still(image, width, height, fit=fit)
    planes = [np.pad(np.asarray(p, dtype=np.int16), ((0, 1), (0, 1)), mode="edge") for p in _to_yuv420(still)]

    def render(index: int) -> bytes:
        win = window_at(move, _time(index, frames), width, height, zoom)
        box = (win.x, win.y, win.x + win.width, win.y + win.height)
        half = (box[0] / 2.0, box[1] / 2.0, box[2] / 2.0, box[3] / 2.0)
        return (_resample(planes[0], box, width, height)
                + _resample(planes[1], half, width // 2, height // 2)
                + _resample(planes[2], half, width // 2, height // 2))

    return render


_PAD = 2  # edge pixels added around a pan's planes for the 4-tap filter


def _cubic_weights(fraction: float) -> tuple[int, int, int, int]:
    """Catmull-Rom taps at -1, 0, 1, 2 for a shift of `fraction`, in 1/64ths summing to 64.

    Cubic rather than linear: a linear shift blurs at half-pixel offsets and not at whole
    ones, which makes fine detail (a card's text) shimmer as a slow pan crosses pixels.
    Sixty-fourths keep every sum inside int16 (255 * 73 at most), half the memory traffic
    of int32; positions are then exact to 1/64 pixel, far below what the eye sees.
    """
    t = fraction
    w0 = round((-0.5 * t**3 + t**2 - 0.5 * t) * 64)
    w2 = round((-1.5 * t**3 + 2 * t**2 + 0.5 * t) * 64)
    w3 = round((0.5 * t**3 - 0.5 * t**2) * 64)
    return w0, 64 - w0 - w2 - w3, w2, w3


def _shift_axis(region: np.ndarray, fraction: float, axis: int) -> np.ndarray:
    """Resample int16 `region` (3 samples longer than wanted along `axis`) at a sub-pixel offset."""
    n = region.shape[axis] - 3

    def tap(k: int) -> np.ndarray:
        return region[k : k + n] if axis == 0 else region[:, k : k + n]

    weights = _cubic_weights(fraction)
    out = np.multiply(tap(0), weights[0])
    scratch = np.empty_like(out)
    for k in (1, 2, 3):
        if weights[k]:
            np.multiply(tap(k), weights[k], out=scratch)
            out += scratch
    out += 32
    out >>= 6
    np.clip(out, 0, 255, out=out)
    return out


def _shifted(plane: np.ndarray, ox: float, oy: float, width: int, height: int) -> bytes:
    """A width x height view of a padded plane starting at sub-pixel offset (ox, oy)."""
    ix, iy = int(np.floor(ox)), int(np.floor(oy))
    fx, fy = ox - ix, oy - iy
    x0, y0 = _PAD + ix, _PAD + iy
    fx = 0.0 if fx < 1e-6 else fx
    fy = 0.0 if fy < 1e-6 else fy
    region = plane[(slice(y0 - 1, y0 + height + 2) if fy else slice(y0, y0 + height)),
                   (slice(x0 - 1, x0 + width + 2) if fx else slice(x0, x0 + width))]
    if fy:
        region = _shift_axis(region, fy, axis=0)
    if fx:
        region = _shift_axis(region, fx, axis=1)
    return region.astype(np.uint8).tobytes()


def _pan_renderer(image: ImageSource, width: int, height: int, fit: str, zoom: float, move: str,
                  frames: int) -> Callable[[int], bytes]:
    """Pans: the still is enlarged once, then each frame is a sub-pixel shift of a window.

    A shift needs one 4-tap pass along one axis (a few times cheaper than a resize). The
    enlarged size exceeds the frame by a multiple of 4 pixels, so the still axis sits on
    whole pixels in both the luma and the half-size chroma planes and needs no filtering.
    """
    extra_w = 4 * round(width * (zoom - 1.0) / 4)
    extra_h = 4 * round(height * (zoom - 1.0) / 4)
    still = prepare_still(image, width + extra_w, height + extra_h, fit=fit)
    planes = [np.pad(np.asarray(p, dtype=np.int16), _PAD, mode="edge") for p in _to_yuv420(still)]

    def render(index: int) -> bytes:
        win = window_at(move, _time(index, frames), width, height, zoom)
        # Where the window sits in its travel (0..1) per axis, mapped onto the enlarged still.
        fx = win.x / (width - win.width) if width - win.width > 1e-9 else 0.5
        fy = win.y / (height - win.height) if height - win.height > 1e-9 else 0.5
        ox, oy = fx * extra_w, fy * extra_h
        return (_shifted(planes[0], ox, oy, width, height)
                + _shifted(planes[1], ox / 2, oy / 2, width // 2, height // 2)
                + _shifted(planes[2], ox / 2, oy / 2, width // 2, height // 2))

    return render


def _time(index: int, frames: int) -> float:
    return index / (frames - 1) if frames > 1 else 0.0


def ken_burns(image: ImageSource, out_mp4: str | os.PathLike[str], *, seconds: float, width: int, height: int,
              fps: float = 24, move: str | None = None, seed_text: str = "", zoom: float = DEFAULT_ZOOM,
              fit: str = "cover") -> Path:
    """A smooth pan or zoom over a still, written atomically as H.264 yuv420p MP4 (no audio).

    Exactly round(seconds * fps) frames. `move=None` picks one of MOVES from `seed_text`.
    `zoom` is how far a zoom goes (and how much a pan enlarges the picture to have room).
    `fit="contain"` keeps a picture of another shape whole (a portrait card in a 16:9 video).
    """
    _check_size(width, height)
    frames = frame_count(seconds, fps)
    move = move or choose_move(seed_text)
    if move not in MOVES:
        raise InputError(f"Unknown camera move {move!r}; use one of {', '.join(MOVES)}.")
    if not 1.0 <= zoom <= 4.0:
        raise InputError(f"Zoom {zoom} is out of range; use 1.0 (no move) to 4.0.")
    if fit not in FITS:
        raise InputError(f"Unknown fit {fit!r}; use one of {', '.join(FITS)}.")
    picture = _open(image)  # a bad picture fails here, before ffmpeg starts
    make = _pan_renderer if move.startswith("pan_") else _zoom_renderer

    def stream() -> Iterator[bytes]:
        # Runs once ffmpeg is starting, so preparing the still overlaps with its start-up.
        yield from _ahead(make(picture, width, height, fit, zoom, move, frames), frames)

    return _encode(stream(), out_mp4, width, height, Fraction(fps).limit_denominator(1001), frames, still=False)


def _ahead(render: Callable[[int], bytes], frames: int, depth: int = 4) -> Iterator[bytes]:
    """Frames in order, drawn by two threads a few frames ahead (memory stays bounded).

    Pillow and NumPy release the GIL while resampling, so drawing overlaps with writing.
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
    frame = b"".join(plane.tobytes() for plane in _to_yuv420(still))
    rate = Fraction(fps).limit_denominator(1001)
    loop = f"loop=loop={frames - 1}:size=1:start=0,setpts=N/({rate.numerator}/{rate.denominator})/TB"
    return _encode(iter([frame]), out_mp4, width, height, rate, frames, still=True, video_filter=loop)
