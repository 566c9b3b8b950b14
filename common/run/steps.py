"""A pipeline's scripts as steps: what each needs, and which of them a run selects.

`generate.py` lists its scripts as data (SCRIPTS, SCRIPT_ARGS); which server a script needs is the
script's own fact, the same in every pipeline that runs it, so it is said once, here
(COMFYUI_WORKFLOWS, LLM_SCRIPTS), unless a generate.py gives its own tables (NEEDS_COMFYUI,
NEEDS_LMSTUDIO, as the seed's did); the ComfyUI version a node type needs is said here too
(COMFYUI_MIN_VERSIONS, which the preflight checks).
This turns those tables into steps and resolves --from/--until/--only and --list.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from common.config.paths import to_workspace
from common.run.errors import ConfigError
from common.run.step_process import to_terminal

Needs = Mapping[str, bool] | Collection[str]


@dataclass(frozen=True)
class Step:
    position: int  # 1-based, as --list shows it
    name: str  # as written in SCRIPTS, e.g. "2.story.py" or "../../gen.audio/scripts/10.thumbnail.py"
    path: Path
    needs_comfyui: bool
    needs_llm: bool
    args: tuple[str, ...]
    workspace: Path | None = None  # channel mode: the story workspace (DIR/<story>) the script works in

    @property
    def basename(self) -> str:
        return self.path.name

    @property
    def code_dir(self) -> Path:
        """The pipeline folder the script lives in (its workflow/ and voices/ are there)."""
        return self.path.parent.parent

    @property
    def pipeline_dir(self) -> Path:
        """Where the script reads and writes: a script of another pipeline (../../gen.audio/scripts/x.py)
        belongs to, and writes into, that one; in channel mode, that pipeline's folder of the workspace."""
        return self.code_dir if self.workspace is None else self.workspace / self.code_dir.name

    @property
    def needs_text(self) -> str:
        needs = [label for flag, label in ((self.needs_comfyui, "ComfyUI"), (self.needs_llm, "LLM")) if flag]
        return " + ".join(needs) if needs else "-"


def _lookup(table: Needs | Mapping[str, Any], name: str, default: Any = False) -> Any:
    """Seed generate.py files key their tables by basename even for another pipeline's script."""
    base = Path(name).name
    if isinstance(table, Mapping):
        if name in table:
            return table[name]
        return table.get(base, default)
    return name in table or base in table


# (pipeline folder, script) -> the workflow files under <pipeline>/workflow a ComfyUI script queues (the
# preflight checks their nodes and models); a callable gets the settings (files chosen by a setting).
# Being named here is what makes a script need ComfyUI.
COMFYUI_WORKFLOWS: dict[tuple[str, str], Callable[[Any], list[str]]] = {
    ("gen.audio", "2.story.py"): lambda s: [s.STORY_WORKFLOW],
    ("gen.audio", "7.sfx.py"): lambda s: ["sfx.json"],
    ("gen.audio", "10.thumbnail.py"): lambda s: ["thumbnail.json"],
    ("gen.image", "2.character.py"): lambda s: ["character_location.json"] + (["scene.json"] if s.CHARACTER_SHEETS else []),
    ("gen.image", "2.location.py"): lambda s: ["character_location.json"],
    ("gen.image", "3.scene.py"): lambda s: (["plate.json", "pose.json", "composite.json"] if s.KEYFRAME_MODE == "layered"
                                            else ["scene.json"]),
    ("gen.video", "3.animate.py"): lambda s: [{"ltx": "animate.json", "wan": "animate_wan.json"}.get(
        str(s.VIDEO_WORKFLOW), "animate.json")] + ([s.SPEAKING_WORKFLOW] if s.SPEAKING_SHOTS and s.SPEAKING_WORKFLOW else []),
}
# Node classes that need a newer ComfyUI than the rest, with the minimum version and what they make: the
# preflight compares /system_stats's comfyui_version with it for every workflow about to be queued. Keyed by
# node class, not by script, because the need is the node's: a user's own speech workflow without it does
# not need the newer ComfyUI, and any workflow that uses it does (ComfyUI/README.md says why for each).
COMFYUI_MIN_VERSIONS: dict[str, tuple[str, str]] = {
    "OmniVoiceMultiSpeakerTTS": ("0.8.1", "speech"),  # its speaker inputs are a "dynamic combo"
}
# (pipeline folder, script) of the scripts that ask the LLM server (3.scene.py and 3.animate.py: the identity
# judge's vision model, when the pictures are ComfyUI's).
LLM_SCRIPTS = {("gen.audio", "1.character.py"), ("gen.audio", "5.timeline.py"), ("gen.audio", "6.timing.py"),
               ("gen.audio", "9.media.py"), ("gen.image", "1.story.py"), ("gen.video", "2.motion.py"),
               ("gen.image", "3.scene.py"), ("gen.video", "3.animate.py")}


def _needs(table: Needs | None, name: str, path: Path, service: str) -> bool:
    if table is not None:
        return bool(_lookup(table, name))
    return (path.parent.parent.name, path.name) in (COMFYUI_WORKFLOWS if service == "comfyui" else LLM_SCRIPTS)


