"""What a night did, read back from the checkpoints: `generate.py --status` and output/report.md.

Why from the checkpoints: they are the one record that survives a kill -9 or a power cut
(each item is written atomically the moment it finishes), so the status of a half-done run
and the report of a finished one tell the same truth. Entries finished inside this run's
time window were made by it; older ones were already there. Keys with `#` are a script's
intermediate bookkeeping, not items, and are skipped.
"""
from __future__ import annotations

import html
import math
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from common.config.paths import WORKSPACE_ENV, code_dir, workspace_of
from common.run.progress import format_duration
from common.services.processes import split_command
from common.state.atomic import atomic_write_json, atomic_write_text
from common.state.checkpoints import read_entries, state_file

if TYPE_CHECKING:
    from common.run.steps import Step
OUTPUT_NAMES = ("final.wav", "final.mp4", "final_sd.mp4", "shorts", "thumbnail.png", "review.html",
                "upload.manifest.json")
_DATA_KEYS = ("seed", "model", "workflow")  # data fields worth a line in the report
FAILED_LINES = 5  # failed items --status lists per script (the report lists them all)


def state_path(step: Step) -> Path:
    """A script's checkpoints live in its own pipeline, also when another pipeline runs it."""
    return state_file(step.pipeline_dir, step.path.stem)


@dataclass
class Counts:
    """Items of one script: done (of which preview and made since `since`), failed, left (None: unknown)."""

    done: int = 0
    preview: int = 0
    failed: int = 0
    made: int = 0
    took: float = 0.0
    left: int | None = None
    details: dict[str, list[str]] = field(default_factory=dict)
    failed_items: list[tuple[str, str]] = field(default_factory=list)  # (item key, the script's sentence)
    reduced_items: list[str] = field(default_factory=list)  # made at reduced size after running out of memory

    @property
    def cached(self) -> int:
        return self.done - self.made


def _expected_story_keys(pipeline_dir: Path) -> set[str] | None:
    """2.story.py's items: one per CHUNK_SIZE story lines ("<first>_<last>") plus the joined story.wav."""
    from common.run.errors import PipelineError
    from common.formats.story import read_story
    from common.config.paths import story_path
    from common.config.settings import load_settings

    try:
        count = len(read_story(story_path(pipeline_dir)).utterances)
        size = int(load_settings(pipeline_dir).CHUNK_SIZE)
    except (PipelineError, ValueError, TypeError):
        return None
    if size < 1:
        return None
    keys = {f"{start + 1}_{min(start + size, count)}" for start in range(0, count, size)}
    return keys | {"story.wav"}


def _collect_details(details: dict[str, list[str]], data: Any) -> None:
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if any(word in key.lower() for word in _DATA_KEYS) and isinstance(value, (str, int, float)):
            seen = details.setdefault(key, [])
            if str(value) not in seen:
                seen.append(str(value))


def _error_of(entry: dict[str, Any]) -> str:
    data = entry.get("data")
    error = data.get("error") if isinstance(data, dict) else None
    text = " ".join(str(error).split()) if error else ""
    return text or "no reason recorded"


def _in_place(pipeline_dir: Path) -> tuple[str, str]:
    """(the pipeline folder to cd to, the environment a command there needs): a story workspace's folder
    is run from the pipeline folder with PIPELINE_WORKSPACE naming the workspace."""
    workspace = workspace_of(Path(pipeline_dir))
    env = f"{WORKSPACE_ENV}={shlex.quote(str(workspace))} " if workspace is not None else ""
    return shlex.quote(str(code_dir(Path(pipeline_dir)))), env


def redo_commands(pipeline_dir: Path, step: Step) -> list[str]:
    """How to redo just a script's failed items: its finished items are kept, failed ones retried."""
    direct = shlex.join(["python", step.basename, *step.args])
    where, env = _in_place(pipeline_dir)
    return [f"cd {where} && {env}python generate.py --only {step.position}",
            f"or, with the servers it needs running: cd {shlex.quote(str(step.path.parent))} && {env}{direct}"]


