"""gen.audio steps 1-2 for real with the offline engine, as a user runs them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from common.media import ffmpeg as media
from common.formats.speakers import read_voice_map
from tests.support.project import copy_pipeline, env_for, run_generate, run_script

OFFLINE = env_for(PIPELINE_ENGINE="offline")


def _state(pipeline: Path, script: str) -> dict:
    return json.loads((pipeline / "output" / "tracking" / f"{script}.state.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    pipeline = copy_pipeline(tmp_path_factory.mktemp("offline"))
    result = run_generate(pipeline, env=OFFLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    return pipeline, result.stdout


def test_whole_pipeline_makes_story_wav(finished: tuple[Path, str]) -> None:
    pipeline, stdout = finished
    assert "engine: offline" in stdout
    info = media.probe(pipeline / "output" / "story.wav")
    assert info.duration > 20
    samples, rate = media.read_wav(pipeline / "output" / "story.wav")
    assert rate == 44100 and np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300  # audible speech
    log = (pipeline / "log.txt").read_text()
    for script in ("1.character.py", "2.story.py"):
        assert re.search(rf"===== START {re.escape(script)} @ \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d =====", log)
        assert re.search(rf"===== END {re.escape(script)} @ [\d\- :]+ \(exit=0, took=\d+\.\d\ds\) =====", log)


def test_text_outputs_and_distinct_voices(finished: tuple[Path, str]) -> None:
    pipeline, _ = finished
    voice_map = read_voice_map(pipeline / "input" / "1.story.speakers.txt").as_dict()
    assert set(voice_map) == {"narrator", "female_keeper_niece_ada", "male_fisherman_bram", "male_keeper_silas"}
    assert len(set(voice_map.values())) == 4
    assert voice_map["narrator"] == "narrator"
    chapters = (pipeline / "input" / "12.chapters.txt").read_text().splitlines()
    assert [l.split(":")[0] for l in chapters if "%" in l][-1] == "100%"
    assert len([l for l in chapters if l.startswith("SHORT_SUMMARY")]) == 3  # one per story part
    assert (pipeline / "input" / "10.title.txt").read_text().strip()
    assert len((pipeline / "input" / "9.summary.txt").read_text().split()) > 10


def test_timings_cover_every_line_in_order(finished: tuple[Path, str]) -> None:
    pipeline, _ = finished
    timings = json.loads((pipeline / "output" / "story.timings.json").read_text())
    lines = timings["lines"]
    assert [l["line"] for l in lines] == list(range(1, 12))
    assert all(a["end"] <= b["start"] for a, b in zip(lines, lines[1:]))
    assert abs(lines[-1]["end"] - media.audio_duration(pipeline / "output" / "story.wav")) < 0.05
    assert all(l["timing"] == "exact" for l in lines)


def test_checkpoints_mark_previews(finished: tuple[Path, str]) -> None:
    pipeline, _ = finished
    items = _state(pipeline, "2.story")["items"]
    assert set(items) == {"1_5", "6_10", "11_11", "story.wav"}
    assert all(item["preview"] for item in items.values())


def test_every_output_of_the_whole_pipeline(finished: tuple[Path, str]) -> None:
    """Issue 3's check, on the module's one full offline run of all twelve steps."""
    from common.formats.srt import read_srt
    from common.publish.metadata import chapter_problems, parse_description_chapters

    pipeline, stdout = finished
    out = pipeline / "output"
    loudness = media.measure_loudness(out / "final.wav")
    assert abs(loudness.integrated_lufs + 14) <= 1 and loudness.true_peak_dbtp <= -1
    wav_seconds = media.audio_duration(out / "final.wav")
    final = media.probe(out / "final.mp4")
    assert (final.video.codec, final.video.pix_fmt, final.video.width, final.video.height) == ("h264", "yuv420p", 1280, 720)
    assert final.audio.codec == "aac" and abs(final.duration - wav_seconds) <= 1 / 24 + 0.03
    shorts = sorted((out / "shorts").glob("shorts.v*.mp4"))
    assert len(shorts) == 5
    for short in shorts:
        info = media.probe(short)
        assert (info.video.codec, info.video.width, info.video.height, info.audio.codec) == ("h264", 1080, 1920, "aac")
        assert 0 < info.duration <= 60.5
    duration = media.audio_duration(out / "story.wav")
    marks = parse_description_chapters((out / "description.txt").read_text())
    assert chapter_problems(marks, duration) == []
    speech_end = json.loads((out / "story.timings.json").read_text())["lines"][-1]["end"]
    assert abs(read_srt(pipeline / "input" / "2.story.srt").cues[-1].end - speech_end) <= 0.1
    thumbnail = out / "thumbnail.png"
    assert thumbnail.stat().st_size < 2_000_000
    assert (out / "upload.manifest.json").is_file() and "12.youtube.py --authorize" in stdout
    for name in ("2.timeline.txt", "3.timing.txt", "4.sfx.txt", "2.story.str.txt", "10.thumbnail.txt"):
        assert (pipeline / "input" / name).stat().st_size > 0, name


def test_rerun_redoes_nothing_and_an_edit_redoes_one_chunk(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    assert run_generate(pipeline, "--until", "2.story", env=OFFLINE).returncode == 0
    before = _state(pipeline, "2.story")["items"]
    skipped = run_generate(pipeline, "--until", "2.story", env=OFFLINE)
    assert skipped.returncode == 0 and "2.story.py: up to date since" in skipped.stdout
    # --force-start runs the scripts anyway: their checkpoints say there is nothing to do.
    again = run_generate(pipeline, "--until", "2.story", "--force-start", env=OFFLINE)
    assert again.returncode == 0
    assert "3 items: 0 made, 3 already done" in again.stdout
    assert _state(pipeline, "2.story")["items"] == before

    story = pipeline / "input" / "1.story.txt"
    text = story.read_text()
    story.write_text(text.replace("You put it out?", "You put it out yourself?"))
    edited = run_script(pipeline, "2.story.py", env=OFFLINE)
    assert edited.returncode == 0, edited.stderr
    assert "3 items: 1 made, 2 already done" in edited.stdout
    after = _state(pipeline, "2.story")["items"]
    assert after["6_10"]["fingerprint"] != before["6_10"]["fingerprint"]
    assert after["1_5"] == before["1_5"] and after["11_11"] == before["11_11"]


def test_chunk_size_flag(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    assert run_script(pipeline, "1.character.py", "--mode", "voices", env=OFFLINE).returncode == 0
    result = run_script(pipeline, "2.story.py", "--chunk-size", "4", env=OFFLINE)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (pipeline / "output" / "story").glob("*.wav")) == ["1_4.wav", "5_8.wav", "9_11.wav"]


@pytest.mark.parametrize(
    "story, script, pattern, code",
    [
        ("\n\n", "1.character.py", r"story.*empty", 3),
        ("[male_a] Hello there.\nThis line has no speaker.\n", "1.character.py", r"line 2", 3),
        ("[wizard] I have no gender prefix.\n", "1.character.py", r"\[wizard\].*--auto-gender", 3),
        ("[male_a] Hi.\n", "2.story.py", r"voice map.*missing.*1\.character\.py", 3),
    ],
)
def test_user_errors_are_one_sentence(tmp_path: Path, story: str, script: str, pattern: str, code: int) -> None:
    pipeline = copy_pipeline(tmp_path, story=story)
    result = run_script(pipeline, script, env=OFFLINE)
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(pattern, result.stderr, re.I | re.S), result.stderr
    assert result.stderr.strip().count("\n") == 0  # one line


def test_missing_story_file(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    (pipeline / "input" / "1.story.txt").unlink()
    result = run_script(pipeline, "1.character.py", env=OFFLINE)
    assert result.returncode == 3 and "no story found" in result.stderr and "Traceback" not in result.stderr


def test_auto_gender_gives_untagged_speakers_a_voice(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path, story="[wizard] I have no gender prefix.\n[female_fay] But I do.\n")
    result = run_script(pipeline, "1.character.py", "--auto-gender", "m", env=OFFLINE)
    assert result.returncode == 0, result.stderr
    voices = read_voice_map(pipeline / "input" / "1.story.speakers.txt").as_dict()
    assert voices["wizard"] in {"henry_en", "oliver_en", "samuel_en"}


def test_user_edits_to_voice_map_are_kept(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    speakers = pipeline / "input" / "1.story.speakers.txt"
    speakers.write_text("# mine\nmale_keeper_silas   samuel_en\n")
    assert run_script(pipeline, "1.character.py", "--mode", "voices", env=OFFLINE).returncode == 0
    text = speakers.read_text()
    assert text.startswith("# mine\nmale_keeper_silas   samuel_en\n")
    assert read_voice_map(speakers).as_dict()["male_fisherman_bram"] in {"henry_en", "oliver_en"}


def test_force_recasts_voices(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    speakers = pipeline / "input" / "1.story.speakers.txt"
    speakers.write_text("male_keeper_silas   samuel_en\n")
    assert run_script(pipeline, "1.character.py", "--mode", "voices", "--force", env=OFFLINE).returncode == 0
    assert read_voice_map(speakers).as_dict()["male_keeper_silas"] == "oliver_en"
