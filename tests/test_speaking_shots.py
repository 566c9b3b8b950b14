"""Speaking shots: the rule picking them, and the sample-exact cut of each speaker's span."""
from __future__ import annotations

import wave
from pathlib import Path

import pytest

from common.formats.timeline import read_timeline_script
from common.video.animation import FrameRule
from common.video.speaking import cut_span, envelope, forced, read_line_timings, speaking_spans
from common.video.storyboard import build_storyboard
from tests.support.video_inputs import DIALOGUE, make_dialogue_inputs

WAN = FrameRule(4, 5.0, "wan")
FPS = 16


def _board(root: Path):
    return build_storyboard(read_timeline_script(root / "gen.image" / "input" / "2.timeline.script.txt"))


def test_the_rule_picks_the_on_screen_speakers_only(tmp_path: Path) -> None:
    spans = make_dialogue_inputs(tmp_path)
    board = _board(tmp_path)
    lines = read_line_timings(tmp_path / "gen.audio" / "output")
    found = speaking_spans(board, lines, WAN, FPS)
    # Ada and Silas talk on screen; the narrator, Bram off screen and a "no lip sync" line do not.
    assert {c: s.speaker for c, s in found.items()} == {"scene_1.1": "female_keeper_niece_ada",
                                                        "scene_1.2": "male_keeper_silas"}
    assert (found["scene_1.1"].start, found["scene_1.1"].end) == spans[0]
    assert (found["scene_1.2"].start, found["scene_1.2"].end) == spans[1]
    assert speaking_spans(board, lines, WAN, FPS, enabled=False) == {}
    assert speaking_spans(board, [], WAN, FPS) == {}  # no timings from gen.audio: nothing speaks


def test_a_scene_line_forces_the_rule_and_short_lines_do_not_speak(tmp_path: Path) -> None:
    scenes = list(DIALOGUE)
    scenes[2] = (scenes[2][0], scenes[2][1].replace("{Night}", "{Night, lip sync}"), scenes[2][2])
    scenes[4] = (scenes[4][0], scenes[4][1].replace("{Night, no lip sync}", "{Night, lip sync}"), scenes[4][2])
    scenes[0] = (scenes[0][0], scenes[0][1], 0.13 + 0.21 + 0.2)  # 0.2 s of speech: 4 frames, under WAN's 5
    make_dialogue_inputs(tmp_path, scenes)
    board = _board(tmp_path)
    lines = read_line_timings(tmp_path / "gen.audio" / "output")
    assert forced("{Night, no lip sync}") is False and forced("{Night, Lip-sync}") is True and forced("{Night}") is None
    found = speaking_spans(board, lines, WAN, FPS)
    # Forced on: Ada's line; the narrator is never a speaking character, forced or not.
    assert set(found) == {"scene_1.2", "scene_1.5"}
    assert set(speaking_spans(board, lines, WAN, FPS, enabled=False)) == {"scene_1.5"}


def test_the_cut_is_sample_exact_and_the_envelope_follows_the_speech(tmp_path: Path) -> None:
    make_dialogue_inputs(tmp_path)
    story = tmp_path / "gen.audio" / "output" / "story.wav"
    found = speaking_spans(_board(tmp_path), read_line_timings(story.parent), WAN, FPS)
    with wave.open(str(story), "rb") as src:
        rate, data = src.getframerate(), src.readframes(src.getnframes())
    for span in found.values():
        out = cut_span(story, span, tmp_path / f"{span.clip}.wav")
        with wave.open(str(out), "rb") as cut:
            assert cut.getframerate() == rate and cut.getnchannels() == 1
            got = cut.readframes(cut.getnframes())
        first, last = round(span.start * rate), round(span.end * rate)
        assert got == data[2 * first:2 * last]
        level = envelope(out, span.frames(FPS), FPS)
        assert len(level) == span.frames(FPS) and max(level) == 1.0 and min(level) < 0.2