def redo_reduced_command(pipeline_dir: Path, step: Step) -> str:
    """How to redo, at full size, the items made smaller after running out of memory: each script
    redoes exactly its `reduced` items, and what was made from them follows (their files changed)."""
    where, env = _in_place(pipeline_dir)
    return f"cd {where} && {env}REDO_REDUCED=1 python generate.py --from {step.position}"


def count_step(step: Step, since: str | None = None) -> Counts:
    """The checkpoint counts of one step; `since` (checkpoints.TIME_FORMAT) marks entries made by this run."""
    entries = read_entries(state_path(step))
    counts = Counts()
    for key, entry in entries.items():
        took = entry.get("took")
        if isinstance(took, (int, float)) and math.isfinite(took):
            counts.took += float(took)
        if entry.get("status", "done") != "done":
            counts.failed += 1
            counts.failed_items.append((key, _error_of(entry)))
            continue
        counts.done += 1
        counts.preview += bool(entry.get("preview"))
        if isinstance(entry.get("data"), dict) and entry["data"].get("reduced"):
            counts.reduced_items.append(key)
        if since is not None and str(entry.get("finished_at", "")) >= since:
            counts.made += 1
        _collect_details(counts.details, entry.get("data"))
    if step.basename == "2.story.py":
        expected = _expected_story_keys(step.pipeline_dir)
        if expected is not None:
            done = {k for k, v in entries.items() if v.get("status", "done") == "done"}
            counts.left = len(expected - done)
    return counts


def status_lines(pipeline_dir: Path, steps: Sequence[Step]) -> list[str]:
    """`generate.py --status`: one row per script, from its checkpoints alone (no server is asked)."""
    width = max((len(s.name) for s in steps), default=6)
    out = [f"{Path(pipeline_dir).name}: status from the checkpoints (output/tracking/*.state.json)",
           f"      {'script':<{width}}  {'done':>5} {'preview':>7} {'failed':>6} {'left':>5}  {'time':>8}"]
    for step in steps:
        if not state_path(step).is_file():
            out.append(f"  {step.position:3d} {step.name:<{width}}  {'-':>5} {'-':>7} {'-':>6} {'?':>5}  {'-':>8}"
                       "  not started")
            continue
        c = count_step(step)
        left = "?" if c.left is None else str(c.left)
        out.append(f"  {step.position:3d} {step.name:<{width}}  {c.done:>5} {c.preview:>7} {c.failed:>6} {left:>5}"
                   f"  {format_duration(c.took, always_hours=True):>8}")
    out.append("  left '?': this script's item count is only known while it runs")
    for step in steps:
        failed = count_step(step).failed_items if state_path(step).is_file() else []
        for key, error in failed[:FAILED_LINES]:
            out.append(f"  failed: {step.name} {key}: {error}")
        if len(failed) > FAILED_LINES:
            out.append(f"  failed: {step.name}: {len(failed) - FAILED_LINES} more (see output/report.md)")
        if failed:
            out.append(f"  redo them: {redo_commands(Path(pipeline_dir), step)[0]}")
    out += _reduced_lines(pipeline_dir, steps, "  ")
    return out


def _reduced_lines(pipeline_dir: Path, steps: Sequence[Step], indent: str = "") -> list[str]:
    """The items made at reduced size (out of memory), per script, and the one command that redoes them."""
    out: list[str] = []
    first: Step | None = None
    for step in steps:
        reduced = count_step(step).reduced_items if state_path(step).is_file() else []
        if reduced:
            first = first or step
            out.append(f"{indent}reduced: {step.name}: {len(reduced)} item(s) made at reduced size after running out "
                       f"of GPU memory: {', '.join(reduced[:8])}{' ...' if len(reduced) > 8 else ''}")
    if first is not None:
        out.append(f"{indent}redo them at full size: {redo_reduced_command(Path(pipeline_dir), first)}")
    return out


# --------------------------------------------------------------------------- morning report


