"""Ken Burns clips: exact frame counts, the right format, and motion without jitter.

Smoothness is measured on real decoded video: a soft blob is tracked to sub-pixel accuracy
by its intensity centroid, and the step between frames must stay nearly constant (a move
rounded to whole pixels would alternate steps of 0 and 1 pixel instead).
"""
from __future__ import annotations

import stat
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from common.run.errors import InputError, PipelineError
from common.offline import kenburns
from common.offline.kenburns import MOVES, choose_move, frame_count, ken_burns, still_video, window_at

pytestmark = pytest.mark.timeout(60)

W, H, FPS = 320, 180, 24


def _blobs(path: Path, centres: list[tuple[float, float]], sigma: float = 7.0) -> Path:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    field = np.zeros((H, W))
    for cx, cy in centres:
        field += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    grey = np.clip(field * 255.0, 0, 255).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB").save(path)
    return path


def _luma_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.to_ndarray(format="gray").astype(np.float64) for frame in container.decode(stream)]


def _centroid(luma: np.ndarray, x_range: slice = slice(None)) -> tuple[float, float]:
    part = luma[:, x_range]
    weights = np.clip(part - 40.0, 0.0, None)  # ignore the black floor and coding noise
    ys, xs = np.mgrid[0 : part.shape[0], 0 : part.shape[1]]
    total = weights.sum()
    offset = x_range.start or 0
    return float((weights * xs).sum() / total) + offset, float((weights * ys).sum() / total)


