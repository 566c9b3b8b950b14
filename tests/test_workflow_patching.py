"""Workflow edits land in the right nodes of the seed system's own six workflows, found by class and links."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.services.comfyui.workflow import Workflow
from common.run.errors import InputError


def load(fixtures_dir: Path, rel: str) -> Workflow:
    return Workflow.load(fixtures_dir / rel)


def inputs(wf: Workflow, node_id: str) -> dict:
    return wf.to_prompt()[node_id]["inputs"]


def test_thumbnail_prompt_seed_size_and_zeroed_negative(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.audio/workflow/thumbnail.json")
    assert wf.set_prompt("a foggy lane at dusk") == 1
    assert inputs(wf, "33")["text"] == "a foggy lane at dusk"
    assert wf.negative_is_zeroed()
    assert wf.set_negative_prompt("blurry") == 0  # ConditioningZeroOut: Flux has no negative text
    assert wf.set_seed(42) == 1 and inputs(wf, "16")["seed"] == 42
    assert wf.set_size(1280, 720) == 1 and (inputs(wf, "19")["width"], inputs(wf, "19")["height"]) == (1280, 720)
    assert wf.set_steps(12) == 1 and inputs(wf, "16")["steps"] == 12
    assert wf.set_denoise(0.6) == 1 and inputs(wf, "16")["denoise"] == 0.6
    assert wf.output_node_ids() == ["21"]
    assert wf.set_filename_prefix("thumb/t") == 1 and inputs(wf, "21")["filename_prefix"] == "thumb/t"


def test_missing_load_image_names_the_workflow_and_the_need(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.image/workflow/scene.json")
    assert wf.set_input_image("x.png") == 0
    with pytest.raises(InputError) as err:
        wf.set_input_image("x.png", required_for="the IMAGE mode")
    assert str(err.value).startswith("workflow/scene.json has no LoadImage node, which the IMAGE mode needs")


def test_character_location_targets(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.image/workflow/character_location.json")
    assert wf.positive_prompt_ids() == ["33"]
    wf.set_prompt("portrait of a detective")
    wf.set_seed(7)
    wf.set_size(768, 1024)
    p = wf.to_prompt()
    assert p["33"]["inputs"]["text"] == "portrait of a detective"
    assert p["16"]["inputs"]["seed"] == 7
    assert (p["19"]["inputs"]["width"], p["19"]["inputs"]["height"]) == (768, 1024)
    # Nothing else moved.
    original = json.loads((fixtures_dir / "gen.image/workflow/character_location.json").read_text())
    changed = {k for k in p if p[k] != original[k]}
    assert changed == {"33", "16", "19"}


def test_scene_prompt_found_despite_the_link_filled_in_per_job(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.image/workflow/scene.json")
    # FluxGuidance 32 points at node 30, which the seed created per job (ReferenceLatent chain).
    assert wf.dangling_links() == [("32", "conditioning", "30")]
    assert wf.set_prompt("two detectives in a forest") == 1
    assert inputs(wf, "33")["text"] == "two detectives in a forest"
    wf.connect("32", "conditioning", "33", 0)
    assert wf.dangling_links() == []
    assert wf.positive_prompt_ids() == ["33"]  # now found by tracing KSampler -> FluxGuidance -> encoder


def test_sfx_positive_negative_seconds_seed(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.audio/workflow/sfx.json")
    assert wf.set_prompt("door creaks open") == 1
    assert wf.set_negative_prompt("music, speech") == 1
    assert wf.set_seconds(3.5) == 1
    assert wf.set_seed(11) == 1
    p = wf.to_prompt()
    assert p["6"]["inputs"]["text"] == "door creaks open"
    assert p["7"]["inputs"]["text"] == "music, speech"
    assert p["11"]["inputs"]["seconds"] == 3.5
    assert p["3"]["inputs"]["seed"] == 11


def test_animate_ltx_graph(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.video/workflow/animate.json")
    assert wf.positive_prompt_ids() == ["3"]  # SamplerCustom -> LTXVConditioning[0] -> LTXVAddGuide[0] -> 3
    assert wf.negative_prompt_ids() == ["4"]  # ... slot 1 all the way -> 4
    wf.set_prompt("the camera pushes in slowly")
    wf.set_negative_prompt("jitter")
    assert wf.set_input_image("scene_2.3.png") == 1
    assert wf.set_size(768, 432) == 1
    assert wf.set_length(49) == 1
    assert wf.set_fps(25) == 2  # LTXVConditioning and VHS_VideoCombine
    assert wf.set_seed(5) == 1
    assert wf.set_steps(8) == 1
    p = wf.to_prompt()
    assert p["3"]["inputs"]["text"] == "the camera pushes in slowly"
    assert p["4"]["inputs"]["text"] == "jitter"
    assert p["14"]["inputs"]["image"] == "scene_2.3.png"
    assert (p["16"]["inputs"]["width"], p["16"]["inputs"]["height"], p["16"]["inputs"]["length"]) == (768, 432, 49)
    assert p["6"]["inputs"]["frame_rate"] == 25 and p["1336"]["inputs"]["frame_rate"] == 25
    assert p["9"]["inputs"]["noise_seed"] == 5
    assert p["8"]["inputs"]["steps"] == 8
    assert wf.output_node_ids() == ["1336", "2000"]


def test_story_tts_workflow_has_no_prompt_encoder(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.audio/workflow/story.json")
    assert wf.set_prompt("hello") == 0
    assert wf.set_steps(10) == 0  # the TTS node's diffusion steps are not a sampler's
    assert wf.set_denoise(0.5) == 0  # its `denoise` is a boolean switch
    assert wf.set_seed(99) == 1 and inputs(wf, "70")["seed"] == 99
    assert wf.output_node_ids() == ["73"]
    with pytest.raises(InputError, match=r"workflow/story.json has no positive prompt"):
        wf.set_prompt("hello", required_for="image generation")


def test_add_loras_chains_between_loaders_and_their_users(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.audio/workflow/thumbnail.json")
    added = wf.add_loras([("ghibli_style.safetensors", 0.8, 0.7), ("detail_tweaker.safetensors", 0.5, 0.5)])
    assert len(added) == 2 and not set(added) & {"10", "11", "16", "19", "20", "21", "33", "34", "41", "42"}
    p = wf.to_prompt()
    first, second = added
    assert p[first]["inputs"]["model"] == ["41", 0] and p[first]["inputs"]["clip"] == ["10", 0]
    assert p[second]["inputs"]["model"] == [first, 0] and p[second]["inputs"]["clip"] == [first, 1]
    assert p["16"]["inputs"]["model"] == [second, 0]
    assert p["33"]["inputs"]["clip"] == [second, 1]
    assert p[first]["inputs"]["strength_model"] == 0.8 and p[first]["inputs"]["strength_clip"] == 0.7


def test_add_node_ids_are_fresh_and_to_prompt_is_a_copy(fixtures_dir: Path) -> None:
    wf = load(fixtures_dir, "gen.video/workflow/animate.json")
    new = wf.add_node("LoadImage", {"image": "end.png"}, title="End frame")
    assert new == "2001"
    snapshot = wf.to_prompt()
    snapshot["3"]["inputs"]["text"] = "changed"
    assert inputs(wf, "3")["text"] == "placeholder_positive_prompt"
    assert wf.set_input_image("last.png", which="end") == 1
    assert inputs(wf, "14")["image"] == "scene_1.1.png" and inputs(wf, new)["image"] == "last.png"


def test_user_workflow_titles_and_primitive_text(tmp_path: Path) -> None:
    # Encoders not wired to any sampler we know: titles decide; text held by a primitive node.
    graph = {
        "1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "old"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": ["1", 0], "clip": ["9", 0]}, "_meta": {"title": "Positive"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["9", 0]}, "_meta": {"title": "Negative"}},
        "9": {"class_type": "CLIPLoader", "inputs": {"clip_name": "x.safetensors", "type": "sd3"}},
    }
    path = tmp_path / "workflow" / "mine.json"
    path.parent.mkdir()
    path.write_text(json.dumps(graph))
    wf = Workflow.load(path)
    assert wf.set_prompt("new text") == 1
    assert wf.set_negative_prompt("bad") == 1
    p = wf.to_prompt()
    assert p["1"]["inputs"]["value"] == "new text" and p["2"]["inputs"]["text"] == ["1", 0]
    assert p["3"]["inputs"]["text"] == "bad"


def test_ui_format_bad_json_and_empty_are_refused(tmp_path: Path) -> None:
    ui = tmp_path / "workflow" / "ui.json"
    ui.parent.mkdir()
    ui.write_text(json.dumps({"last_node_id": 3, "nodes": [{"id": 1, "type": "KSampler"}], "links": [], "version": 0.4}))
    with pytest.raises(InputError) as err:
        Workflow.load(ui)
    assert "workflow/ui.json is a ComfyUI UI-format workflow" in str(err.value)
    assert "Export (API)" in str(err.value)

    bad = tmp_path / "workflow" / "bad.json"
    bad.write_text('{"1": {"class_type": "SaveImage",}')
    with pytest.raises(InputError, match=r"workflow/bad.json is not valid JSON \(line 1"):
        Workflow.load(bad)

    empty = tmp_path / "workflow" / "empty.json"
    empty.write_text("{}")
    with pytest.raises(InputError, match="workflow/empty.json has no nodes"):
        Workflow.load(empty)

    with pytest.raises(InputError, match="does not exist"):
        Workflow.load(tmp_path / "workflow" / "nope.json")
