"""gen.image's picture steps against the fake ComfyUI: what the server received, job by job.

Each script runs as a real subprocess from its scripts/ folder; assertions read the graphs the
fake accepted (prompt text, size, seed, LoRA nodes, start and reference pictures) and the
files it was sent (by SHA-256), so nothing here trusts our own bookkeeping.
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

import pytest
from PIL import Image

from common.engines.choice import EngineChoice
from common.engines.base import ImageRequest
from common.engines.registry import get_engine
from common.config.settings import load_settings
from tests.fakes import start_fake_comfyui
from tests.support.image_inputs import CHARACTERS, LOCATIONS, SMALL, image_pipeline, picture, run_inline
from tests.support.project import env_for, run_script

REPO = Path(__file__).resolve().parent.parent
TWO_LORAS = [
    {"name": "ghibli_style.safetensors", "strength_model": 2.0, "strength_clip": 1.5, "steps": 9,
     "denoising_strength": 1, "enabled": True, "save_intermediate": True},
    {"name": "detail_tweaker.safetensors", "strength_model": 0.7, "strength_clip": 0.5, "steps": 4,
     "denoising_strength": 0.3, "enabled": True, "save_intermediate": False},
]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fake(tmp_path: Path):
    with start_fake_comfyui(tmp_path, job_seconds=0.02) as server:
        yield server


def comfy_env(fake, **settings: Any) -> dict[str, str]:
    values = {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in {**SMALL, **settings}.items()}
    # One job at a time: these tests read the jobs in the order the pictures are listed.
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=fake.url, COMFYUI_QUEUE_DEPTH="1", **values)


def run(pipeline: Path, script: str, env: dict[str, str], *args: str, code: int = 0, inline: bool = True) -> str:
    """Run a script (in this process unless `inline` is false) and return its stderr."""
    if inline:
        returncode, out, err = run_inline(pipeline, script, env, *args)
    else:
        done = run_script(pipeline, script, *args, env=env, timeout=90)
        returncode, out, err = done.returncode, done.stdout, done.stderr
    assert returncode == code, out[-2000:] + err[-3000:]
    return err


def nodes(prompt: dict[str, Any], cls: str) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in prompt.items() if v["class_type"] == cls]


def node(prompt: dict[str, Any], cls: str) -> dict[str, Any]:
    found = nodes(prompt, cls)
    assert len(found) == 1, f"{len(found)} {cls} nodes"
    return found[0][1]["inputs"]


def text_of(prompt: dict[str, Any]) -> str:
    return "\n".join(v["inputs"]["text"] for _, v in nodes(prompt, "CLIPTextEncode"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def uploaded(fake, name: str) -> str:
    """SHA-256 of the file the fake stored under `name` (the last upload with that name)."""
    return [e for e in fake.record_events("upload") if e["name"] == name][-1]["sha256"]


def state(pipeline: Path, script: str) -> dict[str, Any]:
    return json.loads((pipeline / "output" / "tracking" / f"{script}.state.json").read_text())["items"]


def test_serial_loras_make_two_jobs_per_picture_the_second_from_the_first(fake, tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    run(pipeline, "2.character.py", comfy_env(fake, USE_LORA="true", LORA_MODE="serial", LORAS=TWO_LORAS, FIXED_SEED=4242),
        inline=False)
    prompts = fake.prompts()
    assert len(prompts) == 2 * len(CHARACTERS)
    for tag in CHARACTERS:
        # Pictures are made in parallel (the server's queue is kept full): each one's two passes in order.
        first, second = [job for job in prompts if CHARACTERS[tag] in text_of(job)]
        for job in (first, second):
            assert CHARACTERS[tag] in text_of(job) and "Ghibli Art" in text_of(job)
            assert node(job, "KSampler")["seed"] == 4242
        lora = node(first, "LoraLoader")
        assert (lora["lora_name"], lora["strength_model"], lora["strength_clip"]) == ("ghibli_style.safetensors", 2.0, 1.5)
        size = node(first, "EmptySD3LatentImage")
        assert (size["width"], size["height"]) == (96, 144) and node(first, "KSampler")["steps"] == 9
        assert not nodes(first, "LoadImage")
        # Pass 2: the detail LoRA refines pass 1's picture, uploaded and encoded into the sampler's latent.
        assert node(second, "LoraLoader")["lora_name"] == "detail_tweaker.safetensors"
        sampler = node(second, "KSampler")
        assert (sampler["steps"], sampler["denoise"]) == (4, 0.3) and not nodes(second, "EmptySD3LatentImage")
        encode_id = sampler["latent_image"][0]
        assert second[encode_id]["class_type"] == "VAEEncode"
        loader = second[second[encode_id]["inputs"]["pixels"][0]]
        assert loader["class_type"] == "LoadImage"
        kept = pipeline / "output" / "lora" / f"{tag}.1.ghibli_style.png"  # save_intermediate: true
        assert uploaded(fake, loader["inputs"]["image"]) == sha(kept)
        with Image.open(pipeline / "output" / "characters" / f"{tag}.png") as img:
            assert img.size == (96, 144)
    assert sorted(p.name for p in (pipeline / "output" / "lora").iterdir()) == sorted(
        f"{tag}.1.ghibli_style.png" for tag in CHARACTERS)  # pass 2 kept nothing: save_intermediate false
    entry = state(pipeline, "2.character")["male_doctor_watson"]
    assert [p["input"] for p in entry["data"]["passes"]] == ["empty latent", "pass 1"]
    assert entry["files"] == ["output/characters/male_doctor_watson.png", "output/characters/clean/male_doctor_watson.png"]
    assert not [k for k in state(pipeline, "2.character") if "#" in k]  # pass checkpoints are dropped once done
    assert "male_doctor_watson" in (pipeline / "output" / "review.html").read_text(encoding="utf-8")


def test_chained_loras_in_one_job_starting_from_the_latent_picture(fake, tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    start = picture(pipeline / "input" / "2.latent.location.large.png", (300, 200), "navy")
    run(pipeline, "2.location.py", comfy_env(fake, USE_LORA="true", LORA_MODE="chained", LORAS=TWO_LORAS,
                                             LATENT_MODE="IMAGE", LATENT_DENOISING_STRENGTH=0.65, SAMPLING_STEPS=12))
    prompts = fake.prompts()
    assert len(prompts) == len(LOCATIONS)
    job = prompts[0]
    assert LOCATIONS["loc_1"] in text_of(job)
    loras = dict(nodes(job, "LoraLoader"))
    (first_id, first), (second_id, second) = sorted(loras.items(), key=lambda kv: int(kv[0]))
    assert first["inputs"]["lora_name"] == "ghibli_style.safetensors" and second["inputs"]["model"] == [first_id, 0]
    sampler = node(job, "KSampler")
    assert sampler["model"] == [second_id, 0] and (sampler["denoise"], sampler["steps"]) == (0.65, 12)
    assert not nodes(job, "EmptySD3LatentImage")
    encode = job[sampler["latent_image"][0]]
    load = job[encode["inputs"]["pixels"][0]]["inputs"]["image"]
    prepared = pipeline / "output" / "references" / "loc_1.start.png"
    assert uploaded(fake, load) == sha(prepared)
    with Image.open(prepared) as img:
        assert img.size == (192, 112)  # the start picture, fitted to the job's size
    assert start.is_file()


def test_scene_references_are_stitched_uploaded_and_wired_to_the_guidance(fake, tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    env = comfy_env(fake, ACTIVE_CHARACTER_MODE="IMAGE", ACTIVE_LOCATION_MODE="IMAGE", IMAGE_STITCH_COUNT=3,
                    CHARACTER_RESIZE_FACTOR=0.5, FIXED_SEED=77)
    run(pipeline, "2.character.py", env)
    run(pipeline, "2.location.py", env)
    before = len(fake.prompts())
    run(pipeline, "3.scene.py", env)
    scenes = fake.prompts()[before:]
    assert len(scenes) == 3
    job = scenes[1]  # scene_1.2: mother, Watson, loc_2 in one reference picture
    stitched = pipeline / "output" / "references" / "scene_1.2.1.png"
    with Image.open(stitched) as img:
        assert img.size == (48 + 48 + 192, 112)
    loads = nodes(job, "LoadImage")
    assert len(loads) == 1 and uploaded(fake, loads[0][1]["inputs"]["image"]) == sha(stitched)
    load_id = loads[0][0]
    scale_id, scale = nodes(job, "FluxKontextImageScale")[0]
    assert scale["inputs"]["image"] == [load_id, 0]
    encode_id = next(k for k, v in nodes(job, "VAEEncode") if v["inputs"]["pixels"] == [scale_id, 0])
    ref_id, ref = nodes(job, "ReferenceLatent")[0]
    assert ref["inputs"]["latent"] == [encode_id, 0] and ref["inputs"]["conditioning"] == ["33", 0]
    assert node(job, "FluxGuidance")["conditioning"] == [ref_id, 0]  # the template's dangling link 30, filled
    assert node(job, "ConditioningZeroOut")["conditioning"] == ["33", 0]
    prompt = text_of(job)
    assert "Mother (the person in reference image 1, on the left)" in prompt
    assert "the place shown in reference image 1, on the right" in prompt
    assert node(job, "KSampler")["seed"] == 77
    with Image.open(pipeline / "output" / "scene" / "scene_1.2.png") as img:
        assert img.size == (192, 112)
    review = (pipeline / "output" / "review.html").read_text(encoding="utf-8")
    assert "references/scene_1.2.1.png" in review and review.count("<figure") == 2 + 2 + 3


def test_reference_latents_on_a_template_without_guidance(fake, tmp_path: Path) -> None:
    settings = load_settings(None, {"COMFYUI_BASE_URL": fake.url}, environ={})
    engine = get_engine("image", settings, REPO / "gen.image", EngineChoice("comfyui", "llm", "test"))
    ref = picture(tmp_path / "ref.png", (64, 96), "green")
    engine.image(ImageRequest("character", "a", "a knight", 64, 64, seed=5, reference_images=(ref,)), tmp_path / "a.png")
    job = fake.prompts()[-1]
    ref_id, _ = nodes(job, "ReferenceLatent")[0]
    assert node(job, "KSampler")["positive"] == [ref_id, 0]
    assert node(job, "ConditioningZeroOut")["conditioning"] == ["33", 0]


def _job_key(prompt: dict[str, Any]) -> str:
    """Which location variation a job was for: its description's code word and its seed."""
    text = text_of(prompt)
    loc = next(k for k, v in LOCATIONS.items() if v in text)
    variation = node(prompt, "KSampler")["seed"] - 1000 + 1
    return loc if variation == 1 else f"{loc}.v{variation}"


