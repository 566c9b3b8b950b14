"""The checks an overnight run makes before it spends a minute of GPU time (`generate.py --check`).

Why: a run that is started at 11 p.m. and dies at 3 a.m. on a missing model file, a custom node
that was never installed or an expired YouTube token wastes the night. Everything that can be
known up front is asked here, for exactly the scripts about to run, and every problem is
listed on one screen with its fix, so one evening's edit fixes them all instead of one per run.

It stays cheap: an offline run checks only local files and libraries (well under a second);
the servers are asked only when the run will use them. ComfyUI must be running to list its
nodes and models, so it is started through the orchestrator's ServiceManager, which then
keeps or releases it as the first script's needs say.

Disk estimate (documented here, rough on purpose, in MB per hour of narration; the story's
length is estimated at 150 spoken words a minute): speech WAVs are 16-bit 44.1 kHz, about
320 MB an hour per copy, so 2.story (chunks + story.wav), 7.sfx and 8.combine count ~650 each;
a 1080p H.264 video is ~1 GB an hour (11.video, 5.video, 6.combine), LTX/WAN clips and their
concatenation ~4 GB and ~1.5 GB; pictures ~200 MB; any other script 50 MB. A fixed 500 MB margin
is added for temporary files, logs and the ComfyUI/LLM servers' own scratch space.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from common.config.paths import PIPELINES, story_path
from common.formats.story import read_story
from common.run.errors import ConfigError, InputError, PipelineError, PreflightError
from common.run.steps import COMFYUI_MIN_VERSIONS, COMFYUI_WORKFLOWS, llm_model_for

if TYPE_CHECKING:
    from common.run.steps import Step

WORDS_PER_MINUTE = 150
MARGIN_MB = 500
DEFAULT_MB_PER_HOUR = 50
MB_PER_HOUR = {
    "2.story.py": 650, "7.sfx.py": 650, "8.combine.py": 650, "4.audio.py": 650, "3.transcribe.py": 10,
    "10.thumbnail.py": 50, "11.video.py": 1000, "5.video.py": 1000, "6.combine.py": 1000,
    "2.character.py": 200, "2.location.py": 200, "3.scene.py": 200, "3.animate.py": 4000, "4.video.py": 1500,
}


@dataclass(frozen=True)
class Check:
    """One line of the screen: what was checked, what was found, and the fix when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    kind: type[PipelineError] = PreflightError  # what kind of failure, for the run's exit code