@dataclass
class StepResult:
    step: Step
    code: int | None  # None: did not run
    took: float = 0.0
    skipped_since: str | None = None  # the run stamp proved it a no-op (up to date since then)
    restarts: int = 0  # times its server was restarted and it ran again
    started_at: str = ""  # checkpoints.TIME_FORMAT, when it started (the morning page's timeline)


@dataclass
class RunRecord:
    """What the orchestrator knows when a run ends."""

    pipeline_dir: Path
    steps: Sequence[Step]  # the selected steps, in order
    results: list[StepResult]
    started_at: str  # checkpoints.TIME_FORMAT, local time, as checkpoints write it
    ended_at: str
    code: int
    summary: str
    engine: str
    preflight: list[str] = field(default_factory=list)


def _outputs(pipeline_dirs: Sequence[Path]) -> list[Path]:
    found = []
    for pipeline_dir in pipeline_dirs:
        for name in OUTPUT_NAMES:
            path = pipeline_dir / "output" / name
            if path.is_file() or (path.is_dir() and any(path.iterdir())):
                found.append(path)
    return found


def youtube_links(steps: Sequence[Step]) -> list[str]:
    links = []
    for step in steps:
        if step.basename != "12.youtube.py":
            continue
        for key, entry in read_entries(state_path(step)).items():
            data = entry.get("data") or {}
            if entry.get("status", "done") == "done" and data.get("video_id"):
                url = data.get("url") or f"https://youtu.be/{data['video_id']}"
                privacy = f" ({data['privacy']})" if data.get("privacy") else ""
                links.append(f"{key}: {url}{privacy}")
    return links


def next_command(record: RunRecord) -> str | None:
    """The command that continues the night's work, or None when everything ran."""
    failed = next((r for r in record.results if r.code not in (None, 0)), None)
    unrun = next((r for r in record.results if r.code is None), None)
    target = failed or unrun
    if record.code == 0 and target is None:
        return None
    where, env = _in_place(record.pipeline_dir)
    env = f"cd {where} && {env}" if env else ""  # a story workspace's run is started from the pipeline folder
    if target is None:  # stopped before any step (preflight or a service)
        return f"{env}python generate.py --check   (then run generate.py again)"
    return f"{env}python generate.py --from {target.step.position}   ({target.step.name})"


def build_report(record: RunRecord) -> list[tuple[str, list[str]]]:
    """Sections of the report as (heading, lines); rendered to Markdown and HTML alike."""
    dirs = list(dict.fromkeys([Path(record.pipeline_dir)] + [s.pipeline_dir for s in record.steps]))
    outcome = "finished" if record.code == 0 else f"stopped with exit {record.code}"
    sections: list[tuple[str, list[str]]] = [
        ("Run", [f"pipeline: {Path(record.pipeline_dir).name} ({record.pipeline_dir})",
                 f"from {record.started_at} to {record.ended_at}: {outcome}",
                 record.summary, record.engine]),
    ]
    rows = []
    details: dict[str, list[str]] = {}
    failures: list[str] = []
    for result in record.results:
        step = result.step
        if result.code is None:
            rows.append(f"{step.position}. {step.name}: not run")
            continue
        c = count_step(step, record.started_at)
        left = "" if c.left is None else f", {c.left} left"
        if result.skipped_since is not None:
            rows.append(f"{step.position}. {step.name}: up to date since {result.skipped_since}, skipped; "
                        f"items: {c.done} already done, {c.failed} failed{left}")
        else:
            state = "ok" if result.code == 0 else f"FAILED (exit {result.code})"
            restarted = f" after {result.restarts} server restart(s)" if result.restarts else ""
            took = format_duration(result.took, always_hours=True)
            rows.append(f"{step.position}. {step.name}: {state}{restarted} in {took}; items: "
                        f"{c.made} made, {c.cached} already done, {c.failed} failed{left}"
                        + (f" ({c.preview} previews)" if c.preview else ""))
        if c.failed_items:
            failures += [f"{step.name} {key}: {error}" for key, error in c.failed_items]
            commands = redo_commands(Path(record.pipeline_dir), step)
            failures += [f"redo the {len(c.failed_items)} failed item(s) of {step.name}: {commands[0]}", commands[1]]
        for key, values in c.details.items():
            merged = details.setdefault(f"{step.path.stem}: {key}", [])
            merged.extend(v for v in values if v not in merged)
    sections.append(("Steps", rows or ["no script ran"]))
    if failures:
        sections.append(("Failed items", failures))
    reduced = _reduced_lines(Path(record.pipeline_dir), [r.step for r in record.results if r.code is not None])
    if reduced:
        sections.append(("Made at reduced size", reduced))
    if record.preflight:
        sections.append(("Preflight", [line.strip() for line in record.preflight]))
    if details:
        sections.append(("Seeds, models and workflows",
                         [f"{k} = {', '.join(v[:8])}{' ...' if len(v) > 8 else ''}" for k, v in details.items()]))
    outputs = _outputs(dirs)
    sections.append(("Outputs", [str(p) for p in outputs] or ["none yet"]))
    links = youtube_links(record.steps)
    if links:
        sections.append(("YouTube", links))
    command = next_command(record)
    sections.append(("Next", [f"run: {command}" if command else "nothing left to run"]))
    return sections


