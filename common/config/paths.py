"""Where each pipeline keeps things (SPEC 2), and how one story feeds all three pipelines.

A pipeline folder (`gen.audio/`) holds two kinds of things: its code (`scripts/`, `workflow/`,
`voices/`, `settings.toml`) and one story's data (`input/`, `output/`, `log.txt`). Channel mode
(`generate.py --stories DIR`) keeps the code where it is and gives each story a workspace,
`DIR/<story>/`, whose `gen.audio/`, `gen.image/`, `gen.video/` hold that story's data. Everything
that reads or writes data is handed the data folder as its `pipeline_dir`; the few things that read
code ask `code_dir()` for it. A numbered script learns its data folder here, in `pipeline_dir_of`,
from PIPELINE_WORKSPACE, which the orchestrator sets for every script it runs: no script has code
of its own for workspaces.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from common.run.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ("gen.audio", "gen.image", "gen.video")
WORKSPACE_ENV = "PIPELINE_WORKSPACE"  # DIR/<story>: the story workspace a script's data lives in
WORKSPACE_MARK = "workspace.json"  # in DIR/<story>/: which story it is and where the code is
CODE_FOLDERS = ("scripts", "workflow", "voices")  # what stays in the pipeline folder in channel mode


def pipeline_dir_of(script_file: str | Path, environ: Mapping[str, str] | None = None) -> Path:
    """The folder a numbered script reads and writes: its pipeline folder (the parent of `scripts/`),
    or, under PIPELINE_WORKSPACE, that pipeline's folder in the story's workspace."""
    code = Path(script_file).resolve().parent.parent
    workspace = (os.environ if environ is None else environ).get(WORKSPACE_ENV, "").strip()
    return Path(workspace).resolve() / code.name if workspace else code


def read_mark(workspace: Path) -> dict | None:
    """A story workspace's mark, or None when `workspace` is not one."""
    try:
        raw = json.loads((Path(workspace) / WORKSPACE_MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def workspace_of(pipeline_dir: Path) -> Path | None:
    """The story workspace a data folder belongs to (DIR/<story>), or None for a plain pipeline folder."""
    parent = Path(pipeline_dir).parent
    return parent if (parent / WORKSPACE_MARK).is_file() else None


def code_dir(pipeline_dir: Path) -> Path:
    """Where the pipeline's scripts, workflows, voices and settings.toml are: the folder itself, or for a
    workspace folder the pipeline folder of the project that made the workspace (its mark says which)."""
    pipeline_dir = Path(pipeline_dir)
    workspace = workspace_of(pipeline_dir)
    if workspace is None:
        return pipeline_dir
    root = (read_mark(workspace) or {}).get("code_root")
    candidate = Path(root) / pipeline_dir.name if root else None
    return candidate if candidate is not None and candidate.is_dir() else REPO_ROOT / pipeline_dir.name


def is_pipeline_dir(folder: Path) -> bool:
    """A pipeline folder or a workspace's folder for one pipeline: where a story's output/ lives."""
    return (Path(folder) / "scripts").is_dir() or workspace_of(folder) is not None


def settings_files(pipeline_dir: Path) -> list[Path]:
    """The settings.toml files for a pipeline's data folder, weakest first: the pipeline's own, then
    in a workspace the stories folder's (the channel's) and the story's own."""
    pipeline_dir = Path(pipeline_dir)
    files = [code_dir(pipeline_dir) / "settings.toml"]
    workspace = workspace_of(pipeline_dir)
    if workspace is not None:
        files += [workspace.parent / "settings.toml", workspace / "settings.toml"]
    return files


def to_workspace(path: Path, code_root: Path, workspace: Path) -> Path | None:
    """`path` moved into a workspace when it points into a pipeline's data (<pipeline>/input/ or output/)
    under `code_root`, the folder holding the pipeline folders; None when it points anywhere else."""
    try:
        rel = Path(os.path.normpath(path)).relative_to(Path(os.path.normpath(code_root)))
    except ValueError:
        return None
    parts = rel.parts
    if len(parts) >= 2 and (Path(code_root) / parts[0] / "scripts").is_dir() and parts[1] in ("input", "output"):
        return Path(workspace).joinpath(*parts)
    return None


def story_path(pipeline_dir: Path) -> Path:
    """gen.image and gen.video read their own input/1.story.txt when present, else gen.audio's."""
    own = pipeline_dir / "input" / "1.story.txt"
    if own.is_file():
        return own
    shared = pipeline_dir.parent / "gen.audio" / "input" / "1.story.txt"
    if shared.is_file():
        return shared
    raise InputError(
        f"no story found: write it to {own if pipeline_dir.name == 'gen.audio' else shared} "
        "(one '[speaker_tag] text' line per utterance) and run again."
    )


def require_file(path: Path, what: str, hint: str) -> Path:
    """A missing input is a user error with a fix, not a FileNotFoundError traceback."""
    if not path.is_file():
        raise InputError(f"{what} {path} is missing; {hint}")
    if path.stat().st_size == 0:
        raise InputError(f"{what} {path} is empty; {hint}")
    return path
