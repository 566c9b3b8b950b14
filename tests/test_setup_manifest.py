"""The shipped setup manifest covers every shipped workflow, agrees with ComfyUI/README.md, and picks
quantisations by GPU memory as documented."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.config.paths import REPO_ROOT
from common.run.errors import ConfigError
from common.services.comfyui.errors import model_folder
from common.services.comfyui.workflow import Workflow
from common.setup.gpu import Gpu, choose_variant
from common.setup.manifest import FOLDER_ALIASES, load_manifest, model_inputs, needs_for

# The node classes of a real ComfyUI 0.8.0 without custom nodes (its whole /object_info, names only).
CORE = set((Path(__file__).parent / "fixtures" / "comfyui-0.8.0-node-classes.txt").read_text().splitlines())
WORKFLOWS = sorted(REPO_ROOT.glob("gen.*/workflow/*.json"))


def _same_folder(a: str, b: str) -> bool:
    return a == b or FOLDER_ALIASES.get(a) == b


def test_every_shipped_workflow_is_covered() -> None:
    manifest = load_manifest()
    assert len(WORKFLOWS) == 11 and len(CORE) == 568
    for path in WORKFLOWS:
        nodes = Workflow.load(path).nodes
        for node_id, node in nodes.items():
            cls = node["class_type"]
            assert cls in CORE or manifest.pack_for(cls), f"{path.name} node {node_id}: no pack provides {cls}"
        for cls, name, value in model_inputs(nodes):
            entry = manifest.model(value)
            assert entry is not None, f"{path.name}: {value} ({cls}.{name}) is not in the manifest"
            assert _same_folder(entry.folder, str(model_folder(cls, name))), f"{value} goes in {model_folder(cls, name)}"
    needs = needs_for([(p.name, Workflow.load(p).nodes) for p in WORKFLOWS], manifest)
    assert {p.name for p in needs.packs} == {p.name for p in manifest.packs}  # no pack nobody needs
    assert {u.name for u in needs.models} == {m.name for m in manifest.models}  # no model nobody names
    for pack in manifest.packs:
        assert not set(pack.nodes) & CORE, f"{pack.name} claims core nodes"
        assert pack.git.startswith("https://github.com/") and re.fullmatch(r"[0-9a-f]{40}", pack.commit)


def test_every_model_has_a_source_and_variants_are_saved_under_the_workflow_name() -> None:
    for model in load_manifest().models:
        assert model.fetched_by == "pack" or (model.repo and model.path) or model.url, model.name
        if model.variants:
            assert model.default_variant().path.endswith(model.name)
            assert {v.quant for v in model.variants} == {"Q8_0", "Q5_K_M", "Q4_K_M"}


def test_comfyui_readme_names_exactly_the_manifest_files() -> None:
    readme = (REPO_ROOT / "ComfyUI" / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([^`\s]+\.(?:safetensors|gguf))`", readme))
    manifest = load_manifest()
    assert named == {m.name for m in manifest.models if not m.fetched_by}
    for pack in manifest.packs:
        assert pack.git in readme, pack.name


@pytest.mark.parametrize("vram, quant", [(23.99, "Q8_0"), (47.5, "Q8_0"), (15.99, "Q5_K_M"), (12.0, "Q4_K_M")])
def test_quantisation_follows_gpu_memory(vram: float, quant: str) -> None:
    flux = load_manifest().model("flux1-kontext-dev-Q8_0.gguf")
    assert flux is not None
    variant, why = choose_variant(flux, "auto", Gpu(vram, "nvidia-smi"))
    assert variant.quant == quant and variant.path == f"flux1-kontext-dev-{quant}.gguf" and "nvidia-smi" in why


def test_quantisation_when_small_unknown_or_told() -> None:
    flux = load_manifest().model("flux1-kontext-dev-Q8_0.gguf")
    assert flux is not None
    small, why = choose_variant(flux, "auto", Gpu(8.0, "nvidia-smi"))
    assert small.quant == "Q4_K_M" and "smallest" in why
    unknown, why = choose_variant(flux, "auto", Gpu(None, "no GPU found"))
    assert unknown.quant == "Q8_0" and "unknown" in why
    told, why = choose_variant(flux, "q5_k_m", Gpu(48.0, "nvidia-smi"))
    assert told.quant == "Q5_K_M" and why == "SETUP_QUANT=Q5_K_M"
    t5 = load_manifest().model("t5-base.safetensors")
    assert t5 is not None and choose_variant(t5, "Q4_K_M", None)[0].path == "t5-base.safetensors"


def test_a_broken_manifest_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.toml"
    bad.write_text("[comfyui\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_manifest(bad)
    bad.write_text('[comfyui]\ngit = "x"\n[[model]]\nname = "a.safetensors"\nfolder = "vae"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="neither `repo` and `path` nor `url`"):
        load_manifest(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_manifest(tmp_path / "missing.toml")