def _probe(path: Path) -> tuple[str, str, int, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        frames = sum(1 for _ in container.decode(stream))
        duration = float(container.duration or 0) / 1_000_000
        return ctx.name, ctx.pix_fmt, ctx.width, ctx.height, frames, duration


def test_clip_has_exact_frames_format_and_size(tmp_path: Path) -> None:
    source = _blobs(tmp_path / "still.png", [(160, 90)])
    out = ken_burns(source, tmp_path / "clip.mp4", seconds=2, width=W, height=H, fps=FPS, move="zoom_in")
    assert out == tmp_path / "clip.mp4"
    codec, pix_fmt, width, height, frames, duration = _probe(out)
    assert (codec, pix_fmt, width, height, frames) == ("h264", "yuv420p", W, H, 48)
    assert duration == pytest.approx(2.0, abs=0.05)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind


def test_pan_moves_the_same_sub_pixel_distance_every_frame(tmp_path: Path) -> None:
    source = _blobs(tmp_path / "still.png", [(160, 90)])
    zoom = 1.2
    clip = ken_burns(source, tmp_path / "pan.mp4", seconds=3, width=W, height=H, fps=FPS, move="pan_right", zoom=zoom)
    xs = np.array([_centroid(luma)[0] for luma in _luma_frames(clip)])
    steps = np.diff(xs)
    expected = -W * (zoom - 1) / (len(xs) - 1)  # the content slides left across the enlarged still
    assert abs(expected) < 1.0  # slower than a pixel a frame: integer rounding would show
    assert np.all(steps < 0)
    assert np.median(steps) == pytest.approx(expected, rel=0.05)
    assert np.abs(steps - np.median(steps)).max() < 0.25 * abs(expected)


def test_zoom_in_grows_at_a_steady_rate(tmp_path: Path) -> None:
    source = _blobs(tmp_path / "still.png", [(60, 90), (260, 90)])
    zoom = 1.3  # a strong zoom, so coding noise is small beside each frame's growth
    clip = ken_burns(source, tmp_path / "zoom.mp4", seconds=2, width=W, height=H, fps=FPS, move="zoom_in", zoom=zoom)
    lumas = _luma_frames(clip)
    spans = np.array([_centroid(l, slice(W // 2, W))[0] - _centroid(l, slice(0, W // 2))[0] for l in lumas])
    ratios = spans[1:] / spans[:-1]
    per_frame = zoom ** (1 / (len(spans) - 1))
    assert spans[-1] / spans[0] == pytest.approx(zoom, rel=0.01)
    assert np.all(ratios > 1.0)
    assert np.abs(ratios - per_frame).max() < 0.3 * (per_frame - 1)


def test_zoom_out_is_zoom_in_reversed(tmp_path: Path) -> None:
    inward = window_at("zoom_in", 0.25, W, H)
    outward = window_at("zoom_out", 0.75, W, H)
    assert inward == outward
    assert window_at("zoom_in", 0.0, W, H).width == pytest.approx(W)


@pytest.mark.parametrize("move", MOVES)
def test_every_window_stays_inside_the_picture(move: str) -> None:
    for t in np.linspace(0.0, 1.0, 11):
        win = window_at(move, float(t), W, H)
        assert win.x >= -1e-9 and win.y >= -1e-9
        assert win.x + win.width <= W + 1e-9 and win.y + win.height <= H + 1e-9
        assert win.width / win.height == pytest.approx(W / H)


def test_move_is_chosen_from_the_seed_and_stable() -> None:
    assert choose_move("scene_1.1") == choose_move("scene_1.1")
    assert {choose_move(f"scene_{i}") for i in range(60)} == set(MOVES)


def test_frame_count_rounds_and_rejects_nonsense() -> None:
    assert frame_count(2.0, 24) == 48
    assert frame_count(1.23, 24) == 30
    assert frame_count(0.01, 24) == 1
    with pytest.raises(InputError):
        frame_count(0, 24)


def test_still_video_holds_one_frame(tmp_path: Path) -> None:
    source = _blobs(tmp_path / "still.png", [(80, 60)])
    out = still_video(source, tmp_path / "still.mp4", 2, W, H, FPS)
    codec, pix_fmt, width, height, frames, _ = _probe(out)
    assert (codec, pix_fmt, width, height, frames) == ("h264", "yuv420p", W, H, 48)
    lumas = _luma_frames(out)
    assert max(float(np.abs(l - lumas[0]).mean()) for l in lumas) < 1.0
    assert _centroid(lumas[-1])[0] == pytest.approx(80, abs=0.5)


def test_colours_survive_the_trip(tmp_path: Path) -> None:
    Image.new("RGB", (W, H), (200, 40, 30)).save(tmp_path / "red.png")
    clip = ken_burns(tmp_path / "red.png", tmp_path / "red.mp4", seconds=0.5, width=W, height=H, move="pan_up")
    with av.open(str(clip)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    assert rgb == pytest.approx([200, 40, 30], abs=4)


def test_contain_keeps_a_portrait_whole(tmp_path: Path) -> None:
    Image.new("RGB", (90, 180), (250, 250, 250)).save(tmp_path / "tall.png")
    still = kenburns.prepare_still(tmp_path / "tall.png", W, H, fit="contain")
    grey = np.asarray(still.convert("L"), dtype=np.float64)
    assert still.size == (W, H)
    assert grey[:, W // 2].min() > 240  # the picture spans the full height in the middle
    assert grey[H // 2, 5] < 160  # the sides are the darkened backdrop


def test_bad_requests_are_user_errors(tmp_path: Path) -> None:
    source = _blobs(tmp_path / "still.png", [(160, 90)])
    with pytest.raises(InputError, match="even"):
        ken_burns(source, tmp_path / "odd.mp4", seconds=1, width=321, height=180)
    with pytest.raises(InputError, match="move"):
        ken_burns(source, tmp_path / "m.mp4", seconds=1, width=W, height=H, move="spin")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    with pytest.raises(InputError, match="broken.png"):
        ken_burns(tmp_path / "broken.png", tmp_path / "b.mp4", seconds=1, width=W, height=H)
    assert not any(p.suffix == ".mp4" for p in tmp_path.iterdir())


def test_encoder_failure_names_the_cause_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(kenburns, "ffmpeg_exe", lambda: str(fake))
    source = _blobs(tmp_path / "still.png", [(160, 90)])
    with pytest.raises(PipelineError, match="Unknown encoder libx264"):
        ken_burns(source, tmp_path / "out" / "clip.mp4", seconds=1, width=W, height=H)
    assert list((tmp_path / "out").iterdir()) == []
