"""Layered keyframes (issue 15 point 3, KEYFRAME_MODE = "layered"): a plate per place and time of day,
chained from the place's previous plate, each character posed from their sheet, composited onto the plate.

Offline on the sample story and on a written story (recurring characters, three places, a place that
continues into another time of day, one that returns, a scene of three people, one of nobody): every
scene picture has its layers on disk and shows them. Through the fake ComfyUI: the jobs per scene,
the Qwen graphs as queued (which uploaded file went to which image input), the chained plate starting
from the previous plate, one place edited redoing only its plates and composites, a SIGKILL mid-run
losing at most the job in flight, and --check naming a missing Qwen model.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from common.pictures.layers import layout
from common.pictures.references import set_edit_images
from common.run.errors import InputError
from common.services.comfyui.workflow import Workflow
from tests.fakes import start_fake_comfyui
from tests.support.asset_inputs import SMALL, library_doc, pipelines, run, state
from tests.support.project import REPO, env_for, run_generate

pytestmark = pytest.mark.timeout(240)

LAYERED = env_for(PIPELINE_ENGINE="offline", KEYFRAME_MODE="layered", **SMALL)
SIZE, POSE = (256, 144), (96, 144)

# Three places: the mill continues from dawn into the morning and comes back at night; the cellar
# continues from morning into the night; the market has three people at once, then nobody.
TOWN_STORY = """\
[narrator] At dawn the baker opened the old mill.
(scene_1.1) {{loc_1, an old stone mill by a river, colours #8b7355 #c2b280}}, {Dawn, mist}; ((female_baker_mira)){Sleepy}, {Standing at the door}{Turning the iron key}[[key]];
[female_baker_mira] The key sticks every morning.
(scene_1.2) {{loc_1}}, {Morning, sun}; ((female_baker_mira)){Annoyed}, {Kneeling by the door}{Oiling the key}; ((male_miller_otto)){Amused}, {Leaning on the wall}{Watching her};
[male_miller_otto] Bring the lantern, the cellar is dark.
(scene_2.1) {{loc_2, a low brick cellar full of flour sacks, colours #7a3b2e #d8c3a5}}, {Morning, lamplight}; ((male_miller_otto)){Stern}, {Standing on the stairs}{Holding the lantern}; ((female_baker_mira)){Curious}, {Behind him}{Carrying a basket};
[female_baker_mira] Something moved behind the sacks.
(scene_2.2) {{loc_2}}, {Night, lamplight}; ((female_baker_mira)){Afraid}, {Crouching}{Raising the lantern};
[male_miller_otto] Only the cat. Come, the market opens at noon.
(scene_3.1) {{loc_3, a busy market square with striped awnings, colours #2e6f95 #f2c14e}}, {Noon, bright sun}; ((male_miller_otto)){Cheerful}, {Standing by a cart}{Selling bread}; ((female_baker_mira)){Smiling}, {Behind the stall}{Counting coins}; ((male_boy_pip)){Eager}, {On tiptoe}{Holding out coins};
[male_boy_pip] Two loaves, please!
(scene_3.2) {{loc_3}}, {Noon, bright sun};
[female_baker_mira] That night she locked the mill with the same old key.
(scene_3.3) {{loc_1}}, {Night, stars}; ((female_baker_mira)){Tired}, {Standing at the door}{Locking the door}[[key]];
"""
CASTS = {"scene_1.1": ["female_baker_mira"], "scene_1.2": ["female_baker_mira", "male_miller_otto"],
         "scene_2.1": ["male_miller_otto", "female_baker_mira"], "scene_2.2": ["female_baker_mira"],
         "scene_3.1": ["male_miller_otto", "female_baker_mira", "male_boy_pip"], "scene_3.2": [],
         "scene_3.3": ["female_baker_mira"]}
# plate -> the plate it starts from: a place that continues, or comes back, starts from its latest plate
PLATES = {"loc_1@dawn": None, "loc_1@morning": "loc_1@dawn", "loc_2@morning": None, "loc_2@night": "loc_2@morning",
          "loc_3@noon": None, "loc_1@night": "loc_1@morning"}
SCENE_PLATES = {"scene_1.1": "loc_1@dawn", "scene_1.2": "loc_1@morning", "scene_2.1": "loc_2@morning",
                "scene_2.2": "loc_2@night", "scene_3.1": "loc_3@noon", "scene_3.2": "loc_3@noon", "scene_3.3": "loc_1@night"}
JOBS = len(PLATES) + sum(len(c) for c in CASTS.values()) + sum(-(-len(c) // 2) for c in CASTS.values())  # 6 + 10 + 7


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pixels(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("RGB")
        return np.asarray(img.resize(size, Image.Resampling.LANCZOS) if size else img, dtype=np.float32)


def town(tmp_path: Path, env: dict[str, str] = LAYERED) -> Path:
    pipeline = pipelines(tmp_path, TOWN_STORY)
    run(pipeline, "1.story.py", env)
    run(pipeline, "2.character.py", env)
    return pipeline


def assert_layers_shown(pipeline: Path, scene: str, cast: list[str]) -> None:
    """The scene's layers are on disk and its picture is made of them: each pose where the layout puts
    it, the plate everywhere else."""
    folder = pipeline / "output" / "layers" / scene
    assert {p.name for p in folder.iterdir()} >= {"plate.png", "composite.png", *(f"{t}.png" for t in cast)}, scene
    picture = pixels(pipeline / "output" / "scene" / f"{scene}.png")
    assert np.array_equal(picture, pixels(folder / "composite.png"))
    plate = pixels(folder / "plate.png")
    width, height = SIZE
    elsewhere = np.ones((height, width), dtype=bool)
    elsewhere[: height // 3, width // 2:] = False  # the scene id's label, top right
    for tag, (cx, feet, tall) in zip(cast, layout(len(cast), SIZE, POSE)):
        ph = round(tall * height)
        pw = round(ph * POSE[0] / POSE[1])
        x0, y0 = round(cx * width - pw / 2), round(feet * height - ph)
        pose = pixels(folder / f"{tag}.png", (pw, ph))
        inner = (slice(y0 + ph // 5, y0 + ph * 4 // 5), slice(x0 + pw // 5, x0 + pw * 4 // 5))
        core = pose[ph // 5: ph * 4 // 5, pw // 5: pw * 4 // 5]
        assert np.abs(picture[inner] - core).mean() < 6, f"{tag} is not where {scene} puts them"
        elsewhere[max(0, y0 - 6): y0 + ph + 8, max(0, x0 - 6): x0 + pw + 6] = False
    assert np.abs(picture[elsewhere] - plate[elsewhere]).mean() < 2, f"{scene}: the plate is not behind its people"


# ---------------------------------------------------------------- offline

def test_offline_sample_story_every_scene_picture_has_its_layers(tmp_path: Path) -> None:
    from common.formats.story import read_story

    pipeline = pipelines(tmp_path)  # gen.audio's sample story
    for script in ("1.story.py", "2.character.py"):
        run(pipeline, script, LAYERED)
    out, _ = run(pipeline, "3.scene.py", LAYERED)
    scenes = read_story(pipeline.parent / "gen.audio" / "input" / "1.story.txt").scenes()
    assert f"{len(scenes)} scene picture(s) at 256x144 in layers" in out
    for scene in scenes:
        cast = list(dict.fromkeys(c.tag for c in scene.characters))
        assert_layers_shown(pipeline, scene.scene_id, cast)
    plates = {k: e["data"] for k, e in state(pipeline, "3.scene").items() if k.startswith("plate:")}
    # The lighthouse by evening, then at night when the story comes back to it; the lamp room from night into dawn.
    assert plates["plate:loc_1@night"]["chained_from"] == "plate:loc_1@evening"
    assert plates["plate:loc_3@dawn"]["chained_from"] == "plate:loc_3@night"
    assert plates["plate:loc_1@evening"]["chained_from"] is None and len(plates) == 5
    page = (pipeline / "output" / "review.html").read_text(encoding="utf-8")
    assert "Background plates (5)" in page and 'id="plate:loc_3@dawn"' in page
    again, _ = run(pipeline, "3.scene.py", LAYERED)
    assert "[plates] 5 items: 0 made, 5 already done" in again and f"0 made, {len(scenes)} already done" in again


def test_offline_written_story_layers_chains_edits_and_retakes(tmp_path: Path) -> None:
    pipeline = town(tmp_path)
    out, _ = run(pipeline, "3.scene.py", LAYERED)
    assert "6 plate(s) (one per place and time of day), 10 posed character(s), 7 composite job(s)" in out
    for scene, cast in CASTS.items():
        assert_layers_shown(pipeline, scene, cast)
    entries = state(pipeline, "3.scene")
    assert {k.removeprefix("plate:"): e["data"]["chained_from"] for k, e in entries.items() if k.startswith("plate:")} == {
        k: f"plate:{v}" if v else None for k, v in PLATES.items()}
    for scene, plate in SCENE_PLATES.items():
        assert entries[scene]["data"]["layers"]["plate"] == f"plate:{plate}"
        place, when = plate.split("@")
        assert sha(pipeline / "output" / "layers" / scene / "plate.png") == sha(
            pipeline / "output" / "layers" / "plates" / f"{place}.{when}.png")
    # A chained plate keeps its place: nearer the plate it starts from than the other places' plates.
    plates = {k: pixels(pipeline / "output" / "layers" / "plates" / f"{k.replace('@', '.')}.png") for k in PLATES}
    night = plates["loc_2@night"]
    assert np.abs(night - plates["loc_2@morning"]).mean() < min(np.abs(night - plates[k]).mean()
                                                                 for k in ("loc_1@dawn", "loc_3@noon"))
    assert "composite.1.png" in os.listdir(pipeline / "output" / "layers" / "scene_3.1")  # three people: two passes
    assert not [k for k in entries if "#" in k]  # composite passes are checkpointed only until their picture is done
    assert sha(pipeline / "output" / "scene" / "scene_3.2.png") == sha(pipeline / "output" / "layers" / "scene_3.2" / "plate.png")

    # Edit one place: its plates and the composites on them are made again, nothing else.
    poses = {k: e for k, e in entries.items() if k.startswith("pose:")}
    doc = library_doc(pipeline)
    doc["locations"]["loc_2"]["description"] = "a damp stone cellar with barrels, colours #334455 #99aabb"
    (pipeline / "input" / "assets.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    out, _ = run(pipeline, "3.scene.py", LAYERED)
    assert "[plates] 6 items: 2 made, 4 already done" in out and "[scene] 7 items: 2 made, 5 already done" in out
    after = state(pipeline, "3.scene")
    redone = {k for k in after if after[k] != entries[k]}  # a redone entry has a new fingerprint, time and data
    assert redone == {"plate:loc_2@morning", "plate:loc_2@night", "scene_2.1", "scene_2.2"}
    assert {k: e for k, e in after.items() if k.startswith("pose:")} == poses

    # --retake of one scene: a new seed, so its poses and composite again; its plate stays.
    (pipeline / "retake.txt").write_text("scene_1.2\n", encoding="utf-8")
    out, _ = run(pipeline, "3.scene.py", LAYERED, "--retake")
    retaken = state(pipeline, "3.scene")
    assert {k for k in retaken if retaken[k] != after[k]} == {
        "scene_1.2", "pose:scene_1.2/female_baker_mira", "pose:scene_1.2/male_miller_otto"}
    assert retaken["scene_1.2"]["data"]["take"] == 1
    out, err = run(pipeline, "3.scene.py", {**LAYERED, "PLATE_CHAIN_DENOISE": "0"}, code=4)
    assert "PLATE_CHAIN_DENOISE is 0" in out + err and state(pipeline, "3.scene") == retaken


CANDIDATE_SCRIPT = '''
from common.pictures.keyframes import Keyframes
from common.pictures.steps import image_script

script = image_script(__file__, "scene", "the scene pictures, and one more candidate of scene_2.1")


def main(ctx):
    keyframes = Keyframes(ctx)
    keyframes.prepare()
    ctx.each(keyframes.todo, label="scene", key=lambda item: item.key, fingerprint=keyframes.fingerprint,
             work=lambda item: keyframes.make_keyframe(item, item.seed.value, item.out),
             preview=keyframes.preview, workers=keyframes.workers)
    item = next(i for i in keyframes.items if i.key == "scene_2.1")
    files, data = keyframes.make_keyframe(item, item.seed.value + 1, ctx.pipeline_dir / "output" / "candidates" / "scene_2.1.c2.png")
    ctx.say("candidate " + str(data["seed"]) + ": " + ", ".join(p.name for p in files))
    keyframes.finish()


if __name__ == "__main__":
    script.run(main)
'''


def test_a_candidate_with_another_seed_and_path_keeps_its_own_layers(tmp_path: Path) -> None:
    """The call a candidate maker wraps: another seed, another file, its layers beside the scene's own."""
    pipeline = town(tmp_path)
    (pipeline / "scripts" / "3.scene.py").write_text(CANDIDATE_SCRIPT, encoding="utf-8")
    out, _ = run(pipeline, "3.scene.py", LAYERED)
    seed = state(pipeline, "3.scene")["scene_2.1"]["data"]["seed"]
    assert f"candidate {seed + 1}: scene_2.1.c2.png, plate.png, male_miller_otto.png, female_baker_mira.png, composite.png" in out
    candidate = pipeline / "output" / "layers" / "scene_2.1.c2"
    assert (pipeline / "output" / "candidates" / "scene_2.1.c2.png").is_file() and (candidate / "composite.png").is_file()
    entries = state(pipeline, "3.scene")
    assert "pose:scene_2.1.c2/male_miller_otto" in entries and "pose:scene_2.1/male_miller_otto" in entries
    assert entries["scene_2.1"]["data"]["seed"] == seed  # the scene's own picture is untouched
    again, _ = run(pipeline, "3.scene.py", LAYERED)  # finish() kept the candidate's layers: nothing is made twice
    assert "[scene] 7 items: 0 made, 7 already done" in again and candidate.is_dir()
    assert state(pipeline, "3.scene")["pose:scene_2.1.c2/male_miller_otto"] == entries["pose:scene_2.1.c2/male_miller_otto"]


# ---------------------------------------------------------------- the edit-image patcher

def test_edit_images_fill_the_loaders_and_drop_the_unused_ones() -> None:
    composite = REPO / "gen.image" / "workflow" / "composite.json"
    workflow = Workflow.load(composite)
    set_edit_images(workflow, ["plate.png", "mira.png"])
    encoders = [v["inputs"] for v in workflow.nodes.values() if v["class_type"] == "TextEncodeQwenImageEditPlus"]
    assert len(encoders) == 2 and all("image3" not in e for e in encoders)
    loads = {v["_meta"]["title"]: v["inputs"]["image"] for v in workflow.nodes.values() if v["class_type"] == "LoadImage"}
    assert loads == {"image 1": "plate.png", "image 2": "mira.png"}
    assert sum(v["class_type"] == "ImageScaleToTotalPixels" for v in workflow.nodes.values()) == 2
    assert not workflow.dangling_links()

    bare = Workflow.load(composite)  # a user's graph with no loaders: one LoadImage per picture, shared
    for node_id in [n for n in bare.nodes if bare.class_of(n) in ("LoadImage", "ImageScaleToTotalPixels")]:
        del bare.nodes[node_id]
    for node in bare.nodes.values():
        for name in ("image1", "image2", "image3"):
            node["inputs"].pop(name, None)
    set_edit_images(bare, ["a.png", "b.png", "c.png"])
    assert sorted(v["inputs"]["image"] for v in bare.nodes.values() if v["class_type"] == "LoadImage") == ["a.png", "b.png", "c.png"]
    assert not bare.dangling_links()
    with pytest.raises(InputError, match="takes 3 picture"):
        set_edit_images(Workflow.load(composite), ["1.png", "2.png", "3.png", "4.png"])


# ---------------------------------------------------------------- ComfyUI (fake)

def comfy_env(fake, **settings: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", PIPELINE_TEXT_ENGINE="offline", COMFYUI_BASE_URL=fake.url,
                   COMFYUI_QUEUE_DEPTH="1", KEYFRAME_MODE="layered", **SMALL, **settings)


def encoder(job: dict[str, Any]) -> dict[str, Any] | None:
    """The positive Qwen-Image-Edit encoder's inputs (the one with a prompt), None for a plate job."""
    found = [v["inputs"] for v in job.values() if v["class_type"] == "TextEncodeQwenImageEditPlus" and v["inputs"]["prompt"]]
    return found[0] if found else None


def kind_of(job: dict[str, Any]) -> str:
    edit = encoder(job)
    if edit is None:
        return "plate"
    return "pose" if edit["prompt"].startswith("A full-body picture") else "composite"


def image_inputs(fake, job: dict[str, Any]) -> list[str]:
    """SHA-256 of the files uploaded for image1, image2, image3 (as far as given), through the scaling nodes."""
    uploads = {e["name"]: e["sha256"] for e in fake.record_events("upload")}
    found = []
    for name in ("image1", "image2", "image3"):
        link = encoder(job).get(name)
        if link is None:
            break
        node = job[link[0]]
        while node["class_type"] != "LoadImage":
            node = job[node["inputs"]["image"][0]]
        found.append(uploads[node["inputs"]["image"]])
    return found


def test_comfyui_layered_run_jobs_graphs_chaining_and_one_place_edited(tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.02) as fake:
        env = comfy_env(fake, PLATE_CHAIN_DENOISE="0.45")
        pipeline = town(tmp_path, env)
        before = len(fake.prompts())
        run(pipeline, "3.scene.py", env)
        jobs = fake.prompts()[before:]
        kinds = [kind_of(j) for j in jobs]
        assert len(jobs) == JOBS == 23 and kinds.count("plate") == 6 and kinds.count("pose") == 10
        layers = pipeline / "output" / "layers"
        plate_files = {sha(layers / "plates" / f"{k.replace('@', '.')}.png"): k for k in PLATES}

        for job in (j for j in jobs if kind_of(j) == "plate"):
            sampler = next(v["inputs"] for v in job.values() if v["class_type"] == "KSampler")
            text = next(v["inputs"]["text"] for v in job.values() if v["class_type"] == "CLIPTextEncode" and v["inputs"]["text"])
            assert "background plate" in text and "No people" in text
            start = job[sampler["latent_image"][0]]
            if start["class_type"] == "EmptySD3LatentImage":  # a first plate of its place: from nothing
                assert (start["inputs"]["width"], start["inputs"]["height"], sampler["denoise"]) == (256, 144, 1)
                continue
            # A chained plate: the place's previous plate, uploaded, encoded and denoised to PLATE_CHAIN_DENOISE.
            assert start["class_type"] == "VAEEncode" and sampler["denoise"] == 0.45
            loader = job[start["inputs"]["pixels"][0]]["inputs"]["image"]
            parent = plate_files[[e for e in fake.record_events("upload") if e["name"] == loader][-1]["sha256"]]
            assert any(f"Time of day: {k.split('@')[1]}." in text and v == parent for k, v in PLATES.items() if v)

        sheets = {t: sha(pipeline / "output" / "sheets" / f"{t}.png") for t in ("female_baker_mira", "male_miller_otto",
                                                                                 "male_boy_pip")}
        poses = [j for j in jobs if kind_of(j) == "pose"]
        assert all(image_inputs(fake, j)[0] in sheets.values() for j in poses)  # image 1 of every pose: a sheet
        mira_curious = next(j for j in poses if "Facial expression: Curious." in encoder(j)["prompt"])
        panel = pipeline / "output" / "sheets" / "panels"
        assert image_inputs(fake, mira_curious) == [sheets["female_baker_mira"], sha(next(panel.glob("female_baker_mira.*.curious.png")))]
        assert all(not [v for v in j.values() if v["class_type"] == "LoadImage" and not v["inputs"]["image"]] for j in jobs)

        # scene_3.1: three people, two passes; the second starts from the first's picture.
        composites = [j for j in jobs if kind_of(j) == "composite"]
        first = next(j for j in composites if "Selling bread" in encoder(j)["prompt"])
        second = next(j for j in composites if "Put Pip, the person of image 2" in encoder(j)["prompt"])
        folder = layers / "scene_3.1"
        assert image_inputs(fake, first) == [sha(folder / "plate.png"), sha(folder / "male_miller_otto.png"),
                                             sha(folder / "female_baker_mira.png")]
        assert image_inputs(fake, second) == [sha(folder / "composite.1.png"), sha(folder / "male_boy_pip.png")]
        assert "on the left" in encoder(first)["prompt"] and "on the right" in encoder(second)["prompt"]
        size = next(v["inputs"] for v in second.values() if v["class_type"] == "EmptySD3LatentImage")
        assert (size["width"], size["height"]) == (256, 144)
        # The fake's edit really combines its pictures: the top of the picture is the plate.
        top = (slice(0, 30), slice(0, 256))
        assert np.abs(pixels(folder / "composite.1.png")[top] - pixels(folder / "plate.png")[top]).mean() < 3

        # One place edited: its two plates and the two composites on them, no pose, nothing else.
        doc = library_doc(pipeline)
        doc["locations"]["loc_2"]["description"] = "a damp stone cellar with barrels"
        (pipeline / "input" / "assets.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
        count = len(fake.prompts())
        run(pipeline, "3.scene.py", env)
        redone = fake.prompts()[count:]
        assert sorted(kind_of(j) for j in redone) == ["composite", "composite", "plate", "plate"]
        assert all("a damp stone cellar with barrels" in json.dumps(j) for j in redone if kind_of(j) == "plate")


def test_a_killed_layered_run_loses_at_most_the_job_in_flight(tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.3) as fake:
        env = comfy_env(fake)
        pipeline = town(tmp_path, env)
        before = len(fake.prompts())
        proc = subprocess.Popen([sys.executable, "3.scene.py"], cwd=pipeline / "scripts", env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None and len(fake.prompts()) - before < 10:
                time.sleep(0.05)  # the six plates and a few poses are through
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        kept = state(pipeline, "3.scene")
        assert len([k for k in kept if k.startswith("plate:")]) == 6 and [k for k in kept if k.startswith("pose:")]
        run(pipeline, "3.scene.py", env)
        jobs = fake.prompts()[before:]
    assert len(jobs) <= JOBS + 1, f"{len(jobs) - JOBS} jobs made twice"
    assert [kind_of(j) for j in jobs].count("plate") == 6
    for scene, cast in CASTS.items():
        folder = pipeline / "output" / "layers" / scene
        assert {"plate.png", "composite.png", *(f"{t}.png" for t in cast)} <= {p.name for p in folder.iterdir()}
    assert not [k for k in state(pipeline, "3.scene") if "#" in k]


def test_a_failed_plate_fails_only_the_scenes_on_it(tmp_path: Path) -> None:
    pipeline = town(tmp_path)  # the sheets offline: only 3.scene.py's jobs go to the server
    with start_fake_comfyui(tmp_path, job_seconds=0.02, fail_mode="execution_error", fail_jobs=1) as fake:
        env = comfy_env(fake)
        out, err = run(pipeline, "3.scene.py", env, code=6)
        assert "1 of 6 plates failed, first plate:loc_1@dawn" in out + err
        entries = state(pipeline, "3.scene")
        on_the_mill = {s for s, plate in SCENE_PLATES.items() if plate.startswith("loc_1@")}
        assert {s for s in CASTS if entries[s]["status"] == "failed"} == on_the_mill
        assert all(entries[s]["status"] == "done" for s in set(CASTS) - on_the_mill)
        assert len(fake.prompts()) == JOBS - 2 - 4 - 3  # none for the mill's two chained plates, four poses, three composites
        run(pipeline, "3.scene.py", env)
        assert len(fake.prompts()) == JOBS + 1  # the failed plate once more, then the mill's scenes
    assert all(e["status"] == "done" for e in state(pipeline, "3.scene").values())


def test_check_names_the_layered_workflows_and_a_missing_qwen_model(tmp_path: Path) -> None:
    from common.config.settings import load_settings
    from common.run.steps import COMFYUI_WORKFLOWS

    workflows = COMFYUI_WORKFLOWS[("gen.image", "3.scene.py")]
    assert workflows(load_settings(None, {}, environ={})) == ["scene.json"]
    assert workflows(load_settings(None, {"KEYFRAME_MODE": "layered"}, environ={})) == [
        "plate.json", "pose.json", "composite.json"]
    pipeline = pipelines(tmp_path / "project", TOWN_STORY)
    with start_fake_comfyui(tmp_path, missing_model=["qwen_image_edit_2509_fp8_e4m3fn.safetensors"]) as fake:
        env = env_for(PIPELINE_ENGINE="comfyui", PIPELINE_TEXT_ENGINE="offline", COMFYUI_BASE_URL=fake.url,
                      KEYFRAME_MODE="layered")
        result = run_generate(pipeline, "--check", "--only", "3.scene", env=env, timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        screen = result.stdout
        assert "qwen_image_edit_2509_fp8_e4m3fn.safetensors" in screen and "ComfyUI/models/diffusion_models" in screen
        assert "gen.image/workflow/pose.json" in screen and "gen.image/workflow/composite.json" in screen
        assert "scene.json" not in screen and fake.jobs_run() == 0