@dataclass
class PreflightReport:
    title: str
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, name: str, ok: bool, detail: str, fix: str = "", kind: type[PipelineError] = PreflightError) -> None:
        self.checks.append(Check(name, ok, detail, fix, kind))

    def add_error(self, name: str, exc: PipelineError) -> None:
        self.add(name, False, str(exc), kind=type(exc))

    def error(self) -> PipelineError:
        """What a failed preflight raises: the problems' own kind (exit code) when they share one.

        A run whose only problem is ComfyUI being down keeps the ServiceError exit (5) a script
        would give; a mixed list is a PreflightError (8).
        """
        kinds = {c.kind for c in self.problems}
        kind = kinds.pop() if len(kinds) == 1 else PreflightError
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more, listed above)" if len(self.problems) > 1 else ""
        return kind(f"preflight: {first.name}: {first.detail.rstrip('.')}{more}; nothing was run.")

    def lines(self) -> list[str]:
        width = max((len(c.name) for c in self.checks), default=0)
        out = [self.title]
        for c in self.checks:
            out.append(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
            if c.fix:
                out.append(f"        {'':<{width}}  fix: {c.fix}")
        if self.ok:
            out.append(f"preflight: all {len(self.checks)} check(s) passed")
        else:
            out.append(f"preflight: {len(self.problems)} problem(s) found; nothing was run. Fix them, then check "
                       "again with `python generate.py --check`.")
        return out


def story_hours(pipeline_dirs: Sequence[Path]) -> float | None:
    """Narration length estimated from the story's words; None when no story can be read."""
    for pipeline_dir in pipeline_dirs:
        try:
            story = read_story(story_path(pipeline_dir))
        except PipelineError:
            continue
        words = sum(len(u.text.split()) for u in story.utterances)
        return max(words / WORDS_PER_MINUTE, 1.0) / 60.0
    return None


def disk_estimate_mb(steps: Sequence[Step], hours: float) -> int:
    """MB the run may write: per-script MB per hour of story (module docstring) plus a fixed margin."""
    per_hour = sum(MB_PER_HOUR.get(s.basename, DEFAULT_MB_PER_HOUR) for s in steps)
    return int(math.ceil(per_hour * hours)) + MARGIN_MB


def _check_inputs(report: PreflightReport, steps: Sequence[Step]) -> list[Path]:
    dirs = list(dict.fromkeys(s.pipeline_dir for s in steps))
    # Every script of the three real pipelines starts from the story; a folder of other
    # scripts (a user's own pipeline) is not known to read one, so it is not asked for.
    for pipeline_dir in (d for d in dirs if d.name in PIPELINES):
        try:
            path = story_path(pipeline_dir)
            story = read_story(path)
        except PipelineError as exc:
            report.add_error(f"story ({pipeline_dir.name})", exc)
            continue
        if not story.utterances:
            report.add(f"story ({pipeline_dir.name})", False, f"{path} has no '[speaker] text' line",
                       "write the story there, one '[speaker_tag] text' line per utterance.", InputError)
            continue
        report.add(f"story ({pipeline_dir.name})", True, f"{path} ({len(story.utterances)} lines)")
    return dirs


def _check_disk(report: PreflightReport, pipeline_dir: Path, steps: Sequence[Step], dirs: Sequence[Path]) -> None:
    hours = story_hours(dirs)
    need = disk_estimate_mb(steps, hours if hours is not None else 1.0)
    free = shutil.disk_usage(pipeline_dir).free // (1024 * 1024)
    length = f"~{hours * 60:.0f} min of story" if hours is not None else "story length unknown, 1 h assumed"
    detail = f"{free:,} MB free in {pipeline_dir}, this run needs ~{need:,} MB ({length})"
    fix = "" if free >= need else f"free at least {need - free:,} MB on that disk, or move the project to a bigger one."
    report.add("disk", free >= need, detail, fix)


def _check_ffmpeg(report: PreflightReport) -> None:
    from common.media.ffmpeg import ffmpeg_exe

    try:
        exe = ffmpeg_exe()
    except PipelineError as exc:
        report.add_error("ffmpeg", exc)
        return
    found = Path(exe).is_file() or shutil.which(exe) is not None
    report.add("ffmpeg", found, exe if found else f"no ffmpeg at {exe}",
               "" if found else "run pip install -r requirements.txt (imageio-ffmpeg ships one) or set FFMPEG_BINARY.")


def _check_offline_speech(report: PreflightReport) -> None:
    from common.offline import espeak

    try:
        engine = espeak._locate()  # finds the library and its data once; the cheap part of a synthesis
    except PipelineError as exc:
        report.add_error("TTS (espeak-ng)", exc)
        return
    report.add("TTS (espeak-ng)", True, f"{engine.library.name}, {len(engine.variants)} voice variants")


def workflow_files(steps: Sequence[Step], settings: Any) -> list[Path]:
    """The workflow files the ComfyUI scripts among `steps` will queue, in order, without repeats."""
    files: list[Path] = []
    for step in steps:
        if not step.needs_comfyui:
            continue
        pipeline_dir = step.code_dir
        pick = COMFYUI_WORKFLOWS.get((pipeline_dir.name, step.basename))
        if pick is None:
            files.extend(sorted((pipeline_dir / "workflow").glob("*.json")))
            continue
        for name in pick(settings):
            files.append(Path(name) if Path(name).is_absolute() else pipeline_dir / "workflow" / name)
    return list(dict.fromkeys(files))


def _check_comfyui(report: PreflightReport, steps: Sequence[Step], settings: Any, manager: Any) -> None:
    from common.services.comfyui.checks import find_problems
    from common.services.comfyui.client import ComfyClient
    from common.services.comfyui.workflow import Workflow

    files = workflow_files(steps, settings)
    if not files:  # nothing to ask it: starting it now would only cost a start-up
        report.add("ComfyUI", True, "no workflow file to check; it is started when a script needs it")
        return
    from common.services.comfyui.pool import server_urls

    urls = server_urls(settings.COMFYUI_BASE_URL)
    try:
        manager.comfyui.ensure_running()
    except PipelineError as exc:
        report.add_error("ComfyUI", exc)
        return
    workflows = []
    for path in files:
        name = f"{path.parent.parent.name}/workflow/{path.name}"
        try:
            workflows.append((name, Workflow.load(path)))
        except PipelineError as exc:
            report.add_error(name, exc)
    for url in urls:
        # Every listed server gets jobs of every kind, so each must have every node and model.
        label = "ComfyUI" if len(urls) == 1 else f"ComfyUI {url}"
        try:
            with ComfyClient(url, request_timeout=30.0) as client:
                info = client.object_info()
                version = (client.system_stats().get("system") or {}).get("comfyui_version")
        except PipelineError as exc:
            report.add_error(label, exc)
            continue
        report.add(label, True, f"answering at {url}, ComfyUI {version or '(version not given)'}, {len(info)} node types")
        _check_version(report, label, url, version, workflows)
        for name, workflow in workflows:
            name = name if len(urls) == 1 else f"{name} on {url}"
            problems = find_problems(workflow.nodes, info)
            for problem in problems:
                report.add(name, False, problem.what, problem.fix)
            if not problems:
                report.add(name, True, f"{len(workflow.nodes)} nodes, every node type and model file present")


def _check_version(report: PreflightReport, label: str, url: str, version: Any,
                   workflows: Sequence[tuple[str, Any]]) -> None:
    """The ComfyUI version against the minimum the workflows' nodes need (steps.COMFYUI_MIN_VERSIONS)."""
    from common.services.comfyui.checks import parse_version

    needs: dict[tuple[str, str], list[str]] = {}  # (minimum, what) -> the workflows that need it
    for name, workflow in workflows:
        for cls in dict.fromkeys(node["class_type"] for node in workflow.nodes.values()):
            if cls in COMFYUI_MIN_VERSIONS:
                needs.setdefault(COMFYUI_MIN_VERSIONS[cls], []).append(name)
    have = parse_version(version)
    for (minimum, what), names in sorted(needs.items()):
        need = f"{what} workflows need {minimum} or newer ({', '.join(dict.fromkeys(names))})"
        if have is None:
            report.add(f"{label} version", True, f"ComfyUI at {url} does not say its version, so it is not checked: {need}")
        elif have < (parse_version(minimum) or have):
            report.add(f"{label} version", False, f"ComfyUI {version} at {url}: {need}",
                       "update ComfyUI (ComfyUI/README.md says how), restart it, and check again.")
        else:
            report.add(f"{label} version", True, f"ComfyUI {version}: {need}")


def _check_llm(report: PreflightReport, steps: Sequence[Step], settings: Any, manager: Any, *, judged: bool) -> None:
    """The server and every model the steps ask (`judged`: ComfyUI pictures, which the identity judge's vision
    model checks in 3.scene.py and 3.animate.py)."""
    from common.services.llm import LLMClient
    from common.services.llm_endpoint import choose_auto_model, is_auto
    from common.services.llm_server import load_command

    llm = manager.llm
    if not llm.answers():
        try:
            plan = llm.plan_start()
        except PipelineError as exc:
            report.add_error("LLM", exc)
            return
        report.add("LLM", True, f"not running yet; the run will {plan} (models are checked once it is up)")
        return
    try:
        offered = LLMClient(llm.base_url, settings.LM_STUDIO_MODEL, timeout=10.0,
                            max_retries=0, transport_retries=0).models()
    except PipelineError as exc:
        report.add_error("LLM", exc)
        return
    report.add("LLM", True, f"answering at {llm.base_url}, {len(offered)} model(s) offered")
    wanted = [("LM_STUDIO_MODEL", str(settings.LM_STUDIO_MODEL or "").strip())]
    if any((s.pipeline_dir.name, s.basename) == ("gen.video", "2.motion.py") for s in steps):
        motion = str(settings.MODEL_MOTION_GENERATION or "").strip()
        wanted.append(("MODEL_MOTION_GENERATION", motion or wanted[0][1]))
    judge_steps = [s for s in steps if s.basename in ("3.scene.py", "3.animate.py") and s.needs_llm]
    if judged and judge_steps and str(settings.IDENTITY_JUDGE).lower() in ("auto", "vision"):
        model = llm_model_for(judge_steps[0], settings) or wanted[0][1]
        if model not in [m for _, m in wanted]:
            wanted.append(("IDENTITY_JUDGE_MODEL", model))
    for setting, model in wanted:
        if is_auto(model):
            chosen = choose_auto_model(offered)  # the model the questions will go to
            none = "the server offers no chat model" if offered else "the server offers no model"
            report.add(setting, chosen is not None, f"auto: {chosen or none}",
                       "" if chosen else "load a chat model in the LLM server, then run again.")
        elif model in offered:
            report.add(setting, True, f"{model} offered")
        elif llm.is_lm_studio():
            report.add(setting, True, f"{model} not loaded yet; the run loads it with `{load_command(model)}`")
        else:
            report.add(setting, False, f"the LLM server does not offer {model} (it offers: "
                       f"{', '.join(offered[:5]) or 'nothing'})", f"set {setting} to one of those, or load {model}.", ConfigError)


def _check_youtube(report: PreflightReport, steps: Sequence[Step], settings: Any) -> None:
    from common.publish.auth import check_credentials

    for step in steps:
        if step.basename != "12.youtube.py":
            continue
        status = check_credentials(settings, step.pipeline_dir, save=False)  # a check rewrites nothing
        if status.ok:
            report.add("YouTube", True, "authorised: the run will upload")
        elif status.state == "not_configured":
            report.add("YouTube", True, "not set up: 12.youtube.py writes a dry-run upload manifest")
        else:
            report.add("YouTube", False, status.message, kind=ConfigError)
        return


def run_preflight(pipeline_dir: Path, steps: Sequence[Step], settings: Any, choice: Any,
                  manager: Any) -> PreflightReport:
    """Every check the scripts in `steps` need; `manager` is the run's ServiceManager (may start ComfyUI)."""
    names = [s.basename for s in steps]
    span = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}" if names else "nothing"
    report = PreflightReport(f"preflight for {Path(pipeline_dir).name}: {len(steps)} script(s) ({span})")
    report.add("engine", True, choice.reason.removeprefix("engine: "))  # the column already says "engine"
    dirs = _check_inputs(report, steps)
    _check_disk(report, Path(pipeline_dir), steps, dirs)
    _check_ffmpeg(report)
    if choice.media == "offline" and "2.story.py" in names:
        _check_offline_speech(report)
    if choice.media == "comfyui" and manager.comfyui is not None and any(s.needs_comfyui for s in steps):
        _check_comfyui(report, steps, settings, manager)
    if choice.text == "llm" and manager.llm is not None and any(s.needs_llm for s in steps):
        _check_llm(report, steps, settings, manager, judged=choice.media == "comfyui")
    _check_youtube(report, steps, settings)
    return report
