"""gen.image's asset library (input/assets.json, issue 15 point 1): built by 1.story.py from the story,
offline from the story's own words and through the (fake) LLM, the user's edits kept, and scene
lines naming assets checked against it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.formats.assets import parse_assets, read_assets
from common.formats.story import parse_scene_line
from common.pictures.asset_facts import recurring_objects, scene_time, time_of_day
from common.run.errors import InputError
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.asset_inputs import CHARACTERS, MILL_STORY, OFFLINE, library_doc, pipelines, run, state
from tests.support.project import env_for

pytestmark = pytest.mark.timeout(180)


# ---------------------------------------------------------------- offline, from the story's own words

def test_offline_library_of_a_story_with_three_places(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    out, _ = run(pipeline, "1.story.py")
    assert "wrote assets.json: 4 characters, 3 locations" in out
    library = read_assets(pipeline / "input" / "assets.json")
    assert tuple(library.characters) == CHARACTERS  # every speaker but the narrator, and every ((tag))
    mira = library.characters["female_baker_mira"]
    assert (mira.name, mira.gender, mira.voice) == ("Baker Mira", "female", "jenny_en")
    assert library.characters["male_miller_otto"].voice == "alok_en"
    assert library.characters["male_boy_pip"].voice is None  # not in the voice map
    assert mira.expressions[:3] == ("sleepy", "annoyed", "curious") and len(mira.expressions) == 7
    assert mira.sheet == "output/sheets/female_baker_mira.png"
    assert mira.scenes == ("scene_1.1", "scene_1.2", "scene_2.1", "scene_2.2", "scene_3.1", "scene_3.2", "scene_3.3")
    assert library.characters["male_stranger_vell"].scenes == ()  # speaks, never pictured
    assert {k: v.times for k, v in library.locations.items()} == {
        "loc_1": ("dawn", "night"), "loc_2": ("morning",), "loc_3": ("noon",)}
    assert library.locations["loc_1"].lighting == {"dawn": "Dawn, mist", "night": "Night, stars"}
    assert library.locations["loc_1"].description.startswith("an old stone mill by a river")
    assert set(library.objects) == {"key", "lantern"}  # [[key]], and the lantern handled in two scenes
    assert library.objects["lantern"].description == "the lantern"
    assert library.objects["lantern"].characters == ("male_miller_otto", "female_baker_mira")
    assert library.objects["key"].scenes == ("scene_1.1", "scene_1.2", "scene_3.3")
    assert "standing_at_the_door" in library.poses and library.poses["standing_at_the_door"].scenes == ("scene_1.1", "scene_3.3")
    style = library.style
    assert style.art_style == "Ghibli Art" and style.palette == ("#8b7355", "#c2b280")
    assert "dawn, morning, noon, night" in style.lighting and style.lens
    items = state(pipeline, "1.story")
    assert {k for k in items if k.startswith("asset:")} == {
        *(f"asset:characters/{c}" for c in CHARACTERS), "asset:locations/loc_1", "asset:locations/loc_2",
        "asset:locations/loc_3", "asset:objects/key", "asset:objects/lantern", "asset:styles/main", "asset:proposed"}
    assert all(e["preview"] for k, e in items.items() if k.startswith("asset:"))
    before = (pipeline / "input" / "assets.json").stat().st_mtime_ns
    again, _ = run(pipeline, "1.story.py")
    assert "[assets] 10 items: 0 made, 10 already done" in again and "unchanged: assets.json" in again
    assert (pipeline / "input" / "assets.json").stat().st_mtime_ns == before


def test_offline_library_of_the_sample_story(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path)
    run(pipeline, "1.story.py")
    library = read_assets(pipeline / "input" / "assets.json")
    assert tuple(library.characters) == ("female_keeper_niece_ada", "male_fisherman_bram", "male_keeper_silas")
    assert {k: v.times for k, v in library.locations.items()} == {
        "loc_1": ("evening", "night"), "loc_2": ("night",), "loc_3": ("night", "dawn")}
    assert set(library.objects) == {"lantern", "logbook"}  # the lamp room's chart table is furniture
    assert library.objects["lantern"].description == "a brass lantern"
    assert library.objects["lantern"].locations == ("loc_1", "loc_2", "loc_3")
    assert library.style.palette[:3] == ("#5b6770", "#d9d2c5", "#2f3b44")
    assert library.characters["male_keeper_silas"].objects == ("logbook",)
    out, _ = run(pipeline, "2.character.py")
    assert "[sheets] 3 items: 3 made" in out
    assert sorted(p.name for p in (pipeline / "output" / "sheets").glob("*.png")) == [
        f"{tag}.png" for tag in library.characters]


# ---------------------------------------------------------------- the user's edits

def test_user_edits_are_kept_field_by_field_and_stale_entries_go(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    run(pipeline, "1.story.py")
    doc = library_doc(pipeline)
    doc["characters"]["male_miller_otto"]["description"] = "a tall miller, white apron, red scarf, flour on his boots"
    doc["characters"]["female_baker_mira"]["expressions"] = ["sleepy", "smiling"]
    doc["objects"]["cat"] = {"description": "a fat ginger cat"}  # the user's own asset
    doc["styles"]["main"]["lens"] = "an 85 mm portrait lens"
    (pipeline / "input" / "assets.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    for _ in range(2):  # kept on the next run, and on the one after
        out, _ = run(pipeline, "1.story.py")
        assert ("kept your edits: styles.main (lens); characters.female_baker_mira (expressions); "
                "characters.male_miller_otto (description); objects.cat (your entry)") in out
        library = read_assets(pipeline / "input" / "assets.json")
        assert library.characters["male_miller_otto"].description.startswith("a tall miller")
        assert library.characters["female_baker_mira"].expressions == ("sleepy", "smiling")
        assert library.characters["female_baker_mira"].voice == "jenny_en"  # untouched fields follow the story
        assert library.objects["cat"].description == "a fat ginger cat" and library.style.lens == "an 85 mm portrait lens"

    # The story loses Pip's lines: his entry (never edited) goes, the user's cat stays.
    story = "".join(line + "\n" for line in MILL_STORY.splitlines() if "male_boy_pip" not in line and "Two loaves" not in line)
    (pipeline.parent / "gen.audio" / "input" / "1.story.txt").write_text(story, encoding="utf-8")
    run(pipeline, "1.story.py")
    library = read_assets(pipeline / "input" / "assets.json")
    assert "male_boy_pip" not in library.characters and "cat" in library.objects
    assert "asset:characters/male_boy_pip" not in state(pipeline, "1.story")

    out, _ = run(pipeline, "1.story.py", OFFLINE, "--force")
    library = read_assets(pipeline / "input" / "assets.json")
    assert "kept your edits" not in out and "cat" not in library.objects
    assert library.characters["male_miller_otto"].description.startswith("Miller Otto")


def test_a_broken_edit_is_one_sentence_naming_the_entry(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    run(pipeline, "1.story.py")
    path = pipeline / "input" / "assets.json"
    good = path.read_text(encoding="utf-8")
    cases = {
        good.replace('"expressions": ["sleepy"', '"expressions": "sleepy", "x": ["sleepy"', 1):
            'female_baker_mira has an unknown field "x"',
        good.replace('"palette": ["#8b7355"', '"palette": ["brown"', 1): "styles.main.palette must be a list of #rrggbb",
        good.replace('"key": {', '"Key": {', 1): "objects.Key: names are lowercase",
        good[:-3]: "not valid JSON",
    }
    for text, reason in cases.items():
        path.write_text(text, encoding="utf-8")
        _, err = run(pipeline, "1.story.py", code=3)
        assert reason in err and err.count("\n") == 1, err


# ---------------------------------------------------------------- scene lines naming assets

def test_an_unknown_asset_in_a_scene_line_is_one_sentence_naming_the_line(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    run(pipeline, "1.story.py")
    run(pipeline, "2.character.py")
    scene_file = pipeline / "input" / "3.scene.txt"
    lines = scene_file.read_text(encoding="utf-8").splitlines()
    good = list(lines)
    lines[3] = lines[3].rstrip(";") + "[[sword]];"  # scene_2.2: Mira raises the lantern, and a sword
    scene_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _, err = run(pipeline, "3.scene.py", code=3)
    assert err.count("\n") == 1
    assert f"{scene_file} line 4: [[sword]] is not in {pipeline / 'input' / 'assets.json'}'s objects (key, lantern)" in err
    lines[3] = good[3].replace("((female_baker_mira))", "((female_ghost))")
    scene_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "line 4: ((female_ghost)) is not in" in run(pipeline, "3.scene.py", code=3)[1]
    lines[3] = good[3].replace("{{loc_2}}", "{{loc_9}}")
    scene_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert "line 4: {{loc_9}} is not in" in run(pipeline, "3.scene.py", code=3)[1]

    # An object the user adds to the library may be named at once.
    doc = library_doc(pipeline)
    doc["objects"]["sword"] = {"description": "a rusty sword"}
    (pipeline / "input" / "assets.json").write_text(json.dumps(doc), encoding="utf-8")
    lines[3] = good[3].rstrip(";") + "[[sword]];"
    scene_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run(pipeline, "3.scene.py")
    prompt = state(pipeline, "3.scene")["scene_2.2"]["data"]["prompt"]
    assert "Mira has the sword (a rusty sword)." in prompt


# ---------------------------------------------------------------- the LLM (fake server)

def _words(count: int) -> str:
    return " ".join(("a figure in a dark coat by warm lamplight with steady hands " * 20).split()[:count]) + "."


LLM_ANSWERS = [
    {"contains": "Turn these attributes of the location loc_1", "answer": _words(50) + " In #8b7355 and #c2b280."},
    {"contains": "Turn these attributes", "answer": _words(80)},
    {"contains": "Write the identity of the character [female_baker_mira]",
     "answer": {"identity": "young woman, flour on her cheeks, brown plait, blue apron"}},
    {"contains": "Write the identity of the character [male_miller_otto]",
     "answer": {"identity": "broad old man, white beard, grey smock"}},
    {"contains": "Write the identity of the character", "answer": {"identity": "thin figure, green cloak"}},
    {"contains": "the location loc_1 of the story as a background plate", "answer": {
        "name": "the mill", "description": "a stone mill, brown #8b7355 walls, sand #c2b280 path",
        "lighting": {"dawn": "pale mist", "night": "starlight"}}},
    {"contains": "the location loc_2 of the story as a background plate", "answer": {
        "name": "the cellar", "description": "a brick cellar with sacks",
        "lighting": {"morning": "one lamp"}}},
    {"contains": "the location loc_3 of the story as a background plate", "answer": {
        "name": "the market", "description": "a square of stalls", "lighting": {"noon": "hard sun"}}},
    {"contains": "Write the style bible", "answer": {
        "palette": ["#8b7355", "#c2b280", "#223344"], "lens": "50 mm", "lighting": "warm and low", "mood": "cosy"}},
    {"contains": "Describe the recurring object [[key]]", "answer": {"description": "a long iron key"}},
    {"contains": "Describe the recurring object", "answers": [{"description": " ".join(["very"] * 30)},
                                                               {"description": "a tin lantern"}]},
]


def test_llm_answers_fill_the_library_and_are_checkpointed(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    with start_fake_llm(tmp_path, answers=LLM_ANSWERS) as llm:
        env = env_for(PIPELINE_ENGINE="offline", PIPELINE_TEXT_ENGINE="llm", LM_STUDIO_BASE_URL=llm.base_url,
                      LM_STUDIO_MODEL="auto")
        run(pipeline, "1.story.py", env)
        library = read_assets(pipeline / "input" / "assets.json")
        assert library.characters["female_baker_mira"].description == "young woman, flour on her cheeks, brown plait, blue apron"
        assert library.characters["male_stranger_vell"].description == "thin figure, green cloak"
        assert library.characters["female_baker_mira"].voice == "jenny_en"  # facts stay the story's
        assert library.locations["loc_1"].lighting == {"dawn": "pale mist", "night": "starlight"}
        assert library.locations["loc_3"].name == "the market" and library.locations["loc_3"].times == ("noon",)
        assert library.style.palette == ("#8b7355", "#c2b280", "#223344") and library.style.art_style == "Ghibli Art"
        assert library.objects["key"].description == "a long iron key"
        assert library.objects["lantern"].description == "a tin lantern"  # the 30-word answer was asked again
        asked = [r for r in llm.chat_requests() if "Describe the recurring object [[lantern]]" in r["last_user"]
                 or "recurring object [[lantern]]" in str(r.get("last_user"))]
        assert asked and all(r["response_format"] == "json_schema" and r["max_tokens"] for r in asked)
        retry = [r for r in llm.chat_requests() if "description has 30 words; use at most 20" in r["last_user"]]
        assert len(retry) == 1
        items = state(pipeline, "1.story")
        assert not any(e.get("preview") for k, e in items.items() if k.startswith("asset:"))
        count = llm.chat_count()
        run(pipeline, "1.story.py", env)
        assert llm.chat_count() == count  # every answer came from its checkpoint


# ---------------------------------------------------------------- units

def test_times_of_day_and_objects_from_the_words() -> None:
    assert [time_of_day(t) for t in ("Autumn evening, thick fog", "Cold Winter Morning", "sunset", "in the rain")] == [
        "evening", "morning", "dusk", "unspecified"]
    scene = parse_scene_line("(scene_1.1) {{loc_1}}, {Weather/Season/Time: foggy dusk}; ((male_a)){Calm};")
    assert scene_time(scene) == "dusk"
    scenes = [parse_scene_line(line) for line in (
        "(scene_1.1) {{loc_1}}; ((male_a)){Calm}, {Standing on the jetty}{Holding the oar};",
        "(scene_1.2) {{loc_2}}; ((male_a)){Calm}, {Standing on the jetty}{Dropping the oars}[[ring]];",
        "(scene_1.3) {{loc_2}}; ((female_b)){Calm}, {Sitting at the table}{Folding newspaper};",
        "(scene_1.4) {{loc_2}}; ((female_b)){Calm}, {Sitting at the table}{Reading newspaper};",
        "(scene_1.5) {{loc_2}}; ((female_b)){Calm}, {Sitting}{Wiping the table};",
    )]
    found = recurring_objects(scenes, {"loc_1": "a jetty", "loc_2": "a kitchen with a table"}, ["male_a", "female_b"])
    assert [(o.name, o.scenes, o.tagged) for o in found] == [
        ("oar", ("scene_1.1", "scene_1.2"), False), ("ring", ("scene_1.2",), True),
        ("newspaper", ("scene_1.3", "scene_1.4"), False)]  # the jetty is a place, the table furniture


def test_the_file_format_reads_defaults_and_refuses_a_second_style() -> None:
    library = parse_assets('{"characters": {"male_a": {"description": "a knight"}}, "objects": {"key": {}}}',
                           source="assets.json")
    assert library.characters["male_a"].expressions == () and library.characters["male_a"].sheet is None
    assert library.objects["key"].description == "" and library.style.key == "main"
    with pytest.raises(InputError, match='styles holds one style bible, "main"'):
        parse_assets('{"styles": {"noir": {}}}', source="assets.json")
