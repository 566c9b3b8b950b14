"""Channel mode's pieces: recurring characters' looks through gen.image's real 2.character.py, the series'
voice map, the release schedule, settings layered per story, and the workspace paths."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from common.channel.schedule import SCHEDULE_FILE, next_slot, parse_times, publish_slot
from common.channel.series import Series
from common.channel.stories import Story, prepare_workspace
from common.config.paths import code_dir, pipeline_dir_of, workspace_of
from common.config.settings import load_settings
from common.run.errors import ConfigError
from common.run.steps import build_steps
from tests.support.channel import write_stories
from tests.support.project import REPO, copy_pipeline, env_for

pytestmark = pytest.mark.timeout(240)

S1 = ("[narrator] The boat left at dawn.\n"
      "(scene_1.1) {{loc_1, a grey harbour}}, {Dawn}; ((female_ada)){Calm}, {Standing}{Waving};\n"
      "[female_ada] I will come back soon.\n")
S2 = ("[narrator] Ada came back at night, and Bram was waiting.\n"
      "(scene_1.1) {{loc_1, a dark jetty}}, {Night}; ((female_ada)){Tired}, {Walking}{Carrying a bag}; "
      "((male_bram)){Glad}, {Standing}{Waving};\n"
      "[male_bram] Welcome home.\n")


def _image_queue(project: Path, folder: Path, only: str) -> None:
    result = subprocess.run([sys.executable, "generate.py", "--stories", str(folder), "--only", only],
                            cwd=project / "gen.image", env=env_for(PIPELINE_ENGINE="offline"), capture_output=True,
                            text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr


def _entry(folder: Path, story: str, key: str) -> dict:
    path = folder / story / "gen.image" / "output" / "tracking" / "2.character.state.json"
    return json.loads(path.read_text(encoding="utf-8"))["items"][key]


def _clean(folder: Path, story: str, tag: str) -> bytes:
    return (folder / story / "gen.image" / "output" / "characters" / "clean" / f"{tag}.png").read_bytes()


def test_a_known_character_keeps_its_look_until_a_new_one_is_asked_for(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for name in ("gen.audio", "gen.image"):
        copy_pipeline(project, name)
    folder = write_stories(tmp_path / "stories", {"s1": S1, "s2": S2})
    _image_queue(project, folder, "1.story")  # the descriptions
    _image_queue(project, folder, "2.character")

    looks = json.loads((folder / "series" / "characters.json").read_text(encoding="utf-8"))["characters"]
    assert looks["female_ada"]["story"] == "s1" and looks["male_bram"]["story"] == "s2"
    assert looks["female_ada"]["preview"] is True  # an offline look: a real run would draw its own
    # s2 describes Ada otherwise (tired, carrying a bag) but did not ask for a new look: s1's picture it is.
    assert "tired" not in looks["female_ada"]["description"]
    assert _clean(folder, "s2", "female_ada") == _clean(folder, "s1", "female_ada")
    assert _entry(folder, "s2", "female_ada")["data"]["series_story"] == "s1"
    assert "series_look" not in _entry(folder, "s2", "male_bram")["data"]
    s1_entry = _entry(folder, "s1", "female_ada")

    (folder / "s2" / "settings.toml").write_text('SERIES_NEW_LOOKS = ["female_ada"]\n', encoding="utf-8")
    _image_queue(project, folder, "2.character")
    assert "series_look" not in _entry(folder, "s2", "female_ada")["data"]  # drawn anew from s2's description
    assert _clean(folder, "s2", "female_ada") != _clean(folder, "s1", "female_ada")
    looks = json.loads((folder / "series" / "characters.json").read_text(encoding="utf-8"))["characters"]
    assert looks["female_ada"]["story"] == "s2" and "tired" in looks["female_ada"]["description"]
    assert (folder / "series" / "characters" / "female_ada.png").read_bytes() == _clean(folder, "s2", "female_ada")
    assert _entry(folder, "s1", "female_ada") == s1_entry  # the finished episode keeps the look it was made with


def test_the_series_voice_map_adds_new_speakers_and_never_overrides_the_users_edit(tmp_path: Path) -> None:
    series = Series(tmp_path / "series", "s1")
    assert series.remember_voices({"narrator": "henry_en", "female_ada": "clara_en"}) == ["narrator", "female_ada"]
    text = series.voices_file.read_text(encoding="utf-8")
    series.voices_file.write_text(text.replace("clara_en", "maya_en") + "# my edit\n", encoding="utf-8")
    later = Series(tmp_path / "series", "s2")
    assert later.remember_voices({"narrator": "oliver_en", "female_ada": "ruth_en", "male_bram": "samuel_en"}) == \
        ["male_bram"]
    assert later.voices_for(["female_ada", "male_bram", "male_nobody"]) == {"female_ada": "maya_en",
                                                                           "male_bram": "samuel_en"}
    assert "# my edit" in later.voices_file.read_text(encoding="utf-8")


def test_slots_follow_the_schedule_after_the_last_one_taken() -> None:
    daily = parse_times(["18:00"])
    now = datetime(2030, 1, 7, 17, 50).astimezone()
    first = next_slot(daily, 1, None, now)  # 18:00 today is closer than the lead: tomorrow's
    assert (first.day, first.hour) == (8, 18)
    assert next_slot(daily, 1, first, now) == first.replace(day=9)
    twice = parse_times(["18:00", "9:30"])
    assert [(s.day, s.hour) for s in (next_slot(twice, 1, None, now), next_slot(twice, 1, first, now))] == \
        [(8, 9), (9, 9)]
    assert next_slot(daily, 2, first, now).day == 10
    with pytest.raises(ConfigError, match="HH:MM"):
        parse_times(["6pm"])


def _workspace(folder: Path, name: str) -> Path:
    story = Story(name, folder / f"{name}.txt", folder / name)
    story.source.write_text("[narrator] Hello.\n", encoding="utf-8")
    prepare_workspace(story, REPO)
    return story.workspace / "gen.audio"


def test_a_story_keeps_its_slot_a_new_one_takes_the_next_and_a_missed_one_is_given_up(tmp_path: Path) -> None:
    folder = tmp_path / "stories"
    folder.mkdir()
    a, b = _workspace(folder, "a"), _workspace(folder, "b")
    settings = load_settings(a)
    evening = datetime(2030, 1, 7, 20, 0).astimezone()
    slot_a = publish_slot(settings, a, now=lambda: evening)
    slot_b = publish_slot(settings, b, now=lambda: evening)
    assert slot_b - slot_a == timedelta(days=1) and slot_a.hour == 18
    assert publish_slot(settings, a, now=lambda: evening + timedelta(hours=5)) == slot_a  # a rerun: the same
    assert publish_slot(load_settings(Path(REPO) / "gen.audio"), Path(REPO) / "gen.audio") is None  # no channel

    # a's slot passed without an upload: it is given up, and a goes after the last one taken (b's).
    later = slot_a + timedelta(hours=1)
    assert publish_slot(settings, a, now=lambda: later) == slot_b + timedelta(days=1)
    # b was uploaded with its slot: it keeps it even once it has passed.
    tracking = b / "output" / "tracking"
    tracking.mkdir(parents=True)
    (tracking / "12.youtube.state.json").write_text(json.dumps({"version": 1, "script": "12.youtube", "items": {
        "video": {"fingerprint": "x", "files": [], "status": "done", "data": {"video_id": "abc"}}}}))
    assert publish_slot(settings, b, now=lambda: slot_b + timedelta(days=3)) == slot_b
    recorded = json.loads((folder / SCHEDULE_FILE).read_text(encoding="utf-8"))["slots"]
    assert set(recorded) == {"a", "b"}


def test_a_workspace_keeps_the_data_the_code_stays_and_settings_layer_per_story(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    video = copy_pipeline(project, "gen.video")
    copy_pipeline(project, "gen.audio")
    (project / "gen.audio" / "settings.toml").write_text('LANGUAGE = "de"\nREGION = "at"\nCHUNK_SIZE = 3\n')
    folder = tmp_path / "stories"
    folder.mkdir()
    (folder / "settings.toml").write_text('REGION = "ch"\nCHUNK_SIZE = 4\n', encoding="utf-8")
    story = Story("tale", folder / "tale.txt", folder / "tale")
    story.source.write_text("[narrator] Once.\n", encoding="utf-8")
    assert prepare_workspace(story, project) is True and prepare_workspace(story, project) is False
    (story.workspace / "settings.toml").write_text("CHUNK_SIZE = 5\n", encoding="utf-8")

    data = story.workspace / "gen.audio"
    assert workspace_of(data) == story.workspace and workspace_of(project / "gen.audio") is None
    assert code_dir(data) == project / "gen.audio" and code_dir(project / "gen.audio") == project / "gen.audio"
    settings = load_settings(data, environ={})
    assert (settings.LANGUAGE, settings.REGION, settings.CHUNK_SIZE) == ("de", "ch", 5)
    assert settings.source_of("CHUNK_SIZE") == str(story.workspace / "settings.toml")
    script = project / "gen.audio" / "scripts" / "2.story.py"
    assert pipeline_dir_of(script, {"PIPELINE_WORKSPACE": str(story.workspace)}) == data
    assert pipeline_dir_of(script, {}) == project / "gen.audio"

    import importlib.util

    spec = importlib.util.spec_from_file_location("video_generate", video / "generate.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "argv", ["generate.py"])
    spec.loader.exec_module(module)  # its tables only: run_pipeline is behind __main__
    steps = build_steps(video, module.SCRIPTS, None, None, module.SCRIPT_ARGS, story.workspace)
    upload = next(s for s in steps if s.basename == "12.youtube.py")
    assert upload.pipeline_dir == data and upload.code_dir == project / "gen.audio"
    assert upload.args[upload.args.index("--video-file") + 1] == str(story.workspace / "gen.video" / "output" /
                                                                     "final_sd.mp4")
