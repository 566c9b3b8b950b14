"""The picture plan: items from descriptions, prompts, sizes, seeds, variations, passes, references."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from common.state.checkpoints import CheckpointStore, Entry
from common.engines.base import ImageRequest
from common.run.errors import ConfigError, InputError, JobError
from common.pictures.overlay import name_band
from common.pictures.passes import PassJob, parse_loras, plan_passes, run_passes
from common.pictures.plan import RETAKE_SEED_STEP, SeedBook, plan_items
from common.pictures.retake import kind_of, read_retake, retake_ids
from common.pictures.stitch import Reference, group_references, placements, stitch
from common.config.settings import load_settings
from tests.support.image_inputs import CHARACTERS, LOCATIONS, image_pipeline, picture

TWO_LORAS = [
    {"name": "ghibli_style.safetensors", "strength_model": 2.0, "strength_clip": 1.5, "steps": 9, "denoising_strength": 1,
     "enabled": True, "save_intermediate": True},
    {"file": "detail_tweaker.safetensors", "strength_model": 0.7, "steps": 4, "denoising_strength": 0.3,
     "use_only_intermediate": True},
    {"name": "off.safetensors", "enabled": False},
]


def settings(**values):
    return load_settings(None, values, environ={})


def plan(kind: str, pipeline: Path, seeds: SeedBook | None = None, **values):
    s = settings(**values)
    return plan_items(kind, s, pipeline, seeds or SeedBook(s, {}))


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    return image_pipeline(tmp_path)


def test_characters_and_locations_from_the_seed_files(fixtures_dir: Path, tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path, fixtures=fixtures_dir)
    characters = plan("character", pipeline)
    assert [i.key for i in characters] == ["female_nervous_mother", "male_detective_holmes", "male_doctor_watson"]
    assert {(i.width, i.height) for i in characters} == {(633, 950)}
    assert characters[0].job_size == (640, 960)
    assert "Face: (Head Shape: oval, Skin Tone: pale" in characters[0].prompt and "Ghibli Art" in characters[0].prompt
    assert characters[0].out == pipeline / "output" / "characters" / "female_nervous_mother.png"
    locations = plan("location", pipeline, USE_SUMMARY_TEXT=True)
    assert [i.key for i in locations] == [f"loc_{n}" for n in range(1, 7)]
    assert {(i.width, i.height) for i in locations} == {(1280, 720)}
    assert locations[0].settings["source"] == "3.location.txt" and "A large brown wooden table" in locations[0].prompt
    scenes = plan("scene", pipeline, ACTIVE_CHARACTER_MODE="TEXT")
    assert len(scenes) == 56 and scenes[0].key == "scene_1.1" and scenes[-1].key == "scene_3.16"


def test_face_only_variations_and_fixed_seeds(pipeline: Path) -> None:
    items = plan("character", pipeline, VARIATIONS_PER_CHARACTER=3, FACE_ONLY=True, FIXED_SEED=100, NAME_OVERLAY=False)
    watson = [i for i in items if i.item_id == "male_doctor_watson"]
    assert [i.key for i in watson] == ["male_doctor_watson", "male_doctor_watson.v2", "male_doctor_watson.v3"]
    assert [i.seed.value for i in watson] == [100, 101, 102]
    assert [i.out.name for i in watson] == ["male_doctor_watson.png", "male_doctor_watson.v2.png", "male_doctor_watson.v3.png"]
    assert all("face and shoulders" in i.prompt and CHARACTERS["male_doctor_watson"] in i.prompt for i in watson)
    assert all(i.clean == i.out and i.name == "" for i in watson)
    banded = plan("character", pipeline)[0]
    assert banded.name == "Doctor Watson" and banded.clean.parent.name == "clean"
    assert "whole body" in banded.prompt


def test_random_seed_is_drawn_once_and_a_retake_draws_again(pipeline: Path) -> None:
    s = settings(USE_RANDOM_SEED=True)
    first = plan_items("location", s, pipeline, SeedBook(s, {}))
    assert all(i.seed.random for i in first)
    done = {i.key: Entry(i.key, "fp", ("x",), {"seed": i.seed.value, "random_seed": True, "take": 0}) for i in first}
    again = plan_items("location", s, pipeline, SeedBook(s, done))
    assert [i.seed.value for i in again] == [i.seed.value for i in first]
    book = SeedBook(s, done, {"loc_2"})
    retaken = plan_items("location", s, pipeline, book)
    assert retaken[0].seed.value == first[0].seed.value and not retaken[0].seed.retaken
    assert retaken[1].seed.retaken and retaken[1].seed.take == 1 and book.matched == {"loc_2"}
    # The fingerprint leaves a random seed out, so a rerun never redoes a picture for its seed.
    assert first[0].identity() == again[0].identity()


def test_fixed_seed_retake_moves_the_seed_and_keeps_it(pipeline: Path) -> None:
    s = settings(FIXED_SEED=10)
    book = SeedBook(s, {}, {"loc_1"})
    item = plan_items("location", s, pipeline, book)[0]
    assert (item.seed.value, item.seed.take) == (10 + RETAKE_SEED_STEP, 1)
    done = {"loc_1": Entry("loc_1", "fp", ("x",), {"seed": item.seed.value, "take": 1})}
    assert plan_items("location", s, pipeline, SeedBook(s, done))[0].seed.value == 10 + RETAKE_SEED_STEP


def test_location_only_in_a_scene_line_still_gets_a_picture(pipeline: Path) -> None:
    scenes = pipeline / "input" / "3.scene.txt"
    scenes.write_text(scenes.read_text() + "(scene_3.1) {{loc_9, HOTEL lighthouse lamp room}}, {night};\n", encoding="utf-8")
    items = plan("location", pipeline)
    assert [i.key for i in items] == ["loc_1", "loc_2", "loc_9"] and "HOTEL lighthouse" in items[2].prompt
    scenes.write_text(scenes.read_text() + "(scene_3.2) {{loc_8}}, {night};\n", encoding="utf-8")
    with pytest.raises(InputError, match="loc_8"):
        plan("location", pipeline)


def test_missing_descriptions_and_start_pictures_are_input_errors(pipeline: Path) -> None:
    with pytest.raises(InputError, match="start picture .*2.latent.character.body.medium.png"):
        plan("character", pipeline, LATENT_MODE="IMAGE")
    picture(pipeline / "input" / "2.latent.character.face.large.png", (64, 64))
    with pytest.raises(InputError, match="2.latent.character.face.large.png exist: set CHARACTER_LATENT_SIZE"):
        plan("character", pipeline, LATENT_MODE="IMAGE", FACE_ONLY=True)
    item = plan("character", pipeline, LATENT_MODE="IMAGE", FACE_ONLY=True, CHARACTER_LATENT_SIZE="large")[0]
    assert item.start_image.name == "2.latent.character.face.large.png" and item.start_denoise == 0.8
    (pipeline / "input" / "2.character.txt").unlink()
    with pytest.raises(InputError, match="run 1.story.py first"):
        plan("character", pipeline)


def test_scene_text_modes_describe_everyone_in_words(pipeline: Path) -> None:
    items = plan("scene", pipeline, ACTIVE_CHARACTER_MODE="TEXT", ACTIVE_LOCATION_MODE="TEXT")
    two = items[1]
    assert two.groups == () and "Time and weather: foggy dusk." in two.prompt
    assert LOCATIONS["loc_2"] in two.prompt
    assert CHARACTERS["female_nervous_mother"] in two.prompt and CHARACTERS["male_doctor_watson"] in two.prompt
    assert "pleading FOXTROT" in two.prompt and "reference image" not in two.prompt
    # The offline card: who does what, and the place's words (its colours make the palette).
    assert two.details == ("female_nervous_mother: pleading FOXTROT, worried", "male_doctor_watson: listening, standing")
    assert "DELTA foggy London street" in two.caption and "foggy dusk" in two.caption
    none = plan("scene", pipeline, ACTIVE_CHARACTER_MODE="NONE", ACTIVE_LOCATION_MODE="NONE")[1]
    assert CHARACTERS["male_doctor_watson"] not in none.prompt and LOCATIONS["loc_2"] not in none.prompt
    assert "Doctor Watson: Body Posture: standing" in none.prompt
    words = plan("scene", pipeline, ACTIVE_CHARACTER_MODE="TEXT", CHARACTER_WORD_LIMIT=3)[1]
    assert "who looks like this: BRAVO pale woman, ..." in words.prompt


def test_scene_image_modes_stitch_characters_then_the_place(pipeline: Path) -> None:
    with pytest.raises(InputError, match="2.character.py first"):
        plan("scene", pipeline, ACTIVE_CHARACTER_MODE="IMAGE")
    for tag in CHARACTERS:
        picture(pipeline / "output" / "characters" / "clean" / f"{tag}.png", (60, 90))
    for loc in LOCATIONS:
        picture(pipeline / "output" / "locations" / "clean" / f"{loc}.png", (160, 90))
    items = plan("scene", pipeline, ACTIVE_CHARACTER_MODE="IMAGE", ACTIVE_LOCATION_MODE="IMAGE_TEXT",
                 IMAGE_STITCH_COUNT=2, CHARACTER_RESIZE_FACTOR=0.5)
    two = items[1]
    assert [[(r.role, r.key, r.scale) for r in g] for g in two.groups] == [
        [("character", "female_nervous_mother", 0.5), ("character", "male_doctor_watson", 0.5)],
        [("location", "loc_2", 1.0)],
    ]
    assert "Mother (the person in reference image 1, on the left)" in two.prompt
    assert "Watson (the person in reference image 1, on the right)" in two.prompt
    assert "the place shown in reference image 2, as the background" in two.prompt and LOCATIONS["loc_2"] in two.prompt
    assert CHARACTERS["male_doctor_watson"] not in two.prompt  # IMAGE mode: the picture, not the words
    assert two.groups[0][0].path == pipeline / "output" / "characters" / "clean" / "female_nervous_mother.png"
    # Without the name band the final pictures themselves are the references.
    for tag in CHARACTERS:
        picture(pipeline / "output" / "characters" / f"{tag}.png", (60, 90))
    plain = plan("scene", pipeline, ACTIVE_CHARACTER_MODE="IMAGE", NAME_OVERLAY=False)[0]
    assert plain.groups[0][0].path == pipeline / "output" / "characters" / "male_doctor_watson.png"
    with pytest.raises(ConfigError, match="IMAGE_STITCH_COUNT"):
        plan("scene", pipeline, ACTIVE_CHARACTER_MODE="TEXT", IMAGE_STITCH_COUNT=6)


def test_scene_latent_image_mode_starts_from_the_location_picture(pipeline: Path) -> None:
    with pytest.raises(InputError, match="2.location.py"):
        plan("scene", pipeline, ACTIVE_CHARACTER_MODE="TEXT", LATENT_MODE="IMAGE")
    picture(pipeline / "output" / "locations" / "clean" / "loc_1.png", (160, 90))
    picture(pipeline / "output" / "locations" / "clean" / "loc_2.png", (160, 90))
    items = plan("scene", pipeline, ACTIVE_CHARACTER_MODE="TEXT", LATENT_MODE="IMAGE", LATENT_DENOISING_STRENGTH=0.6)
    assert items[0].start_image.name == "loc_1.png" and items[1].start_image.name == "loc_2.png"
    assert items[0].start_denoise == 0.6 and items[0].groups == ()


def test_stitch_scales_characters_and_sets_pictures_side_by_side(tmp_path: Path) -> None:
    refs = [Reference("character", "a", picture(tmp_path / "a.png", (100, 150), "red"), 0.5),
            Reference("character", "b", picture(tmp_path / "b.png", (100, 150), "blue"), 0.5),
            Reference("location", "loc_1", picture(tmp_path / "l.png", (160, 90), "green"), 1.0)]
    out = stitch(refs, tmp_path / "stitched.png")
    with Image.open(out) as img:
        assert img.size == (50 + 50 + 160, 90)
        rgb = img.convert("RGB")
        assert rgb.getpixel((25, 89))[0] > 200 and rgb.getpixel((75, 89))[2] > 200 and rgb.getpixel((150, 45))[1] > 100
        assert rgb.getpixel((25, 0)) == (255, 255, 255)  # bottom-aligned: above the short pictures is background
    groups = group_references(refs, 2)
    assert [len(g) for g in groups] == [2, 1]
    where = placements(groups)
    assert where[("location", "loc_1")].phrase() == "reference image 2"
    assert where[("character", "b")].phrase() == "reference image 1, on the right"


def test_name_band_darkens_only_the_bottom(tmp_path: Path) -> None:
    src = picture(tmp_path / "plain.png", (200, 300), "white")
    out = name_band(src, tmp_path / "named.png", "Doctor Watson")
    with Image.open(out) as img:
        assert img.size == (200, 300)
        assert img.getpixel((100, 5)) == (255, 255, 255)
        bottom = [img.getpixel((x, 298)) for x in (2, 197)]
        assert all(max(p) < 120 for p in bottom)  # the translucent black band
        band = img.crop((0, 200, 200, 300)).convert("L")
        assert band.getextrema()[1] > 200  # white letters on it


def test_lora_passes_serial_chained_and_off() -> None:
    serial = plan_passes(settings(USE_LORA=True, LORA_MODE="serial", LORAS=TWO_LORAS, SAMPLING_STEPS=20))
    assert [(p.number, p.label, p.loras, p.steps) for p in serial] == [
        (1, "ghibli_style", (("ghibli_style.safetensors", 2.0, 1.5),), 9),
        (2, "detail_tweaker", (("detail_tweaker.safetensors", 0.7, 1.0),), 4),
    ]
    assert (serial[0].from_previous, serial[0].denoise, serial[0].save_intermediate) == (False, None, True)
    assert (serial[1].from_previous, serial[1].denoise, serial[1].references) == (True, 0.3, False)
    chained = plan_passes(settings(USE_LORA=True, LORA_MODE="chained", LORAS=TWO_LORAS, SAMPLING_STEPS=20))
    assert len(chained) == 1 and [l[0] for l in chained[0].loras] == ["ghibli_style.safetensors", "detail_tweaker.safetensors"]
    assert chained[0].steps == 20
    off = plan_passes(settings(USE_LORA=False, LORAS=TWO_LORAS))
    assert len(off) == 1 and off[0].loras == ()
    assert parse_loras([{"name": "x", "bypass_clip": True}])[0].strength_clip == 0.0
    for bad in ([{"strength_model": 1}], [{"name": "x", "steps": 0}], [{"name": "x", "strength_model": "high"}],
                [{"name": "x", "denoising_strength": 1.5}]):
        with pytest.raises(ConfigError, match="LORAS entry 1"):
            parse_loras(bad)


def test_retake_file_ids_by_kind(tmp_path: Path) -> None:
    (tmp_path / "retake.txt").write_text("# redo these\nmale_doctor_watson\n\nloc_2  # too dark\nscene_1.4.v2\n", encoding="utf-8")
    assert read_retake(tmp_path) == [(2, "male_doctor_watson"), (4, "loc_2"), (5, "scene_1.4.v2")]
    assert retake_ids(tmp_path, "scene") == {"scene_1.4.v2": 5}
    assert [kind_of(i) for i in ("loc_1.v3", "scene_2.1", "female_x")] == ["location", "scene", "character"]
    (tmp_path / "retake.txt").write_text("loc_1 loc_2\n", encoding="utf-8")
    with pytest.raises(InputError, match="one id a line"):
        read_retake(tmp_path)
    with pytest.raises(InputError, match="missing"):
        read_retake(tmp_path / "nowhere")


class RecordingEngine:
    """An ImageEngine that paints a flat picture per request and can fail on the n-th job."""

    name = "recording"
    preview = False

    def __init__(self, fail_on: int | None = None) -> None:
        self.requests: list = []
        self.fail_on = fail_on

    def identity(self) -> dict:
        return {"engine": "recording"}

    def image(self, request, out_png: Path) -> Path:
        self.requests.append(request)
        if self.fail_on == len(self.requests):
            raise JobError("the job failed")
        Image.new("RGB", (request.width, request.height), (40 * len(self.requests), 0, 0)).save(out_png)
        return out_png


def test_serial_passes_resume_at_the_pass_that_was_not_finished(tmp_path: Path) -> None:
    passes = plan_passes(settings(USE_LORA=True, LORA_MODE="serial", LORAS=[
        TWO_LORAS[0], {**TWO_LORAS[1], "save_intermediate": False}]))
    store = CheckpointStore(tmp_path / "state.json", base_dir=tmp_path)
    ref = picture(tmp_path / "ref.png", (32, 32))
    request = ImageRequest("scene", "scene_1.1", "a scene", 64, 48, seed=3)
    job = PassJob("scene_1.1", "fp1", request, None, 0.8, (ref,), tmp_path / "scene_1.1.png", tmp_path / "lora")
    first = RecordingEngine(fail_on=2)
    with pytest.raises(JobError):
        run_passes(first, job, passes, store, str)
    assert [r.loras[0][0] for r in first.requests] == ["ghibli_style.safetensors", "detail_tweaker.safetensors"]
    assert first.requests[0].reference_images == (ref,) and first.requests[0].input_image is None
    kept = tmp_path / "lora" / "scene_1.1.1.ghibli_style.png"
    assert "scene_1.1#pass1" in store.entries() and kept.is_file()

    again = RecordingEngine()
    records = run_passes(again, job, passes, store, str)
    assert len(again.requests) == 1  # pass 1 was finished: only pass 2 runs
    second = again.requests[0]
    assert (second.input_image, second.denoise, second.steps) == (kept, 0.3, 4)
    assert second.reference_images == ()  # use_only_intermediate: the picture so far, no references
    assert [r["cached"] for r in records] == [True, False] and records[0]["file"] == str(kept)
    assert "scene_1.1#pass1" not in store.entries() and kept.is_file()  # save_intermediate keeps the picture
    assert (tmp_path / "scene_1.1.png").is_file()
