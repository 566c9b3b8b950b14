"""Character sheets (issue 15 point 2): 2.character.py draws one per character of input/assets.json,
offline for real and through the fake ComfyUI (jobs counted), an edit of one character redoes that
sheet alone and the scenes that use it, 3.scene.py is conditioned on the sheets, and a SIGKILL
mid-sheet loses at most the panel in flight."""
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

from common.formats.assets import read_assets
from tests.fakes import start_fake_comfyui
from tests.support.asset_inputs import MILL_STORY, OFFLINE, SMALL, library_doc, pipelines, run, state
from tests.support.project import env_for

pytestmark = pytest.mark.timeout(180)


def panel_counts(pipeline: Path) -> dict[str, int]:
    """Panels each character's sheet has: front, three-quarter and up to four expressions."""
    library = read_assets(pipeline / "input" / "assets.json")
    return {tag: 2 + min(4, len(c.expressions)) for tag, c in library.characters.items()}


def edit_character(pipeline: Path, tag: str, description: str) -> None:
    doc = library_doc(pipeline)
    doc["characters"][tag]["description"] = description
    (pipeline / "input" / "assets.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- offline

def test_offline_sheets_and_one_edit_redoes_that_sheet_and_its_scenes(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    env = {**OFFLINE, "ACTIVE_CHARACTER_MODE": "IMAGE"}
    run(pipeline, "1.story.py", env)
    out, _ = run(pipeline, "2.character.py", env)
    assert "[sheets] 4 items: 4 made" in out
    panels = panel_counts(pipeline)
    assert panels == {"female_baker_mira": 6, "male_miller_otto": 4, "male_boy_pip": 3, "male_stranger_vell": 2}
    for tag, count in panels.items():
        with Image.open(pipeline / "output" / "sheets" / f"{tag}.png") as img:
            rows = -(-count // 3)
            assert img.size == (96 * min(3, count), rows * (144 + 18))
        files = sorted(p.name for p in (pipeline / "output" / "sheets" / "panels").glob(f"{tag}.*.png"))
        assert len(files) == count and f"{tag}.1.front.png" in files and f"{tag}.2.three-quarter.png" in files
    assert "female_baker_mira.3.sleepy.png" in os.listdir(pipeline / "output" / "sheets" / "panels")
    sheets = {k: e for k, e in state(pipeline, "2.character").items() if k.startswith("sheet:")}
    assert set(sheets) == {f"sheet:{t}" for t in panels}  # panel checkpoints are gone once their sheet is done
    assert all(e["preview"] and e["data"]["kind"] == "sheet" for e in sheets.values())
    assert sheets["sheet:female_baker_mira"]["data"]["references"] == ["output/characters/clean/female_baker_mira.png"]
    assert "Character sheets (4)" in (pipeline / "output" / "review.html").read_text(encoding="utf-8")

    run(pipeline, "3.scene.py", env)
    scene = state(pipeline, "3.scene")["scene_2.1"]["data"]
    assert scene["reference_items"] == [[["sheet", "male_miller_otto"]], [["sheet", "female_baker_mira"]]]
    assert "the person of the character sheet in reference image 1" in scene["prompt"]

    edit_character(pipeline, "male_miller_otto", "a tall miller, white apron, red scarf")
    run(pipeline, "1.story.py", env)
    before = {k: e["finished_at"] + e["fingerprint"] for k, e in state(pipeline, "2.character").items()}
    out, _ = run(pipeline, "2.character.py", env)
    assert "[characters] 3 items: 0 made, 3 already done" in out  # Vell is never pictured: a sheet, no picture
    assert "[sheets] 4 items: 1 made, 3 already done" in out
    after = {k: e["finished_at"] + e["fingerprint"] for k, e in state(pipeline, "2.character").items()}
    assert [k for k in after if after[k] != before.get(k)] == ["sheet:male_miller_otto"]
    out, _ = run(pipeline, "3.scene.py", env)
    assert "7 items: 2 made, 5 already done" in out  # Otto is in scene_2.1 and scene_3.1 only


def test_without_a_library_or_with_sheets_off_nothing_changes(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    run(pipeline, "1.story.py")
    out, _ = run(pipeline, "2.character.py", {**OFFLINE, "CHARACTER_SHEETS": "false"})
    assert "character sheets: none, CHARACTER_SHEETS is off" in out
    run(pipeline, "3.scene.py", {**OFFLINE, "ACTIVE_CHARACTER_MODE": "IMAGE", "CHARACTER_SHEETS": "false"})
    assert state(pipeline, "3.scene")["scene_1.1"]["data"]["reference_items"] == [[["character", "female_baker_mira"]]]
    run(pipeline, "2.character.py")
    (pipeline / "input" / "assets.json").unlink()
    out, _ = run(pipeline, "2.character.py")
    assert "removed the old sheets of" in out and not list((pipeline / "output" / "sheets").glob("*.png"))


# ---------------------------------------------------------------- ComfyUI (fake)

def comfy_env(fake, **settings: Any) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", PIPELINE_TEXT_ENGINE="offline", COMFYUI_BASE_URL=fake.url,
                   COMFYUI_QUEUE_DEPTH="1", **SMALL, **settings)


def text_of(prompt: dict[str, Any]) -> str:
    return "\n".join(v["inputs"]["text"] for v in prompt.values() if v["class_type"] == "CLIPTextEncode")


def panel_of(prompt: dict[str, Any]) -> tuple[str, str] | None:
    """(character name, panel label) of a sheet panel job, None for any other job."""
    text = text_of(prompt)
    if "One panel of a character sheet" not in text:
        return None
    name = text.split("Character: ", 1)[1].split(".", 1)[0]
    if "Facial expression: " in text:
        return name, text.split("Facial expression: ", 1)[1].split(".", 1)[0]
    return name, "three-quarter" if "three-quarters" in text else "front"


def test_comfyui_one_job_per_panel_following_the_picture_and_an_edit_redoes_one_sheet(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    run(pipeline, "1.story.py")
    panels = panel_counts(pipeline)
    with start_fake_comfyui(tmp_path, job_seconds=0.02) as fake:
        env = comfy_env(fake)
        run(pipeline, "2.character.py", env)
        jobs = [(panel_of(p), p) for p in fake.prompts()]
        sheet_jobs = [(who, p) for who, p in jobs if who is not None]
        assert len(jobs) - len(sheet_jobs) == 3  # the three pictured characters' own pictures
        assert len(sheet_jobs) == sum(panels.values()) == 15
        assert len({who for who, _ in sheet_jobs}) == 15  # each panel once
        uploads = {e["name"]: e["sha256"] for e in fake.record_events("upload")}
        mira_picture = sha(pipeline / "output" / "characters" / "clean" / "female_baker_mira.png")
        for (name, _), prompt in sheet_jobs:
            loads = [v["inputs"]["image"] for v in prompt.values() if v["class_type"] == "LoadImage"]
            if name == "Baker Mira":  # the panel follows her picture, as a reference latent
                assert [uploads[n] for n in loads] == [mira_picture]
                assert any(v["class_type"] == "ReferenceLatent" for v in prompt.values())
            elif name == "Stranger Vell":  # never pictured: no picture to follow
                assert loads == []
        assert {label for (name, label), _ in sheet_jobs if name == "Baker Mira"} == {
            "front", "three-quarter", "sleepy", "annoyed", "curious", "afraid"}

        edit_character(pipeline, "male_miller_otto", "a tall miller, white apron, red scarf")
        run(pipeline, "1.story.py")
        count = len(fake.prompts())
        run(pipeline, "2.character.py", env)
        redone = fake.prompts()[count:]
        assert len(redone) == panels["male_miller_otto"] == 4
        assert all("a tall miller, white apron, red scarf" in text_of(p) for p in redone)

        run(pipeline, "3.scene.py", {**env, "ACTIVE_CHARACTER_MODE": "IMAGE"})
        scene = fake.prompts()[count + 4:][2]  # scene_2.1: Otto's and Mira's sheets, one reference image each
        loads = [v["inputs"]["image"] for v in scene.values() if v["class_type"] == "LoadImage"]
        stitched = [pipeline / "output" / "references" / f"scene_2.1.{n}.png" for n in (1, 2)]
        uploads = {e["name"]: e["sha256"] for e in fake.record_events("upload")}
        assert [uploads[n] for n in loads] == [sha(p) for p in stitched]
        with Image.open(stitched[0]) as img, Image.open(pipeline / "output" / "sheets" / "male_miller_otto.png") as sheet:
            assert img.size == sheet.size  # the sheet itself is the reference


def test_a_killed_sheet_run_loses_at_most_the_panel_in_flight(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    run(pipeline, "1.story.py")
    total = sum(panel_counts(pipeline).values())
    with start_fake_comfyui(tmp_path, job_seconds=0.3) as fake:
        env = comfy_env(fake)
        proc = subprocess.Popen([sys.executable, "2.character.py"], cwd=pipeline / "scripts", env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 90
            # Kill once a few panels are checkpointed and the first sheet is not all there is.
            while time.monotonic() < deadline and proc.poll() is None:
                done = [p for p in fake.prompts() if panel_of(p) is not None]
                if len(done) >= 5:
                    break
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        kept = [k for k in state(pipeline, "2.character") if k.startswith("sheet:")]
        assert kept and len(kept) < total  # panels (and maybe a sheet) were checkpointed before the kill
        sent_before = len([p for p in fake.prompts() if panel_of(p) is not None])
        run(pipeline, "2.character.py", env)
        sent = [panel_of(p) for p in fake.prompts() if panel_of(p) is not None]
    assert len(set(sent)) == total  # every panel made
    assert len(sent) <= total + 1, f"{len(sent) - total} panels made twice"  # the one in flight at the kill
    assert sent_before < total
    assert not [k for k in state(pipeline, "2.character") if "#" in k]
    assert len(list((pipeline / "output" / "sheets").glob("*.png"))) == 4


def test_preflight_checks_the_sheet_workflow_only_when_sheets_are_drawn() -> None:
    from common.config.settings import load_settings
    from common.run.steps import COMFYUI_WORKFLOWS

    workflows = COMFYUI_WORKFLOWS[("gen.image", "2.character.py")]
    assert workflows(load_settings(None, {}, environ={})) == ["character_location.json", "scene.json"]
    assert workflows(load_settings(None, {"CHARACTER_SHEETS": False}, environ={})) == ["character_location.json"]
