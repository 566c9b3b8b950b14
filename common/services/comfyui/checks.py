"""What a ComfyUI server lacks for a workflow, found from its /object_info before anything is queued.

Why here and not at 3 a.m.: loader inputs in /object_info list the model files the server has
right now, and the node classes it lists are the ones it can run, so an overnight run can refuse
at 11 p.m. with the whole list. The list must be complete in one go: a node pack that is not
installed hides nothing that can be known already (the model files its nodes name are checked
against the core loaders that read the same folder, or named as not checkable yet), so the
second `--check` after installing it finds no new problem.

It follows what ComfyUI itself does with a prompt (execution.py `validate_prompt`): every node's
class must exist, or the whole prompt is refused; then only the output nodes (`output_node` in
/object_info) and the nodes they link back to are validated and run, so a model file named by a
node that feeds no output is never loaded and is not a problem.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Iterable

from common.services.comfyui.errors import model_folder
from common.services.comfyui.workflow import is_output_class

# Files ComfyUI core lists in its model folders (folder_paths.supported_pt_extensions); a node pack
# may list more (ComfyUI-GGUF adds .gguf), so a .gguf file is only visible once that pack is in.
CORE_MODEL_EXTENSIONS = frozenset({".safetensors", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl", ".sft"})
MODEL_EXTENSIONS = CORE_MODEL_EXTENSIONS | {".gguf"}
# ComfyUI's old folder names, still read (folder_paths.map_legacy).
_LEGACY_FOLDERS = {"unet": "diffusion_models", "clip": "text_encoders"}


@dataclass(frozen=True)
class Problem:
    """One thing the server lacks: what is wrong, and the fix, for one line of the preflight screen."""

    what: str
    fix: str
    node_id: str | None = None

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}"


def combo_options(decl: Any) -> list[Any] | None:
    """Options of a combo input in either /object_info form: `[[...], {...}]` (classic nodes) or
    `["COMBO", {"options": [...]}]` (nodes written against ComfyUI's newer node API); None if not a combo."""
    if not isinstance(decl, list) or not decl:
        return None
    if isinstance(decl[0], list):
        return decl[0]
    if decl[0] == "COMBO" and len(decl) > 1 and isinstance(decl[1], dict):
        options = decl[1].get("options")
        return list(options) if isinstance(options, (list, tuple)) else None
    return None


def _inputs_of(entry: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    spec = entry.get("input") or {}
    for section in ("required", "optional"):
        yield from (spec.get(section) or {}).items()


def _links(node: dict[str, Any]) -> Iterable[str]:
    for value in (node.get("inputs") or {}).values():
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)):
            yield str(value[0])


