"""The morning report of a queue of stories, `DIR/channel.report.md` and `.html`, and `--status --stories`.

One row per story: its state, when it last ran and for how long, its failed items, its video link,
its scheduled time and a link to its own report. Everything but the queue's record of how each
run ended (common.channel.state) is read from the stories' checkpoints, the dry-run manifests and
the schedule, so the report written at the end of a run and `--status` during one tell the same.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Callable, Sequence

from common.channel.schedule import read_slots
from common.channel.state import FINISHED, RUNNING, WAITING, ChannelState
from common.channel.stories import Story
from common.run.progress import format_duration
from common.run.report import youtube_links, count_step, state_path
from common.run.steps import Step
from common.state.atomic import atomic_write_text
from common.state.stamp import load_stamp, step_id

REPORT_NAME = "channel.report"
FAILED_SHOWN = 3  # failed items named per story; its own report lists them all


@dataclass
class Row:
    name: str
    state: str
    reason: str = ""
    when: str = ""
    failed: list[str] = field(default_factory=list)
    video: str = ""
    scheduled: str = ""
    report: str = ""  # the story's own report, relative to the stories folder


def _scheduled(story: Story, steps: Sequence[Step], slots: dict) -> str:
    """publishAt as the dry-run manifest carries it, else the schedule's recorded slot."""
    for step in steps:
        if step.basename != "12.youtube.py":
            continue
        try:
            manifest = json.loads((step.pipeline_dir / "output" / "upload.manifest.json").read_text(encoding="utf-8"))
            for request in manifest.get("requests", []):
                if request.get("item") == "video":
                    at = ((request.get("body") or {}).get("status") or {}).get("publishAt")
                    if at:
                        return f"{at} (dry run)"
        except (OSError, ValueError, AttributeError):
            pass
    slot = slots.get(story.name)
    return slot.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if slot else ""


def _state(story: Story, record_state: str, steps: Sequence[Step], queue_running: bool) -> str:
    if record_state == RUNNING and not queue_running:
        return "interrupted (the run was killed; the next run continues it)"
    if record_state != WAITING:
        return record_state
    data_dirs = {s.pipeline_dir for s in steps}
    stamps = [load_stamp(d) for d in data_dirs]
    if steps and any(st is not None and {step_id(s) for s in steps} <= set(st.steps) for st in stamps):
        return FINISHED
    return "started" if any(state_path(s).is_file() for s in steps) else WAITING


def story_rows(folder: Path, pipeline: str, stories: Sequence[Story], steps_for: Callable[[Path], list[Step]],
               queue_running: bool) -> list[Row]:
    """Every story's row, from the queue's record and the story's checkpoints only; `pipeline` is the one the
    queue runs (gen.video), whose report each story's row links."""
    state = ChannelState.load(folder, pipeline)
    slots = read_slots(folder)
    rows = []
    for story in stories:
        steps = steps_for(story.workspace) if story.workspace.is_dir() else []
        record = state.get(story.name)
        row = Row(story.name, _state(story, record.state, steps, queue_running), record.reason)
        if record.started_at:
            row.when = f"{record.started_at} -> {record.ended_at or '...'}" + (
                f" ({format_duration(record.took, always_hours=True)})" if record.ended_at else "")
        for step in steps:
            if state_path(step).is_file():
                row.failed += [f"{step.name} {key}: {error}" for key, error in count_step(step).failed_items]
        row.video = "; ".join(youtube_links(steps))
        row.scheduled = _scheduled(story, steps, slots)
        own = story.workspace / pipeline / "output" / "report.md"
        if own.is_file():
            row.report = Path(os.path.relpath(own, folder)).as_posix()
        rows.append(row)
    return rows


def _cells(row: Row) -> list[str]:
    failed = "; ".join(row.failed[:FAILED_SHOWN]) + (f" (+{len(row.failed) - FAILED_SHOWN} more)"
                                                      if len(row.failed) > FAILED_SHOWN else "")
    state = row.state + (f": {row.reason}" if row.reason and row.state not in (FINISHED, WAITING) else "")
    return [row.name, state, row.when or "-", failed or "-", row.video or "-", row.scheduled or "-"]


HEADINGS = ["story", "state", "last run", "failed items", "video", "scheduled (publishAt)"]


def render_markdown(title: str, rows: Sequence[Row], notes: Sequence[str]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = [f"# {title}", "", "| " + " | ".join(HEADINGS + ["report"]) + " |",
           "|" + "---|" * (len(HEADINGS) + 1)]
    for row in rows:
        link = f"[report]({row.report})" if row.report else "-"
        out.append("| " + " | ".join(cell(c) for c in _cells(row)) + f" | {link} |")
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def render_html(title: str, rows: Sequence[Row], notes: Sequence[str]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADINGS + ["report"])
    body = []
    for row in rows:
        link = f'<a href="{esc(row.report)}">report</a>' if row.report else "-"
        body.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _cells(row)) + f"<td>{link}</td></tr>")
    extra = ("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>") if notes else ""
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>" + esc(title) + "</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:.3em .5em;text-align:left;vertical-align:top}</style></head><body>"
            f"<h1>{esc(title)}</h1><table><tr>{head}</tr>{''.join(body)}</table>{extra}</body></html>\n")


def write_channel_report(folder: Path, title: str, rows: Sequence[Row], notes: Sequence[str]) -> Path:
    """DIR/channel.report.md and .html, each written atomically; returns the Markdown path."""
    atomic_write_text(Path(folder) / f"{REPORT_NAME}.html", render_html(title, rows, notes))
    return atomic_write_text(Path(folder) / f"{REPORT_NAME}.md", render_markdown(title, rows, notes))


def status_lines(folder: Path, rows: Sequence[Row], notes: Sequence[str]) -> list[str]:
    """`--status --stories DIR`: the report's rows as lines."""
    out = [f"{folder}: {len(rows)} stor{'y' if len(rows) == 1 else 'ies'}, status from the checkpoints"]
    for row in rows:
        cells = dict(zip(HEADINGS, _cells(row)))
        out.append(f"  {row.name}: {cells['state']}")
        for heading in HEADINGS[2:]:
            if cells[heading] != "-":
                out.append(f"      {heading}: {cells[heading]}")
        if row.report:
            out.append(f"      report: {folder / row.report}")
    out += [f"  note: {n}" for n in notes]
    return out
