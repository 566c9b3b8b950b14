"""What a ComfyUI server lacks for a workflow (checks.find_problems), read from a real ComfyUI 0.8.0's
/object_info (tests/fixtures excerpt) and from the fake, a real process answering the same shapes."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from common.services.comfyui.checks import combo_options, find_problems, parse_version
from common.services.comfyui.client import ComfyClient
from common.services.comfyui.errors import model_folder
from common.services.comfyui.workflow import Workflow
from tests.fakes import FakeServer, start_fake_comfyui

pytestmark = pytest.mark.timeout(60)

REAL: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "comfyui-0.8.0-object_info.excerpt.json").read_text(encoding="utf-8"))
COMBO_FORM = ("UpscaleModelLoader", "TripleCLIPLoader", "QuadrupleCLIPLoader", "AudioEncoderLoader", "HypernetworkLoader")


def real_info(**models: list[str]) -> dict[str, Any]:
    """The real answer, its loaders listing `models` (folder -> files) as a server that has them would."""
    info = copy.deepcopy(REAL)
    for cls, entry in info.items():
        for section in ("required", "optional"):
            for name, decl in (entry["input"].get(section) or {}).items():
                folder = model_folder(cls, name)
                if folder in models:
                    if decl[0] == "COMBO":
                        decl[1]["options"] = list(models[folder])
                    else:
                        decl[0] = list(models[folder])
    return info


def image_graph(loader: str = "CheckpointLoaderSimple", ckpt: str = "base.safetensors") -> dict[str, Any]:
    return {
        "1": {"class_type": loader, "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red door", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0], "denoise": 1.0}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "door"}},
    }


def texts(problems: list[Any]) -> list[str]:
    return [str(p) for p in problems]


def test_both_combo_forms_are_read() -> None:
    classic = REAL["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    newer = REAL["UpscaleModelLoader"]["input"]["required"]["model_name"]
    assert isinstance(classic[0], list) and newer[0] == "COMBO"  # the real server answers both ways
    assert combo_options(classic) == [] and combo_options(newer) == []
    assert combo_options([["a", "b"], {"tooltip": "x"}]) == ["a", "b"]
    assert combo_options(["COMBO", {"multiselect": False, "options": ["a", "b"]}]) == ["a", "b"]
    assert combo_options(["INT", {"default": 1}]) is None and combo_options(["IMAGE"]) is None


def test_model_file_in_a_classic_combo() -> None:
    assert find_problems(image_graph(), real_info(checkpoints=["base.safetensors"])) == []
    problems = texts(find_problems(image_graph(), real_info(checkpoints=["other.safetensors"])))
    assert len(problems) == 1
    assert "base.safetensors" in problems[0] and "node 1 (CheckpointLoaderSimple)" in problems[0]
    assert "ComfyUI/models/checkpoints" in problems[0]


@pytest.mark.parametrize("cls", COMBO_FORM)
def test_model_file_in_a_combo_of_the_newer_form(cls: str) -> None:
    graph = image_graph()
    names = [n for n, decl in REAL[cls]["input"]["required"].items() if decl[0] == "COMBO"]
    graph["7"] = {"class_type": cls, "inputs": {name: f"{name}.safetensors" for name in names}}
    graph["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "x"}}  # makes it run
    folder = model_folder(cls, names[0])
    assert folder
    have = real_info(checkpoints=["base.safetensors"], **{folder: [f"{name}.safetensors" for name in names]})
    assert find_problems(graph, have) == []
    lacking = real_info(checkpoints=["base.safetensors"], **{folder: [f"{names[0]}.safetensors"]})
    problems = texts(find_problems(graph, lacking))
    assert len(problems) == len(names) - 1  # each input is read from its own list
    assert all(f"ComfyUI/models/{folder}" in p and f"({cls})" in p for p in problems)
    problems = texts(find_problems(graph, real_info(checkpoints=["base.safetensors"])))  # the server has none
    assert len(problems) == len(names)
    assert all(any(f"model file {name}.safetensors " in p for p in problems) for name in names)


def test_missing_loader_class_is_reported_with_its_model_files() -> None:
    # A node pack's checkpoint loader reads ComfyUI/models/checkpoints, which the core loader lists.
    graph = image_graph("CheckpointLoaderNF4", "flux-nf4.safetensors")
    problems = find_problems(graph, real_info(checkpoints=["base.safetensors"]))
    assert len(problems) == 2
    assert "no node type CheckpointLoaderNF4 (node 1)" in problems[0].what and "custom_nodes" in problems[0].fix
    assert "flux-nf4.safetensors" in problems[1].what and "ComfyUI/models/checkpoints" in problems[1].fix
    # Once the file is there, only the pack is missing.
    problems = find_problems(graph, real_info(checkpoints=["flux-nf4.safetensors"]))
    assert [p.node_id for p in problems] == ["1"] and "flux-nf4" not in str(problems[0])


def test_model_file_no_core_loader_lists_is_named_as_not_checkable() -> None:
    graph = image_graph()
    graph["1b"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "flux1-dev-Q8_0.gguf"}}
    graph["4"]["inputs"]["model"] = ["1b", 0]
    problems = find_problems(graph, real_info(checkpoints=["base.safetensors"]))
    assert len(problems) == 1  # ComfyUI lists no .gguf file until ComfyUI-GGUF is installed
    what = str(problems[0])
    assert "no node type UnetLoaderGGUF (node 1b)" in what and "flux1-dev-Q8_0.gguf" in what
    assert "cannot be checked until its node pack is installed" in what and "ComfyUI/models/unet" in what


def test_nodes_that_feed_no_output_are_not_checked() -> None:
    graph = image_graph()
    graph["20"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "unused.safetensors"}}
    graph["21"] = {"class_type": "VAELoader", "inputs": {"vae_name": "unused_vae.safetensors"}}
    graph["22"] = {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["21", 0]}}  # goes nowhere
    assert find_problems(graph, real_info(checkpoints=["base.safetensors"])) == []
    # ComfyUI refuses any prompt naming a class it lacks, connected or not: that is still said, its files are not.
    graph["30"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "stray.gguf"}}
    problems = find_problems(graph, real_info(checkpoints=["base.safetensors"]))
    assert len(problems) == 1 and problems[0].node_id == "30"
    assert "feeds no output node" in problems[0].what and "delete node 30" in problems[0].fix
    assert "stray.gguf" not in str(problems[0])


def test_an_output_class_the_server_lacks_still_ends_a_chain() -> None:
    graph = image_graph(ckpt="gone.safetensors")
    graph["6"] = {"class_type": "VHS_VideoCombine", "inputs": {"images": ["5", 0], "frame_rate": 24}}
    problems = texts(find_problems(graph, real_info()))
    assert len(problems) == 2
    assert any("gone.safetensors" in p for p in problems) and any("VHS_VideoCombine" in p for p in problems)


def test_a_graph_without_output_is_refused() -> None:
    graph = image_graph()
    del graph["6"]
    problems = texts(find_problems(graph, real_info(checkpoints=["base.safetensors"])))
    assert len(problems) == 1 and "no output node" in problems[0]


def test_versions_compare_as_numbers() -> None:
    assert parse_version("0.8.0") < parse_version("0.8.1") < parse_version("0.10.0")  # type: ignore[operator]
    assert parse_version("v0.8.1-dev") == (0, 8, 1) and parse_version("1.2") == (1, 2, 0)
    assert parse_version(None) is None and parse_version("unknown") is None


# ------------------------------------------------------------------ the fake, a real process

@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    with start_fake_comfyui(tmp_path_factory.mktemp("comfy"), job_seconds=0.05) as server:
        yield server


def test_fake_answers_both_combo_forms_as_the_real_server(fake: FakeServer) -> None:
    for cls in COMBO_FORM + ("CheckpointLoaderSimple", "UNETLoader"):
        entry = requests.get(f"{fake.url}/object_info/{cls}", timeout=10).json()[cls]
        for name, decl in entry["input"]["required"].items():
            real = REAL[cls]["input"]["required"][name]
            assert (decl[0] == "COMBO") == (real[0] == "COMBO"), (cls, name)
        if cls in COMBO_FORM:  # these answer exactly as the real one, once the server's own files are left out
            for decl in entry["input"]["required"].values():
                if decl[0] == "COMBO":
                    decl[1]["options"] = []
            assert entry == REAL[cls], cls
    listed = requests.get(f"{fake.url}/object_info/TripleCLIPLoader", timeout=10).json()
    options = listed["TripleCLIPLoader"]["input"]["required"]["clip_name1"][1]["options"]
    assert options and options == requests.get(f"{fake.url}/models/text_encoders", timeout=10).json()


def test_client_reads_both_combo_forms_from_the_server(fake: FakeServer, fixtures_dir: Path) -> None:
    prompt = Workflow.load(fixtures_dir / "gen.audio/workflow/sfx.json").to_prompt()
    prompt["10"] = {"class_type": "TripleCLIPLoader", "inputs": {
        "clip_name1": "t5-base.safetensors", "clip_name2": "clip_l.safetensors", "clip_name3": "clip_g_missing.safetensors"}}
    prompt["4"]["inputs"]["ckpt_name"] = "audio_missing.safetensors"
    problems = texts(ComfyClient(fake.url).find_problems(prompt))
    assert len(problems) == 2
    assert any("clip_g_missing.safetensors" in p and "ComfyUI/models/text_encoders" in p for p in problems)
    assert any("audio_missing.safetensors" in p and "ComfyUI/models/checkpoints" in p for p in problems)


def test_an_unconnected_loader_of_a_missing_file_is_no_problem_and_the_job_runs(
        fake: FakeServer, fixtures_dir: Path, tmp_path: Path) -> None:
    wf = Workflow.load(fixtures_dir / "gen.image/workflow/character_location.json")
    wf.set_prompt("a blue door")
    wf.set_size(96, 64)
    prompt = wf.to_prompt()
    prompt["500"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "absent.safetensors"}}
    client = ComfyClient(fake.url)
    assert client.find_problems(prompt) == []
    assert client.run(prompt, tmp_path, timeout=30)  # validated like ComfyUI: only what feeds an output
