"""A story for the asset library and sheet tests: recurring characters across three places, and helpers.

MILL_STORY has four characters (one a speaker never pictured), three locations shown at dawn,
morning, noon and night, a key named as [[key]] and a lantern that only recurs in the words.
`pipelines()` sets gen.audio (the story and a voice map) beside gen.image.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.support.image_inputs import run_inline
from tests.support.project import copy_pipeline, env_for

SMALL = {"CHARACTER_WIDTH": "96", "CHARACTER_HEIGHT": "144", "IMAGE_WIDTH": "256", "IMAGE_HEIGHT": "144"}
OFFLINE = env_for(PIPELINE_ENGINE="offline", **SMALL)

# Recurring characters across three places, at dawn, morning, noon and night; a key named as [[key]],
# a lantern that only recurs in the words; a speaker who is never in a picture.
MILL_STORY = """\
[narrator] At dawn the baker opened the old mill.
(scene_1.1) {{loc_1, an old stone mill by a river, colours #8b7355 #c2b280}}, {Dawn, mist}; ((female_baker_mira)){Sleepy}, {Standing at the door}{Turning the iron key}[[key]];
[female_baker_mira] The key sticks every morning.
(scene_1.2) {{loc_1}}, {Dawn, mist}; ((female_baker_mira)){Annoyed}, {Kneeling by the door}{Oiling the key};
[male_miller_otto] Bring the lantern, the cellar is dark.
(scene_2.1) {{loc_2, a low brick cellar full of flour sacks}}, {Morning, lamplight}; ((male_miller_otto)){Stern}, {Standing on the stairs}{Holding the lantern}; ((female_baker_mira)){Curious}, {Behind him}{Carrying a basket};
[female_baker_mira] Something moved behind the sacks.
(scene_2.2) {{loc_2}}, {Morning, lamplight}; ((female_baker_mira)){Afraid}, {Crouching}{Raising the lantern};
[male_miller_otto] Only the cat. Come, the market opens at noon.
(scene_3.1) {{loc_3, a busy market square with striped awnings}}, {Noon, bright sun}; ((male_miller_otto)){Cheerful}, {Standing by a cart}{Selling bread}; ((female_baker_mira)){Smiling}, {Behind the stall}{Counting coins};
[male_boy_pip] Two loaves, please!
(scene_3.2) {{loc_3}}, {Noon, bright sun}; ((male_boy_pip)){Eager}, {On tiptoe}{Holding out coins}; ((female_baker_mira)){Amused}, {Behind the stall}{Handing over the loaves};
[female_baker_mira] That night she locked the mill with the same old key.
(scene_3.3) {{loc_1}}, {Night, stars}; ((female_baker_mira)){Tired}, {Standing at the door}{Locking the door}[[key]];
[male_stranger_vell] I will be back for that key.
"""
CHARACTERS = ("female_baker_mira", "male_miller_otto", "male_boy_pip", "male_stranger_vell")


def pipelines(tmp_path: Path, story: str | None = None) -> Path:
    """gen.audio (its story and voice map) and gen.image side by side; returns gen.image."""
    audio = copy_pipeline(tmp_path, "gen.audio", story=story)
    (audio / "input" / "1.story.speakers.txt").write_text(
        "female_baker_mira  jenny_en\nmale_miller_otto  alok_en  # gruff\n", encoding="utf-8")
    return copy_pipeline(tmp_path, "gen.image")


def run(pipeline: Path, script: str, env: dict[str, str] = OFFLINE, *args: str, code: int = 0) -> tuple[str, str]:
    returncode, out, err = run_inline(pipeline, script, env, *args)
    assert returncode == code, out[-3000:] + err[-3000:]
    return out, err


def library_doc(pipeline: Path) -> dict:
    return json.loads((pipeline / "input" / "assets.json").read_text(encoding="utf-8"))


def state(pipeline: Path, script: str) -> dict:
    return json.loads((pipeline / "output" / "tracking" / f"{script}.state.json").read_text(encoding="utf-8"))["items"]
