"""The setup manifest (ComfyUI/manifest.toml): what ComfyUI, which node packs and which model files
the shipped workflows need, and where each comes from.

Why a file and not code: the list changes with every workflow and every new quantisation, and a
user with their own workflows extends a copy of it (SETUP_MANIFEST) without touching Python. The
workflows stay the truth about *what* is needed (file names, node classes); the manifest only says
*where from*, so `needs_for` reads the workflows the run will queue and looks each name up here.
A test proves every shipped workflow's names are in it.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

from common.config.paths import REPO_ROOT
from common.run.errors import ConfigError
from common.services.comfyui.checks import MODEL_EXTENSIONS
from common.services.comfyui.errors import model_folder

DEFAULT_MANIFEST = REPO_ROOT / "ComfyUI" / "manifest.toml"
# ComfyUI reads both names of these folders (folder_paths.map_legacy): a file in either is present.
FOLDER_ALIASES = {"unet": "diffusion_models", "diffusion_models": "unet", "clip": "text_encoders",
                  "text_encoders": "clip"}
PACK_INSTALLS = ("requirements", "script", "none")


@dataclass(frozen=True)
class Variant:
    """One file a model entry may be fetched as (a quantisation), with the GPU memory it suits."""

    quant: str
    path: str
    min_vram_gb: float = 0.0
    size: int | None = None
    sha256: str | None = None
    approx_gb: float | None = None


@dataclass(frozen=True)
class ModelFile:
    """A file a workflow names: saved as `name` in models/`folder`, fetched from `repo` or `url`."""

    name: str
    folder: str
    repo: str = ""
    revision: str = "main"
    path: str = ""
    url: str = ""
    size: int | None = None
    sha256: str | None = None
    approx_gb: float | None = None
    fetched_by: str = ""  # "pack": the node pack downloads it on its first job
    variants: tuple[Variant, ...] = ()

    @property
    def source(self) -> str:
        return self.url or f"{self.repo}@{self.revision}/{self.path}"

    def default_variant(self) -> Variant:
        """The file as the workflows name it (the variant whose path ends in `name`, else the first)."""
        for variant in self.variants:
            if PurePosixPath(variant.path).name == self.name:
                return variant
        if self.variants:
            return self.variants[0]
        return Variant("", self.path, 0.0, self.size, self.sha256, self.approx_gb)


@dataclass(frozen=True)
class Pack:
    """A custom node pack: cloned into custom_nodes/`name`, its requirements in ComfyUI's Python."""

    name: str
    git: str
    commit: str = ""
    nodes: tuple[str, ...] = ()
    install: str = "requirements"
    pip: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComfyCore:
    git: str
    ref: str = ""
    min_version: str = ""
    torch: tuple[str, ...] = ()
    torch_index: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    path: Path
    comfyui: ComfyCore
    packs: tuple[Pack, ...]
    models: tuple[ModelFile, ...]

    def pack_for(self, class_type: str) -> Pack | None:
        return next((p for p in self.packs if class_type in p.nodes), None)

    def model(self, name: str) -> ModelFile | None:
        return next((m for m in self.models if m.name == name), None)


