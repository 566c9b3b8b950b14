"""gen.image's picture steps with the offline engine, on the seed system's own description files.

One storyboard card per speaker, per place and per scene line; the review page shows them all;
a rerun makes nothing; a scene card takes its colours from its location.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from common.formats import read_scenes, read_story
from tests.support.image_inputs import SMALL, image_pipeline, run_inline
from tests.support.project import env_for

pytestmark = pytest.mark.timeout(180)
# Small, but not so small that a card cannot lay out two figures and its text.
SIZES = {**SMALL, "IMAGE_WIDTH": "256", "IMAGE_HEIGHT": "144"}


def offline(pipeline: Path, script: str, *args: str) -> str:
    code, out, err = run_inline(pipeline, script, env_for(PIPELINE_ENGINE="offline", **SIZES), *args)
    assert code == 0, out[-2000:] + err[-3000:]
    return out


def mean_colour(path: Path) -> tuple[float, ...]:
    with Image.open(path) as img:
        return tuple(ImageStat.Stat(img.convert("RGB")).mean)


def distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5


def test_one_card_per_speaker_place_and_scene_line(fixtures_dir: Path, tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path, fixtures=fixtures_dir)
    for script in ("2.character.py", "2.location.py", "3.scene.py"):
        offline(pipeline, script)
    output = pipeline / "output"
    speakers = read_story(pipeline / "input" / "1.story.txt").speakers()
    scenes = read_scenes(pipeline / "input" / "3.scene.txt").scenes
    places = {s.location_id for s in scenes}
    assert sorted(p.stem for p in (output / "characters").glob("*.png")) == sorted(speakers)
    assert sorted(p.stem for p in (output / "locations").glob("*.png")) == sorted(places)
    assert sorted(p.stem for p in (output / "scene").glob("*.png")) == sorted(s.scene_id for s in scenes)
    with Image.open(output / "characters" / "male_doctor_watson.png") as img:
        assert img.size == (96, 144)
    with Image.open(output / "scene" / "scene_3.16.png") as img:
        assert img.size == (256, 144)
    items = json.loads((output / "tracking" / "3.scene.state.json").read_text())["items"]
    assert len(items) == len(scenes) and all(e["preview"] for e in items.values())

    page = (output / "review.html").read_text(encoding="utf-8")
    assert page.count("<figure") == len(speakers) + len(places) + len(scenes)
    for name in [*speakers, *places, *(s.scene_id for s in scenes)]:
        assert f'id="{name}"' in page

    # A scene's card wears its location's colours: closer to its own place's card than to the others.
    loc_1, scene = mean_colour(output / "locations" / "loc_1.png"), mean_colour(output / "scene" / "scene_1.1.png")
    others = [mean_colour(output / "locations" / f"loc_{n}.png") for n in range(2, 7)]
    assert all(distance(scene, loc_1) < distance(scene, other) for other in others)

    again = offline(pipeline, "3.scene.py")
    assert f"0 made, {len(scenes)} already done" in again


def test_a_stale_retake_line_warns_overnight_and_stops_only_an_explicit_retake(tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    offline(pipeline, "2.character.py")
    (pipeline / "retake.txt").write_text("scene_9.9\n", encoding="utf-8")
    out = offline(pipeline, "3.scene.py")  # an ordinary (overnight) run goes on
    assert "names scene_9.9, which is no scene of this story" in out and "ignored" in out
    assert len(list((pipeline / "output" / "scene").glob("*.png"))) == 3
    code, said, err = run_inline(pipeline, "3.scene.py", env_for(PIPELINE_ENGINE="offline", **SIZES), "--retake")
    assert code == 3 and "fix or remove the line" in said + err
