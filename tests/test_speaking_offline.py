"""Speaking shots offline, run for real: 1.story.py, 3.animate.py and 4.video.py on a dialogue.

The preview's mouth must follow the loudness of the speaker's own line (and not a shifted
copy of it), and in final_sd.mp4 the speaking clips must sit on their lines to a frame."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.formats.timeline import read_timeline_script
from common.offline.talking import mouth_box
from common.video import clips
from common.video.animation import FrameRule
from common.video.speaking import envelope, read_line_timings, speaking_spans
from common.video.storyboard import build_storyboard
from tests.support.project import copy_pipeline, env_for, run_script
from tests.support.video_inputs import make_dialogue_inputs

pytestmark = pytest.mark.timeout(180)
W, H, FPS = 320, 180, 24


def _openings(video: Path) -> np.ndarray:
    """Per frame: the fraction of the mouth box that is dark (the mouth's opening)."""
    x0, y0, x1, y1 = mouth_box(W, H)
    found = []
    for frame in clips.frames_of(video, W, H):
        luma = np.frombuffer(frame, dtype=np.uint8)[:W * H].reshape(H, W)
        found.append(float(np.mean(luma[y0 + 2:y1 - 2, x0 + 4:x1 - 4] < 50)))
    return np.array(found)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_offline_speaking_shots_move_the_mouth_with_the_line(tmp_path: Path) -> None:
    make_dialogue_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    env = env_for(PIPELINE_ENGINE="offline", VIDEO_WIDTH=str(W), VIDEO_HEIGHT=str(H), FRAMES_PER_SECOND=str(FPS))
    out = {}
    for name in ("1.story.py", "3.animate.py", "4.video.py"):
        result = run_script(pipeline, name, env=env)
        assert result.returncode == 0, result.stderr
        out[name] = result.stdout
    assert "2 speaking" in out["3.animate.py"]

    board = build_storyboard(read_timeline_script(tmp_path / "gen.image" / "input" / "2.timeline.script.txt"))
    spans = speaking_spans(board, read_line_timings(tmp_path / "gen.audio" / "output"), FrameRule(), FPS)
    assert set(spans) == {"scene_1.1", "scene_1.2"}
    final = _openings(pipeline / "output" / "final_sd.mp4")
    starts = {s.clip: s.start for s in board.shots}
    for clip, span in spans.items():
        audio = pipeline / "output" / "animation" / "speech" / f"{clip}.wav"
        level = np.array(envelope(audio, span.frames(FPS), FPS))
        clip_open = _openings(pipeline / "output" / "animation" / f"{clip}.mp4")
        lead = round(span.start * FPS) - round(starts[clip] * FPS)
        seen = clip_open[lead:lead + len(level)]
        assert _corr(seen, level) > 0.95
        assert _corr(seen, np.roll(level, 3)) < 0.7  # a copy late by 3 frames does not match
        assert clip_open[:lead].max() == 0 and clip_open[lead + len(level):].max() == 0  # closed off the line
        # In the final video the opening follows the line at its place on the narration, to a frame.
        at = round(span.start * FPS)
        lags = {lag: _corr(final[at + lag:at + lag + len(level)], level) for lag in range(-4, 5) if at + lag >= 0}
        best = max(lags, key=lags.get)
        assert abs(best) <= 1 and lags[best] > 0.95, lags
    # Shots that do not speak are their scene's picture drifting (Ken Burns): nothing snaps open and shut.
    for shot in board.shots:
        a, b = round(shot.start * FPS), round(shot.end * FPS)
        jumps = np.abs(np.diff(final[a + 1:b - 1])).max()
        assert (jumps > 0.3) == (shot.clip in spans), (shot.clip, jumps)