def test_a_killed_run_resumes_without_redoing_a_finished_picture(tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    with start_fake_comfyui(tmp_path, job_seconds=0.3) as fake:
        env = comfy_env(fake, VARIATIONS_PER_LOCATION=3, FIXED_SEED=1000)
        proc = subprocess.Popen([sys.executable, "2.location.py"], cwd=pipeline / "scripts", env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while fake.jobs_run() < 2 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        finished = set(state(pipeline, "2.location"))
        assert 1 <= len(finished) < 6
        sent_before = len(fake.prompts())
        run(pipeline, "2.location.py", env)
        keys = [_job_key(p) for p in fake.prompts()]
    assert len(set(keys)) == 6 and set(state(pipeline, "2.location")) == set(keys)
    for key in finished:
        assert keys.count(key) == 1, f"{key} was finished before the kill but made again"
    assert len(keys) <= 6 + (sent_before - len(finished))  # at most the jobs in flight at the kill, again


def test_force_start_and_retake_redo_only_what_they_name(fake, tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    env = comfy_env(fake, FIXED_SEED=500)
    for script in ("2.character.py", "2.location.py", "3.scene.py"):
        run(pipeline, script, env)
    assert len(fake.prompts()) == 2 + 2 + 3

    run(pipeline, "2.location.py", env, "--force-start")
    assert len(fake.prompts()) == 9
    run(pipeline, "2.character.py", env)
    run(pipeline, "3.scene.py", env)
    assert len(fake.prompts()) == 9  # a rerun makes nothing; --force-start redid its own script only

    (pipeline / "retake.txt").write_text("# after review\nmale_doctor_watson\nscene_1.2\n", encoding="utf-8")
    run(pipeline, "2.character.py", env, "--retake")
    run(pipeline, "3.scene.py", env, "--retake")
    redone = fake.prompts()[9:]
    assert len(redone) == 2
    assert CHARACTERS["male_doctor_watson"] in text_of(redone[0]) and node(redone[0], "KSampler")["seed"] == 500 + 7919
    assert "pleading FOXTROT" in text_of(redone[1])
    assert state(pipeline, "2.character")["male_doctor_watson"]["data"]["take"] == 1
    run(pipeline, "2.character.py", env)
    assert len(fake.prompts()) == 11  # the retaken picture is kept on the next ordinary run

    (pipeline / "retake.txt").write_text("loc_7\n", encoding="utf-8")
    assert "line 1 names loc_7" in run(pipeline, "2.location.py", env, "--retake", code=3)