def render_markdown(title: str, sections: list[tuple[str, list[str]]]) -> str:
    out = [f"# {title}", ""]
    for heading, lines in sections:
        out += [f"## {heading}", ""] + [f"- {line}" for line in lines if line] + [""]
    return "\n".join(out)


def render_html(title: str, sections: list[tuple[str, list[str]]]) -> str:
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"]
    for heading, lines in sections:
        items = "".join(f"<li>{esc(line)}</li>" for line in lines if line)
        body.append(f"<h2>{esc(heading)}</h2><ul>{items}</ul>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>" + esc(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}li{margin:.2em 0}</style>"
            "</head><body>" + "".join(body) + "</body></html>\n")


def report_data(record: RunRecord) -> dict[str, Any]:
    """The run as data (output/report.json) for the morning page's timeline: per step when it started,
    how long it took, and its items made / already done / failed, with the failed items and their redo."""
    steps = []
    for result in record.results:
        step = result.step
        counts = count_step(step, record.started_at) if result.code is not None else Counts()
        steps.append({
            "position": step.position, "name": step.name, "script": step.path.stem, "code": result.code,
            "started_at": result.started_at, "took": round(result.took, 3), "skipped_since": result.skipped_since,
            "restarts": result.restarts, "made": counts.made, "cached": counts.cached, "failed": counts.failed,
            "preview": counts.preview, "left": counts.left,
            "failed_items": [{"key": key, "error": error} for key, error in counts.failed_items],
            "redo": redo_commands(Path(record.pipeline_dir), step)[0] if counts.failed_items else None,
        })
    return {"version": 1, "pipeline": Path(record.pipeline_dir).name, "started_at": record.started_at,
            "ended_at": record.ended_at, "code": record.code, "summary": record.summary, "engine": record.engine,
            "steps": steps, "next": next_command(record)}


def write_report(record: RunRecord) -> Path:
    """output/report.md, report.html and report.json, each written atomically; returns the Markdown path."""
    title = f"{Path(record.pipeline_dir).name} run of {record.started_at}"
    sections = build_report(record)
    out_dir = Path(record.pipeline_dir) / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "report.json", report_data(record))
    atomic_write_text(out_dir / "report.html", render_html(title, sections))
    md = out_dir / "report.md"
    atomic_write_text(md, render_markdown(title, sections))
    return md


def notify(command: str, report: Path, say: Callable[[str], None], timeout: float = 60.0) -> None:
    """Run NOTIFY_CMD with the report's path as last argument; a failure is said, never raised."""
    try:
        argv = split_command(command) + [str(report)]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        say(f"notify: NOTIFY_CMD {command!r} could not run ({exc}); the report is at {report}")
        return
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        say(f"notify: NOTIFY_CMD exited with {done.returncode} {tail[0]}".rstrip())