def build_steps(
    pipeline_dir: Path, scripts: Sequence[str], needs_comfyui: Needs | None, needs_lmstudio: Needs | None,
    script_args: Mapping[str, Sequence[str]], workspace: Path | None = None,
) -> list[Step]:
    """`pipeline_dir` is the pipeline folder with the scripts; with `workspace` the steps work in that story
    workspace, and an argument naming a file of a pipeline's input/ or output/ (as gen.video's
    `--video-file ../../gen.video/output/final_sd.mp4`) names the workspace's file instead."""
    scripts_dir = pipeline_dir / "scripts"
    steps = []
    for position, name in enumerate(scripts, 1):
        path = Path(os.path.normpath(scripts_dir / name))
        args = tuple(_lookup(script_args, name, ()) or ())
        if workspace is not None:
            args = tuple(_in_workspace(arg, path.parent, pipeline_dir.parent, workspace) for arg in args)
        steps.append(Step(position, name, path, _needs(needs_comfyui, name, path, "comfyui"),
                          _needs(needs_lmstudio, name, path, "llm"), args, workspace))
    return steps


def _in_workspace(arg: str, cwd: Path, code_root: Path, workspace: Path) -> str:
    """A relative path argument into a pipeline's data, as the workspace's absolute path; others unchanged."""
    if arg.startswith("-") or ("/" not in arg and "\\" not in arg) or Path(arg).is_absolute():
        return arg
    moved = to_workspace(cwd / arg, code_root, workspace)
    return str(moved) if moved is not None else arg


# Scripts that ask their own model of the LLM server rather than LM_STUDIO_MODEL: the settings that name it,
# the first one set wins (the identity judge's IDENTITY_JUDGE_MODEL falls back to 2.motion.py's vision model).
STEP_MODEL_SETTINGS = {"2.motion.py": ("MODEL_MOTION_GENERATION",),
                       "3.scene.py": ("IDENTITY_JUDGE_MODEL", "MODEL_MOTION_GENERATION"),
                       "3.animate.py": ("IDENTITY_JUDGE_MODEL", "MODEL_MOTION_GENERATION")}


def llm_model_for(step: Step, settings: Any) -> str | None:
    """The model the orchestrator loads for `step` (None: the LLM service's own, LM_STUDIO_MODEL)."""
    names = STEP_MODEL_SETTINGS.get(step.basename, ())
    return next((m for m in (str(getattr(settings, n, "") or "").strip() for n in names) if m), None)


def _resolve_position(token: str, steps: Sequence[Step], flag: str) -> int:
    """A 1-based position, or a script name / name prefix such as `2.story`."""
    token = token.strip()
    if token.isdigit():
        number = int(token)
        if 1 <= number <= len(steps):
            return number
        raise ConfigError(f"{flag} {token} is out of range; use a number from 1 to {len(steps)} (see --list).")
    exact = [s for s in steps if token in (s.name, s.basename, s.path.stem)]
    matches = exact or [s for s in steps if s.basename.startswith(token) or s.name.startswith(token)]
    own = [s for s in matches if "/" not in s.name.replace("\\", "/")]
    if len(matches) > 1 and len(own) == 1:
        matches = own  # `1.story` in gen.video means gen.video's own 1.story.py, not gen.image's
    if len(matches) == 1:
        return matches[0].position
    if not matches:
        raise ConfigError(f"{flag} {token} matches no script of this pipeline; see --list for the names.")
    names = ", ".join(s.name for s in matches)
    raise ConfigError(f"{flag} {token} matches several scripts ({names}); give more of the name or a number.")


def select_steps(steps: Sequence[Step], start: str | None, until: str | None, only: str | None) -> list[Step]:
    if only is not None:
        if start is not None or until is not None:
            raise ConfigError("--only cannot be combined with --from or --until; use one or the other.")
        position = _resolve_position(only, steps, "--only")
        return [steps[position - 1]]
    first = _resolve_position(start, steps, "--from") if start is not None else 1
    last = _resolve_position(until, steps, "--until") if until is not None else len(steps)
    if first > last:
        raise ConfigError(f"--from {start} comes after --until {until}; nothing would run.")
    return list(steps[first - 1:last])


def check_exist(steps: Sequence[Step], pipeline_dir: Path) -> None:
    missing = [s.name for s in steps if not s.path.is_file()]
    if missing:
        raise ConfigError(
            f"{len(missing)} script(s) listed in SCRIPTS do not exist ({', '.join(missing)}, looked in "
            f"{pipeline_dir / 'scripts'}); write them or take them out of generate.py."
        )



def print_list(steps: Sequence[Step], pipeline_dir: Path) -> None:
    """`--list`: every script, what it needs and its arguments; a missing one is marked."""
    width = max((len(s.name) for s in steps), default=0)
    to_terminal(f"{pipeline_dir.name}: {len(steps)} script(s)")
    for s in steps:
        missing = "" if s.path.is_file() else "   (missing)"
        args = f"   args: {shlex.join(s.args)}" if s.args else ""
        to_terminal(f"{s.position:3d}. {s.name:<{width}}  needs: {s.needs_text}{args}{missing}")
