"""gen.image 1.story.py: scene lines, characters and locations, offline and through a (fake) LLM."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from common.formats.descriptions import read_characters, read_locations
from common.formats.story import parse_scene_line, parse_story, read_scenes
from common.formats.sections import chapter_sections
from common.pictures.story_visuals import (
    CharacterBrief, LocationBrief, SceneRequest, character_briefs, location_briefs, offline_scene_line, split_tag,
)
from common.pictures.questions import check_prose, check_scene_line, format_attributes, scene_text
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.project import REPO, copy_pipeline, env_for, run_script

OFFLINE = env_for(PIPELINE_ENGINE="offline")
SAMPLE_STORY = (REPO / "gen.audio" / "input" / "1.story.txt").read_text(encoding="utf-8")


def _pipelines(tmp_path: Path, *, image_story: str | None = None, audio_story: str | None = None) -> Path:
    """gen.audio (whose story gen.image falls back to) and gen.image side by side; returns gen.image."""
    copy_pipeline(tmp_path, "gen.audio", story=audio_story)
    return copy_pipeline(tmp_path, "gen.image", story=image_story)


def _run(pipeline: Path, *args: str, env: dict[str, str] = OFFLINE):
    result = run_script(pipeline, "1.story.py", *args, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _state(pipeline: Path) -> dict:
    return json.loads((pipeline / "output" / "tracking" / "1.story.state.json").read_text(encoding="utf-8"))["items"]


# ---------------------------------------------------------------- offline, story with scene lines

def test_fixture_story_scene_lines_are_the_truth(tmp_path: Path, fixtures_dir: Path) -> None:
    fixture = fixtures_dir / "gen.image" / "input"
    pipeline = _pipelines(tmp_path, image_story=(fixture / "1.story.txt").read_text(encoding="utf-8"))
    result = _run(pipeline)
    assert "56 scene lines (the story's own" in result.stdout
    # The seed's own 3.scene.txt is exactly the story's scene lines with bare locations.
    assert (pipeline / "input" / "3.scene.txt").read_bytes() == (fixture / "3.scene.txt").read_bytes()
    characters = read_characters(pipeline / "input" / "2.character.txt")
    assert set(characters.keys()) == set(read_characters(fixture / "2.character.txt").keys())
    assert characters.keys()[0] == "male_doctor_watson"  # story order
    watson = characters.get("male_doctor_watson")
    assert "Name: Watson" in watson and "Role: doctor" in watson and "Gender: male" in watson
    assert "contemplative" in watson  # an expression from its scenes, nothing invented
    text = (pipeline / "input" / "2.character.txt").read_text(encoding="utf-8")
    assert "\n\n((male_detective_holmes))" in text  # the seed's blank line between entries
    prose = read_characters(pipeline / "input" / "3.character.txt")
    assert prose.get("male_doctor_watson").startswith("Doctor Watson is a man in this story.")
    assert "\n\n" not in (pipeline / "input" / "3.character.txt").read_text(encoding="utf-8")
    locations = read_locations(pipeline / "input" / "2.location.txt")
    assert locations.keys() == read_locations(fixture / "2.location.txt").keys()
    assert locations.get("loc_1").startswith("Place: (Description: Victorian sitting room sofa fireplace)")
    assert read_locations(pipeline / "input" / "3.location.txt").get("loc_3") == "Baker Street entry rug coatstand."
    assert all(entry["preview"] for entry in _state(pipeline).values())
    again = _run(pipeline)
    made = re.findall(r"(\d+) made", again.stdout)
    assert made and set(made) == {"0"}  # a rerun changes nothing


def test_gen_audio_sample_story_keeps_hex_colours_and_names(tmp_path: Path) -> None:
    pipeline = _pipelines(tmp_path)  # gen.image has no story of its own: gen.audio's is read
    result = _run(pipeline)
    assert "gen.audio/input/1.story.txt: 11 lines, 11 scene lines" in result.stdout
    scenes = read_scenes(pipeline / "input" / "3.scene.txt").scenes
    assert [s.scene_id for s in scenes][:4] == ["scene_1.1", "scene_1.2", "scene_1.3", "scene_2.1"]
    assert all(s.location_description is None for s in scenes)  # descriptions live in the location files
    locations = read_locations(pipeline / "input" / "2.location.txt")
    assert locations.keys() == ("loc_1", "loc_2", "loc_3")
    assert "Colors: [#5b6770, #d9d2c5, #2f3b44]" in locations.get("loc_1")
    assert "#5b6770" in read_locations(pipeline / "input" / "3.location.txt").get("loc_1")
    characters = read_characters(pipeline / "input" / "2.character.txt")
    assert characters.keys() == ("female_keeper_niece_ada", "male_fisherman_bram", "male_keeper_silas")
    assert "narrator" not in characters.keys()  # a voice, never in a picture
    assert "Name: Ada" in characters.get("female_keeper_niece_ada")
    assert "Tying the rope to the ring".lower() in characters.get("female_keeper_niece_ada").lower()


# ---------------------------------------------------------------- offline, story without scene lines

def _dialogue_only(story: str) -> str:
    return "".join(line + "\n" for line in story.splitlines() if line.startswith("["))


def test_offline_writes_one_scene_per_utterance_from_the_markup(tmp_path: Path) -> None:
    story_text = _dialogue_only(SAMPLE_STORY)
    pipeline = _pipelines(tmp_path, audio_story=story_text)
    result = _run(pipeline)
    assert "no scene lines: the offline text engine writes one per line" in result.stdout
    story = parse_story(story_text, source="story")
    scenes = read_scenes(pipeline / "input" / "3.scene.txt").scenes
    assert len(scenes) == len(story.utterances) == 11
    expected = [f"scene_{s.index}.{n}" for s in chapter_sections(story) for n in range(1, len(s.utterances) + 1)]
    assert [s.scene_id for s in scenes] == expected  # parts follow gen.audio's chapters
    for scene, utterance in zip(scenes, story.utterances):
        assert scene.location_id is None  # the markup names no place: none is invented
        assert scene.character_tags() == (() if utterance.speaker == "narrator" else (utterance.speaker,))
    assert (pipeline / "input" / "2.location.txt").read_text() == ""
    assert read_characters(pipeline / "input" / "3.character.txt").get("male_keeper_silas") == (
        "Keeper Silas is a man in this story. He can be seen speaking.")
    assert "11 items: 0 made" in _run(pipeline).stdout
    bypassed = _run(pipeline, "--bypass-validation").stdout
    assert "--bypass-validation: its lines are kept as written, without the format check" in bypassed


# ---------------------------------------------------------------- LLM (fake server), story without scene lines

LLM_STORY = (
    "[narrator] The lighthouse on Gull Point had been dark for three nights.\n"
    "[female_keeper_niece_ada] Uncle Silas never misses a night.\n"
    "[male_keeper_silas] The lamp is lit now, Ada, go home.\n"
)
NARRATOR_SCENE = "{{loc_1, a stone lighthouse on a rocky point, colours #5b6770 #d9d2c5}}, {Autumn evening, fog};"
ADA_BAD = "{{loc_1}}, {Night}; ((female_stranger)){Calm}, {Standing}{Waiting};"
ADA_GOOD = "(scene_9.9) {{loc_1}}, {Autumn evening, fog}; ((female_keeper_niece_ada)){Worried}, {Standing on the rocks}{Looking up};"
SILAS_SCENE = ("{{loc_2, the lamp room at the top, a great glass lens}}, {Night}; ((male_keeper_silas)){Calm}, "
               "{Standing by the lens}{Lighting the lamp}; ((female_keeper_niece_ada)){Relieved}, {In the doorway}{Watching};")


def _words(count: int, extra: str = "") -> str:
    base = "a weathered figure in a dark wool coat stands beside warm lamplight with steady hands and calm eyes".split()
    return " ".join((base * 10)[:count]) + extra


# The asset library's questions (common.pictures.assets_text), answered as JSON.
ASSET_ANSWERS = [
    {"contains": "Write the identity of the character [female_keeper_niece_ada]",
     "answer": {"identity": "young woman, freckles, red braid, green oilskin coat, brown boots"}},
    {"contains": "Write the identity of the character",
     "answer": {"identity": "old man, grey beard, navy wool jumper, black cap"}},
    {"contains": "Describe the location loc_1 of the story as a background plate",
     "answer": {"name": "Gull Point lighthouse", "description": "stone tower on wet rocks in #5b6770 and #d9d2c5",
                "lighting": {"evening": "grey fog glowing faintly"}}},
    {"contains": "Describe the location loc_2 of the story as a background plate",
     "answer": {"name": "lamp room", "description": "a round glass room with a great lens",
                "lighting": {"night": "dark, lit by one oil lamp"}}},
    {"contains": "Write the style bible",
     "answer": {"palette": ["#5b6770", "#d9d2c5", "#2f3b44"], "lens": "35 mm at eye level", "lighting": "soft fog light",
                "mood": "quiet suspense"}},
    {"contains": "Describe the recurring object",
     "answer": {"description": "a dented brass lantern with a glass chimney"}},
]


def _llm_answers(ada: list[str]) -> list[dict]:
    return [*ASSET_ANSWERS,
        {"contains": "THIS LINE, said by [narrator]", "answer": NARRATOR_SCENE},
        {"contains": "THIS LINE, said by [female_keeper_niece_ada]", "answers": ada},
        {"contains": "THIS LINE, said by [male_keeper_silas]", "answer": SILAS_SCENE},
        {"contains": "Turn these attributes of the character", "answer": _words(80) + "."},
        {"contains": "Turn these attributes of the location loc_1", "answer": _words(50, " in #5b6770 and #d9d2c5.")},
        {"contains": "Turn these attributes of the location", "answer": _words(60) + "."},
    ]


def _llm_env(base_url: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="offline", PIPELINE_TEXT_ENGINE="llm", LM_STUDIO_BASE_URL=base_url,
                   LM_STUDIO_MODEL="auto")


def test_llm_scene_lines_are_validated_retried_and_checkpointed(tmp_path: Path) -> None:
    pipeline = _pipelines(tmp_path, audio_story=LLM_STORY)
    with start_fake_llm(tmp_path, answers=_llm_answers([ADA_BAD, ADA_GOOD])) as llm:
        _run(pipeline, env=_llm_env(llm.base_url))
        requests = llm.chat_requests()
        retry = [r for r in requests if "female_stranger" in r["last_user"] or "not a character" in r["last_user"]]
        assert retry and "((female_stranger)) is not a character of the story" in retry[0]["last_user"]
        lines = (pipeline / "input" / "3.scene.txt").read_text(encoding="utf-8").splitlines()
        assert lines == [
            "(scene_1.1) {{loc_1}}, {Autumn evening, fog};",
            "(scene_2.1) {{loc_1}}, {Autumn evening, fog}; ((female_keeper_niece_ada)){Worried}, {Standing on the rocks}{Looking up};",
            "(scene_3.1) {{loc_2}}, {Night}; ((male_keeper_silas)){Calm}, {Standing by the lens}{Lighting the lamp}; "
            "((female_keeper_niece_ada)){Relieved}, {In the doorway}{Watching};",
        ]
        for line in lines:
            parse_scene_line(line)
        characters = read_characters(pipeline / "input" / "2.character.txt")
        assert characters.keys() == ("female_keeper_niece_ada", "male_keeper_silas")
        assert characters.get("male_keeper_silas").startswith("Face: (Head Shape: ")
        assert "Gender: male" in characters.get("male_keeper_silas") and "Clothing: (Tops: (Type: " in characters.get("male_keeper_silas")
        assert len(read_characters(pipeline / "input" / "3.character.txt").get("male_keeper_silas").split()) == 80
        loc_1 = read_locations(pipeline / "input" / "2.location.txt").get("loc_1")
        assert loc_1.startswith("Place: (Type: ") and "Objects: [(Type: " in loc_1
        assert "#5b6770" in loc_1 and "#d9d2c5" in loc_1  # the story's own colours are always kept
        assert "#5b6770" in read_locations(pipeline / "input" / "3.location.txt").get("loc_1")
        assert not any(entry.get("preview") for entry in _state(pipeline).values())
        count = llm.chat_count()
        again = _run(pipeline, env=_llm_env(llm.base_url))
        assert llm.chat_count() == count, again.stdout  # every answer came from the checkpoint


def test_bypass_validation_keeps_llm_scene_lines_as_written(tmp_path: Path) -> None:
    """The engine level (the script passes check=False for --bypass-validation and says so)."""
    from common.pictures.looks_text import LLMLooksText as LLMTextEngine
    from common.services.llm import LLMClient

    request = SceneRequest("scene_2.1", "female_keeper_niece_ada", "Uncle Silas never misses a night.", None, None,
                           ("female_keeper_niece_ada", "male_keeper_silas"), (("loc_1", "a lighthouse"),), "loc_1")
    with start_fake_llm(tmp_path, answers=_llm_answers([ADA_BAD])) as llm:
        engine = LLMTextEngine(LLMClient(llm.base_url, "fake-model", timeout=10, max_retries=2), "fake-model")
        assert engine.scene_line(request, check=False) == "(scene_2.1) " + ADA_BAD
        assert llm.chat_count() == 1  # kept as written, no retry
        with pytest.raises(Exception, match="not a character of the story"):
            engine.scene_line(request)  # checked: every retry gets the same bad line, then a clear failure
        assert llm.chat_count() == 1 + 3


# ---------------------------------------------------------------- the seed's description files

def test_fixture_description_files_are_read_and_kept(tmp_path: Path, fixtures_dir: Path) -> None:
    fixture = fixtures_dir / "gen.image" / "input"
    assert read_characters(fixture / "2.character.txt").keys() == (
        "female_nervous_mother", "male_detective_holmes", "male_doctor_watson")
    assert read_characters(fixture / "3.character.txt").get("male_doctor_watson").startswith("A fair-skinned elderly man")
    assert read_locations(fixture / "2.location.txt").get("loc_1").startswith("Place: (Type: living_room")
    assert read_locations(fixture / "3.location.txt").keys() == tuple(f"loc_{n}" for n in range(1, 7))
    pipeline = _pipelines(tmp_path, image_story=(fixture / "1.story.txt").read_text(encoding="utf-8"))
    for name in ("2.character.txt", "3.character.txt", "2.location.txt", "3.location.txt"):
        shutil.copy(fixture / name, pipeline / "input" / name)
    result = _run(pipeline)
    assert "2.character.txt: kept your entries for female_nervous_mother, male_detective_holmes, male_doctor_watson" in result.stdout
    for name, read in (("2.character.txt", read_characters), ("3.character.txt", read_characters),
                       ("2.location.txt", read_locations), ("3.location.txt", read_locations)):
        assert read(pipeline / "input" / name).as_dict() == read(fixture / name).as_dict(), name
    _run(pipeline, "--force")
    assert read_characters(pipeline / "input" / "2.character.txt").get("male_doctor_watson").startswith("Identity: (Name: Watson")


# ---------------------------------------------------------------- units

def _story(text: str):
    return parse_story(text, source="story")


def test_tag_words_become_name_and_role() -> None:
    story = _story("[male_doctor_watson] Come in, Mrs Hudson, and tell Holmes.\n[female_housekeeper_mrs_hudson] Yes, Watson.\n"
                   "[female_nervous_mother] My child!\n")
    assert split_tag("male_doctor_watson", story) == ("Watson", "doctor")
    assert split_tag("female_housekeeper_mrs_hudson", story) == ("Mrs Hudson", "housekeeper")
    assert split_tag("female_nervous_mother", story) == (None, "nervous mother")


def test_briefs_gather_scene_attributes_by_key_and_position() -> None:
    story = _story(
        "[male_a] One.\n(scene_1.1) {{loc_1, a hall, colours #AABBCC}}, {Night}; ((male_a)){Calm}, {Sitting}{Reading};\n"
        "[male_a] Two.\n(scene_1.2) {{loc_1}}, {Dawn}; ((male_a)){Facial Expression: calm}{Body Posture: standing}{Primary Action: reading};\n"
    )
    (brief,) = character_briefs(story, story.scenes())
    assert brief.most("expression") == ("calm",) and brief.most("action") == ("reading",)
    assert brief.most("pose") == ("sitting", "standing")
    (place,) = location_briefs(story.scenes())
    assert place.description == "a hall, colours #AABBCC" and place.colours == ("#aabbcc",)
    assert place.settings == ("Night", "Dawn")


def _request(**kw) -> SceneRequest:
    values = dict(scene_id="scene_1.2", speaker="male_a", text="Hello.", previous_text=None, next_text=None,
                  characters=("male_a", "female_b"), locations=(("loc_1", "a hall"),), previous_location="loc_1")
    values.update(kw)
    return SceneRequest(**values)


def test_scene_line_checks_name_the_problem() -> None:
    request = _request()
    ok = check_scene_line(scene_text("{{loc_1}}, {Night}; ((male_a)){Calm};", "scene_1.2"), request)
    assert ok.scene_id == "scene_1.2"
    assert check_scene_line(scene_text("(scene_7.7) {{loc_2, a garden}}, {Day}; ((male_a)){Calm};", "scene_1.2"),
                            request).location_id == "loc_2"
    problems = {
        "{{loc_1}}, {Night}; ((female_b)){Calm};": "must be in the picture",
        "{{loc_5, far away}}; ((male_a)){Calm};": "is not a known location",
        "{{loc_2}}; ((male_a)){Calm};": "needs a description",
        "((male_a)){Calm};": "must start with a location",
        "{{loc_1}}; ((male_z)){Calm};": "is not a character",
        "{{loc_1}} the hall; ((male_a)){Calm};": "scene lines hold only",
    }
    for answer, reason in problems.items():
        with pytest.raises(ValueError, match=reason):
            check_scene_line(scene_text(answer, "scene_1.2"), request)
    assert offline_scene_line(_request(speaker="narrator")) == "(scene_1.2) {Narration};"


def test_prose_check_and_attribute_format() -> None:
    check_prose(_words(60), (60, 120))
    with pytest.raises(ValueError, match="write 60-120 words"):
        check_prose(_words(20), (60, 120))
    with pytest.raises(ValueError, match="#5b6770"):
        check_prose(_words(60), (60, 120), ("#5b6770",))
    with pytest.raises(ValueError, match="one paragraph"):
        check_prose(_words(40) + "\n\n" + _words(40), (60, 120))
    value = {"face": {"head_shape": "oval", "hair_color": "dark (almost black)"},
             "accessories": [{"type": "pocket watch", "color": "silver"}], "empty": []}
    assert format_attributes(value) == ("Face: (Head Shape: oval, Hair Color: dark almost black), "
                                        "Accessories: [(Type: pocket watch, Color: silver)]")
    assert isinstance(CharacterBrief, type) and isinstance(LocationBrief, type)
