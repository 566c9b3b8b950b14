"""Every H.264 encode we make is repeatable: the same input gives the same bytes, whenever it runs.

Why: a checkpointed item redone after a kill must be the file an uninterrupted run makes. x264's
threaded lookahead broke that: a Short cut from final_sd.mp4, encoded again from the same video,
sound and captions, differed in a few frames' bits about one time in three (the whole-chain chaos
lane's failure). Its timing cannot be forced from a test, so this checks, through the real ffmpeg
(FFMPEG_BINARY pointed at a wrapper that logs its arguments), that each of our encoders turns the
threaded lookahead off, and that a Short cut from a video twice comes out byte for byte the same.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.formats.srt import Cue
from common.media.ffmpeg import X264_REPEATABLE, ffmpeg_exe, run_ffmpeg, ff_path
from common.offline.kenburns import ken_burns, still_video
from common.video import clips
from common.video.captions import caption_font
from common.video.encode import encode_short, encode_still, remux_video


@pytest.fixture
def logged_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FFMPEG_BINARY: a wrapper that appends its arguments (one call a line) to a log, then runs the real ffmpeg."""
    real, log = ffmpeg_exe(), tmp_path / "ffmpeg-calls.txt"
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(f"#!{sys.executable}\nimport os, sys\n"
                       f"open({str(log)!r}, 'a').write(repr(sys.argv[1:]) + '\\n')\n"
                       f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FFMPEG_BINARY", str(wrapper))
    return log


def _x264_calls(log: Path) -> list[list[str]]:
    import ast

    calls = [ast.literal_eval(line) for line in log.read_text().splitlines()]
    return [c for c in calls if "libx264" in c]


def _repeatable(call: list[str]) -> bool:
    params = [call[i + 1] for i, arg in enumerate(call[:-1]) if arg == "-x264-params"]
    return len(params) == 1 and X264_REPEATABLE in params[0].split(":")


def _card(path: Path) -> Path:
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)).resize((320, 180)).save(path)
    return path


def test_every_x264_encode_turns_the_threaded_lookahead_off(tmp_path: Path, logged_ffmpeg: Path) -> None:
    card, wav = _card(tmp_path / "card.png"), tmp_path / "sound.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=f=330:d=2:sample_rate=48000", ff_path(wav)], what="test sound")
    moving = ken_burns(card, tmp_path / "move.mp4", seconds=1.0, width=256, height=144, seed_text="a")
    still_video(card, tmp_path / "still.mp4", 1.0, 256, 144)
    joined = tmp_path / "joined.mp4"
    clips.encode(clips.frames_of(moving, 256, 144), joined, width=256, height=144, fps=24, audio=wav)
    remux_video(joined, wav, tmp_path / "final.mp4")  # re-encoded: 256x144 is not a published size
    encode_still(card, wav, tmp_path / "final_still.mp4")
    font, cues = caption_font(), (Cue(1, 0.1, 0.8, "One line."),)
    encode_short(joined, wav, tmp_path / "short_video.mp4", start=0.0, end=1.0, captions=cues, font=font,
                 fade_in=0.05, fade_out=0.2, from_video=True)
    encode_short(card, wav, tmp_path / "short_cover.mp4", start=0.0, end=1.0, captions=cues, font=font,
                 fade_in=0.05, fade_out=0.2)
    calls = _x264_calls(logged_ffmpeg)
    assert len(calls) == 7, calls
    assert all(_repeatable(c) for c in calls), [c for c in calls if not _repeatable(c)]


def test_a_short_cut_from_a_video_twice_is_the_same_file(tmp_path: Path) -> None:
    card, wav = _card(tmp_path / "card.png"), tmp_path / "sound.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=f=330:d=2:sample_rate=48000", ff_path(wav)], what="test sound")
    video = ken_burns(card, tmp_path / "move.mp4", seconds=1.5, width=320, height=180, seed_text="b")
    made = []
    for n in (1, 2):
        out = encode_short(video, wav, tmp_path / f"short{n}.mp4", start=0.2, end=1.4,
                           captions=(Cue(1, 0.0, 0.9, "Again."),), font=caption_font(), fade_in=0.05,
                           fade_out=0.2, from_video=True)
        made.append(Path(os.fspath(tmp_path / f"short{n}.mp4")).read_bytes())
        assert out.duration > 1.0
    assert made[0] == made[1]