def _str(row: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = row.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise ConfigError(f"{where} needs a text `{key}`; fix the manifest.")
    return value


def _opt_int(row: dict[str, Any], key: str) -> int | None:
    value = row.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_float(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sha(row: dict[str, Any], where: str) -> str | None:
    value = row.get("sha256") or None
    if value is not None and (not isinstance(value, str) or len(value) != 64
                              or any(c not in "0123456789abcdef" for c in value.lower())):
        raise ConfigError(f"{where} has a sha256 that is not 64 hex digits; fix the manifest.")
    return value.lower() if value else None


def _model(row: dict[str, Any], path: Path) -> ModelFile:
    name = _str(row, "name", f"a [[model]] of {path}")
    where = f"model {name} in {path}"
    folder = _str(row, "folder", where)
    url, repo = str(row.get("url", "")), str(row.get("repo", ""))
    fetched_by = str(row.get("fetched_by", ""))
    if not fetched_by and not url and not (repo and row.get("path")):
        raise ConfigError(f"{where} says neither `repo` and `path` nor `url`; fix the manifest.")
    variants = tuple(
        Variant(_str(v, "quant", where), _str(v, "path", where), float(v.get("min_vram_gb", 0)),
                _opt_int(v, "size"), _sha(v, where), _opt_float(v, "approx_gb"))
        for v in row.get("variants", ()))
    return ModelFile(name, folder, repo, str(row.get("revision", "main")), str(row.get("path", "")), url,
                     _opt_int(row, "size"), _sha(row, where), _opt_float(row, "approx_gb"), fetched_by, variants)


def _pack(row: dict[str, Any], path: Path) -> Pack:
    name = _str(row, "name", f"a [[pack]] of {path}")
    where = f"node pack {name} in {path}"
    install = str(row.get("install", "requirements"))
    if install not in PACK_INSTALLS:
        raise ConfigError(f"{where} has install = {install!r}; use one of {', '.join(PACK_INSTALLS)}.")
    if "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"{where}: a pack's name is its folder in custom_nodes, so it cannot hold a path; fix the manifest.")
    return Pack(name, _str(row, "git", where), str(row.get("commit", "")), tuple(row.get("nodes", ())), install,
                tuple(row.get("pip", ())))


def load_manifest(path: Path | str | None = None) -> Manifest:
    """Read and check a manifest (default: the shipped ComfyUI/manifest.toml)."""
    path = Path(path) if path else DEFAULT_MANIFEST
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"the setup manifest {path} does not exist; set SETUP_MANIFEST to yours, or leave it "
                          "empty for the shipped one.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the setup manifest {path} is not valid TOML ({exc}); fix it.") from None
    core = data.get("comfyui") or {}
    comfy = ComfyCore(_str(core, "git", f"[comfyui] of {path}"), str(core.get("ref", "")),
                      str(core.get("min_version", "")), tuple(core.get("torch", ())),
                      dict(core.get("torch_index", {})))
    models = tuple(_model(row, path) for row in data.get("model", ()))
    names = [m.name for m in models]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ConfigError(f"the setup manifest {path} lists {', '.join(doubled)} more than once; keep one entry each.")
    return Manifest(path, comfy, tuple(_pack(row, path) for row in data.get("pack", ())), models)


@dataclass(frozen=True)
class ModelUse:
    """A model file a workflow names, where it goes, and its manifest entry (None: not in the manifest)."""

    name: str
    folder: str
    entry: ModelFile | None
    workflows: tuple[str, ...]


@dataclass
class Needs:
    """What the workflows of a run need from ComfyUI: packs (by name) and model files, in order."""

    packs: list[Pack] = field(default_factory=list)
    models: list[ModelUse] = field(default_factory=list)
    classes: set[str] = field(default_factory=set)


def model_inputs(nodes: dict[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(class, input name, file name) of every input naming a model file, as checks.py sees them."""
    for node in nodes.values():
        cls = str(node.get("class_type", ""))
        for name, value in (node.get("inputs") or {}).items():
            folder = model_folder(cls, name)
            if folder and isinstance(value, str) and value and (
                    PurePosixPath(value).suffix.lower() in MODEL_EXTENSIONS or folder == "omnivoice"):
                yield cls, name, value


def needs_for(workflows: Sequence[tuple[str, dict[str, Any]]], manifest: Manifest) -> Needs:
    """The packs and model files `workflows` ((label, API-format nodes) pairs) name, looked up in `manifest`."""
    needs = Needs()
    uses: dict[str, ModelUse] = {}
    for label, nodes in workflows:
        for node in nodes.values():
            cls = str(node.get("class_type", ""))
            needs.classes.add(cls)
            pack = manifest.pack_for(cls)
            if pack is not None and pack not in needs.packs:
                needs.packs.append(pack)
        for cls, name, value in model_inputs(nodes):
            entry = manifest.model(value)
            folder = entry.folder if entry else str(model_folder(cls, name))
            known = uses.get(value)
            labels = (*(known.workflows if known else ()), label)
            uses[value] = ModelUse(value, folder, entry, tuple(dict.fromkeys(labels)))
    needs.models = list(uses.values())
    return needs
