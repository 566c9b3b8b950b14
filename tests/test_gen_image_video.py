"""gen.image 4.audio.py, 5.video.py and 6.combine.py: scenes on the narration's timeline, frame-exact video."""
from __future__ import annotations

import hashlib
import json
import math
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.media import ffmpeg as media
from common.video.clips import decoded_frame_count
from common.formats.story import parse_story
from common.formats.timeline import (
    ScriptEntry, ScriptTimeline, Timeline, TimelineEntry, read_timeline_script, write_timeline_script,
)
from common.pictures.scene_timeline import Segment, build_script, line_starts, scenes_for_lines, segments_from_transcript
from common.pictures.slideshow import cut_frames, frame_rate, plan_slides, total_frames
from tests.support.project import REPO, copy_pipeline, env_for, run_script

OFFLINE = env_for(PIPELINE_ENGINE="offline")
SAMPLE_STORY = (REPO / "gen.audio" / "input" / "1.story.txt").read_text(encoding="utf-8")


def _wav(path: Path, seconds: float, rate: int = 48000) -> float:
    """A quiet tone of exactly round(seconds * rate) samples; returns its exact length."""
    count = round(seconds * rate)
    samples = (np.sin(np.arange(count) * 0.05) * 3000).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    media.write_wav(path, samples, rate)
    return count / rate


def _ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# ---------------------------------------------------------------- 4.audio: units

STORY = parse_story(
    "[narrator] It was a dark night on the moor.\n(scene_1.1) {{loc_1, a moor}}, {Night}; ((male_a)){Calm};\n"
    "[male_a] I heard a sound by the old gate.\n"
    "[female_b] Then we go and look at it together.\n(scene_1.2) {{loc_1}}, {Night}; ((female_b)){Brave};\n",
    source="story")


def test_exact_timings_are_taken_as_they_are() -> None:
    texts = [u.text for u in STORY.utterances]
    segments = [Segment(0.5, 2.0, texts[0]), Segment(2.4, 4.0, texts[1]), Segment(4.3, 6.0, texts[2])]
    assert line_starts(STORY, segments) == [0.5, 2.4, 4.3]


def test_transcript_segments_are_matched_to_lines_by_their_words() -> None:
    # A transcript cuts elsewhere than the story: the second segment ends one line and starts the next.
    transcript = Timeline((TimelineEntry(0.4, ".."), TimelineEntry(2.0, "It was a dark night on the moor. I heard"),
                           TimelineEntry(2.0, "a sound by the old gate. Then we go"), TimelineEntry(1.0, "..."),
                           TimelineEntry(1.6, "and look at it together.")))
    starts = line_starts(STORY, segments_from_transcript(transcript))
    assert starts[0] == pytest.approx(0.4)
    assert starts[1] == pytest.approx(0.4 + 2.0 * 8 / 10)  # "I" is word 8 of 10 in its segment
    assert starts[2] == pytest.approx(2.4 + 2.0 * 6 / 9)  # "Then" is word 6 of 9


def test_scene_durations_add_up_to_the_audio_to_the_millisecond() -> None:
    rng = random.Random(7)
    lines = [f"[male_a] Line number {i} says something new.\n(scene_1.{i}) {{{{loc_1}}}}, {{Night}}; ((male_a)){{Calm}};\n"
             for i in range(1, 401)]
    story = parse_story("".join(lines), source="story")
    starts, at = [], 0.37
    for _ in story.utterances:
        starts.append(at)
        at += rng.uniform(0.3, 4.0)
    total = at + 0.2345678  # a tail after the last line (final.wav is longer than the speech)
    script = build_script(story, scenes_for_lines(story, None), starts, total)
    assert len(script.entries) == 400
    assert abs(script.total() - total) < 0.0005
    assert script.entries[0].seconds == pytest.approx(round(starts[1] * 1000) / 1000)  # leading silence in the first
    assert script.entries[-1].seconds == pytest.approx((round(total * 1000) - round(starts[-1] * 1000)) / 1000)


def test_a_line_without_a_scene_keeps_the_previous_picture_and_lost_lines_get_no_time() -> None:
    script = build_script(STORY, scenes_for_lines(STORY, None), [0.0, 2.0, 4.0], 6.0)
    assert [e.scene_id for e in script.entries] == ["scene_1.1", "scene_1.1", "scene_1.2"]
    assert script.entries[0].description == "{{loc_1}}, {Night}; ((male_a)){Calm};"  # bare location, as in the seed
    lost = build_script(STORY, scenes_for_lines(STORY, None), [0.0, None, 4.0], 6.0)
    assert [(e.scene_id, e.speaker, e.seconds) for e in lost.entries] == [("scene_1.1", "narrator", 4.0), ("scene_1.2", "female_b", 2.0)]