def output_node_ids(prompt: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """Nodes ComfyUI runs a prompt for: classes it marks `output_node`; a class it lacks counts when
    its name says it saves or previews (a missing VideoHelperSuite's VHS_VideoCombine still ends a chain)."""
    out = []
    for node_id, node in prompt.items():
        cls = str(node.get("class_type", ""))
        entry = info.get(cls)
        if entry.get("output_node") is True if isinstance(entry, dict) else is_output_class(cls):
            out.append(str(node_id))
    return out


def nodes_that_run(prompt: dict[str, Any], info: dict[str, Any]) -> set[str] | None:
    """The output nodes and every node they link back to; None when the graph has no output node."""
    outputs = output_node_ids(prompt, info)
    if not outputs:
        return None
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in seen or node_id not in prompt:
            continue  # a link to a node the template lacks is wired per job (workflow.dangling_links)
        seen.add(node_id)
        stack.extend(_links(prompt[node_id]))
    return seen


def _canonical(folder: str) -> str:
    return _LEGACY_FOLDERS.get(folder, folder)


def _listed_in(folder: str, info: dict[str, Any]) -> set[str] | None:
    """Model files the server's own loaders list for `folder` (None: none of them reads it)."""
    found: set[str] | None = None
    for cls, entry in info.items():
        if not isinstance(entry, dict):
            continue
        for name, decl in _inputs_of(entry):
            other = model_folder(cls, name)
            options = combo_options(decl)
            if other and options is not None and _canonical(other) == _canonical(folder):
                found = (found or set()) | {str(o) for o in options}
    return found


def _missing_class(node_id: str, node: dict[str, Any], cls: str, runs: bool, info: dict[str, Any]) -> list[Problem]:
    """A node class the server lacks, with what can already be said about the model files it names."""
    install = f"install the custom node pack that provides {cls} into ComfyUI/custom_nodes (see ComfyUI/README.md)"
    if not runs:
        # ComfyUI refuses a prompt naming any class it lacks, even one that feeds no output.
        return [Problem(f"ComfyUI has no node type {cls} (node {node_id}), and that node feeds no output node, so "
                        "it would never run, yet ComfyUI refuses a workflow that names a node type it lacks",
                        f"delete node {node_id} from the workflow (or {install} and restart ComfyUI).", node_id)]
    problems: list[Problem] = []
    unchecked: list[str] = []
    for name, value in sorted((node.get("inputs") or {}).items()):
        if not isinstance(value, str) or PurePosixPath(value).suffix.lower() not in MODEL_EXTENSIONS:
            continue
        folder = model_folder(cls, name)
        where = f"ComfyUI/models/{folder}" if folder else "the ComfyUI/models folder the pack's instructions name"
        listed = _listed_in(folder, info) if folder else None
        if listed is None or PurePosixPath(value).suffix.lower() not in CORE_MODEL_EXTENSIONS:
            unchecked.append(f"{value} ({name}, in {where})")
        elif value not in listed:
            problems.append(Problem(
                f"ComfyUI does not have the model file {value} that node {node_id} ({cls}) will need for its {name} "
                "input once its node pack is installed", f"put it in {where} (see ComfyUI/README.md).", node_id))
    if unchecked:
        files = "; ".join(unchecked)
        what = (f"ComfyUI has no node type {cls} (node {node_id}); the model file{'s' if len(unchecked) > 1 else ''} "
                f"it names cannot be checked until its node pack is installed: {files}")
        fix = f"{install}, put {'those files' if len(unchecked) > 1 else 'that file'} in place and restart ComfyUI."
    else:
        what, fix = f"ComfyUI has no node type {cls} (node {node_id})", f"{install} and restart ComfyUI."
    return [Problem(what, fix, node_id), *problems]


def find_problems(prompt: dict[str, Any], info: dict[str, Any]) -> list[Problem]:
    """Every node class and model file this server (`info`: its /object_info) lacks for `prompt`, in node order."""
    runs = nodes_that_run(prompt, info)
    problems: list[Problem] = []
    if runs is None:
        if all(str(n.get("class_type")) in info for n in prompt.values()):
            problems.append(Problem(
                "the workflow has no output node (such as SaveImage or SaveAudio), so ComfyUI refuses it "
                "(\"Prompt has no outputs\")", "add one in ComfyUI and export the workflow again with \"Export (API)\"."))
        runs = set(prompt)  # which nodes would run cannot be told: check them all
    for node_id, node in sorted(prompt.items(), key=lambda kv: str(kv[0])):
        node_id = str(node_id)
        cls = str(node.get("class_type", "?"))
        if cls not in info:
            problems.extend(_missing_class(node_id, node, cls, node_id in runs, info))
            continue
        if node_id not in runs:
            continue  # never validated nor run by ComfyUI: whatever it names is not needed
        for name, decl in _inputs_of(info[cls]):
            value = (node.get("inputs") or {}).get(name)
            options = combo_options(decl)
            folder = model_folder(cls, name)
            if folder and isinstance(value, str) and options is not None and value not in options:
                problems.append(Problem(
                    f"ComfyUI does not have the model file {value} that node {node_id} ({cls}) needs for its {name} input",
                    f"put it in ComfyUI/models/{folder} (see ComfyUI/README.md).", node_id))
    return problems


def parse_version(text: Any) -> tuple[int, int, int] | None:
    """`0.8.1` (also `v0.8.1`, `0.8.1-dev`, `0.8`) as a comparable tuple; None when it is not a version."""
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text or ""))
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)