# ---------------------------------------------------------------- 4.audio: the script

def _audio_outputs(audio: Path, story_text: str, *, tail: float) -> float:
    """story.timings.json for the story's lines, story.wav, and a final.wav `tail` s longer."""
    story = parse_story(story_text, source="story")
    lines, at = [], 0.25
    for index, u in enumerate(story.utterances, 1):
        length = 1.0 + len(u.text) / 40
        lines.append({"line": index, "speaker": u.speaker, "text": u.text, "start": round(at, 4),
                      "end": round(at + length, 4), "chunk": "1_5", "timing": "exact"})
        at += length + 0.4
    out = audio / "output"
    out.mkdir(parents=True, exist_ok=True)
    (out / "story.timings.json").write_text(json.dumps({"story_wav": "story.wav", "duration": at, "lines": lines}))
    _wav(out / "story.wav", at, 44100)
    return _wav(out / "final.wav", at + tail)


def test_4audio_writes_the_seed_format_and_matches_final_wav(tmp_path: Path, fixtures_dir: Path) -> None:
    audio = copy_pipeline(tmp_path, "gen.audio")
    image = copy_pipeline(tmp_path, "gen.image")
    final = _audio_outputs(audio, SAMPLE_STORY, tail=0.123456)
    out = _ok(run_script(image, "4.audio.py", env=OFFLINE))
    assert "timing from story.timings.json, length from final.wav" in out
    script = read_timeline_script(image / "input" / "2.timeline.script.txt")
    assert len(script.entries) == 11
    assert abs(script.total() - final) < 0.001
    second_start = json.loads((audio / "output" / "story.timings.json").read_text())["lines"][1]["start"]
    first = (image / "input" / "2.timeline.script.txt").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"{second_start:.3f}: scene_1.1 = {{{{loc_1}}}}, {{Autumn evening, thick fog}}; ((female_keeper_niece_ada))")
    assert ", narrator = The lighthouse on Gull Point" in first
    read_timeline_script(fixtures_dir / "gen.audio" / "input" / "2.timeline.script.txt")  # the seed's file reads too
    assert "1 items: 0 made" in _ok(run_script(image, "4.audio.py", env=OFFLINE))


def test_4audio_falls_back_to_the_transcript_and_3_scene_txt(tmp_path: Path) -> None:
    story_text = "".join(line + "\n" for line in SAMPLE_STORY.splitlines() if line.startswith("["))
    audio = copy_pipeline(tmp_path, "gen.audio", story=story_text)
    image = copy_pipeline(tmp_path, "gen.image")
    _ok(run_script(image, "1.story.py", env=OFFLINE))  # offline scene lines, one per utterance
    story = parse_story(story_text, source="story")
    entries = [TimelineEntry(0.8, "..")] + [TimelineEntry(1.5 + len(u.text) / 50, u.text) for u in story.utterances]
    (audio / "input").mkdir(exist_ok=True)
    from common.formats.timeline import write_timeline
    write_timeline(audio / "input" / "2.timeline.txt", Timeline(tuple(entries)))
    final = _wav(audio / "output" / "final.wav", sum(e.seconds for e in entries) + 0.5)
    out = _ok(run_script(image, "4.audio.py", env=OFFLINE))
    assert "timing from 2.timeline.txt" in out
    script = read_timeline_script(image / "input" / "2.timeline.script.txt")
    assert [e.scene_id for e in script.entries][:3] == ["scene_1.1", "scene_1.2", "scene_1.3"]
    assert script.entries[0].seconds == pytest.approx(0.8 + entries[1].seconds, abs=0.002)
    assert abs(script.total() - final) < 0.001


# ---------------------------------------------------------------- 5.video: units

def test_cuts_are_placed_on_the_cumulative_timeline() -> None:
    rng = random.Random(3)
    for fps in (frame_rate(24), frame_rate(25), frame_rate("30000/1001")):
        starts, at = [], 0.0
        for _ in range(300):
            starts.append(at)
            at += rng.uniform(0.05, 0.9)
        total = at + 0.01
        counts = cut_frames(starts, total, fps)
        assert sum(counts) == round(Fraction(total) * fps)
        running = 0
        for start, count in zip(starts[1:], counts):
            running += count
            assert running == math.ceil(Fraction(start) * fps - Fraction(1, 10**9))  # frame k shows the scene containing k/fps
    assert cut_frames([0.0, 0.01, 0.02, 1.0], 2.0, frame_rate(24)) == [1, 0, 23, 24]  # a sliver may get no frame
    assert total_frames(10.0, frame_rate(24)) == 240


# ---------------------------------------------------------------- 5.video and 6.combine: the scripts

def _slideshow(tmp_path: Path, durations: list[float], *, tail: float, size: tuple[int, int] = (64, 36)) -> tuple[Path, float]:
    """gen.image with a timeline of one scene per entry, a picture per scene, and gen.audio's final.wav."""
    audio = copy_pipeline(tmp_path, "gen.audio")
    image = copy_pipeline(tmp_path, "gen.image")
    entries = tuple(ScriptEntry(d, f"scene_1.{i}", f"{{{{loc_1}}}}, {{Night}}; ((male_a)){{Pose {i}}};", "male_a", f"Line {i}.")
                    for i, d in enumerate(durations, 1))
    write_timeline_script(image / "input" / "2.timeline.script.txt", ScriptTimeline(entries))
    scenes = image / "output" / "scene"
    scenes.mkdir(parents=True)
    for i in range(1, len(durations) + 1):
        Image.new("RGB", size, ((i * 37) % 256, (i * 91) % 256, 120)).save(scenes / f"scene_1.{i}.png")
    final = _wav(audio / "output" / "final.wav", sum(round(d * 1000) for d in durations) / 1000 + tail)
    return image, final


def _video_env(**extra: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="offline", SLIDESHOW_WIDTH="64", SLIDESHOW_HEIGHT="36", **extra)


def _packets(path: Path) -> list[tuple[int | None, str]]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(p.pts, hashlib.sha1(bytes(p)).hexdigest()) for p in container.demux(stream) if p.size]


def test_300_short_scenes_do_not_drift_and_combine_copies_the_picture(tmp_path: Path) -> None:
    rng = random.Random(11)
    durations = [round(rng.uniform(0.02, 0.2), 3) for _ in range(300)]
    image, final = _slideshow(tmp_path, durations, tail=0.0137)
    out = _ok(run_script(image, "5.video.py", env=_video_env(), timeout=170))
    merged = image / "output" / "merged.mp4"
    frames = round(final * 24)
    assert decoded_frame_count(merged) == frames
    assert abs(media.probe(merged).duration - final) <= 1 / 24
    slides = plan_slides(read_timeline_script(image / "input" / "2.timeline.script.txt"), final, frame_rate(24))
    assert 0 < len(slides) < 300 and f"{len(slides)} clips, {frames} frames at 24 fps" in out  # slivers get no clip
    assert "stream copy" in out
    again = _ok(run_script(image, "5.video.py", env=_video_env(), timeout=60))
    assert f"{len(slides)} items: 0 made" in again and "1 items: 0 made" in again

    stamp = merged.stat().st_mtime_ns
    combined = _ok(run_script(image, "6.combine.py", env=_video_env(), timeout=60))
    assert "picture copied" in combined
    final_sd = image / "output" / "final_sd.mp4"
    info = media.probe(final_sd)
    assert info.video.codec == "h264" and info.audio.codec == "aac" and info.audio.sample_rate == 48000
    assert abs(info.video.duration - final) <= 1 / 24 and abs(info.audio.duration - final) < 0.05
    assert _packets(final_sd) == _packets(merged)  # the same packets: copied, not encoded again
    head = final_sd.read_bytes()[:1 << 16]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))  # faststart
    assert "1 items: 0 made" in _ok(run_script(image, "6.combine.py", env=_video_env(), timeout=60))
    assert merged.stat().st_mtime_ns == stamp


def test_push_clips_are_frame_exact(tmp_path: Path) -> None:
    image, final = _slideshow(tmp_path, [0.7, 1.25, 0.9], tail=0.31, size=(96, 54))
    _ok(run_script(image, "5.video.py", env=_video_env(SCENE_PUSH="true"), timeout=60))
    counts = [decoded_frame_count(image / "output" / "video" / f"scene_1.{i}.mp4") for i in (1, 2, 3)]
    assert counts == cut_frames([0.0, 0.7, 1.95], final, frame_rate(24))
    assert decoded_frame_count(image / "output" / "merged.mp4") == round(final * 24)


def test_a_missing_picture_names_the_scene_and_the_script_to_run(tmp_path: Path) -> None:
    image, _ = _slideshow(tmp_path, [0.5, 0.5, 0.5], tail=0.0)
    (image / "output" / "scene" / "scene_1.2.png").unlink()
    result = run_script(image, "5.video.py", env=_video_env(), timeout=60)
    assert result.returncode == 3
    assert "scene_1.2" in result.stderr and "run 3.scene.py first" in result.stderr
    assert not (image / "output" / "merged.mp4").exists()
