"""The run stamp: lets `generate.py` skip scripts that provably have nothing to do.

Why: a finished pipeline run again costs one Python start-up plus imports per script (seconds
for gen.audio's twelve) only for each script to find its checkpoints complete. After a run in
which every selected script exited 0, the orchestrator records (atomically, in
`output/tracking/orchestrator.state.json`) the steps it ran and a fingerprint of everything
that can change what they do:

- context: every setting's resolved value (environment + settings.toml + defaults), the
  other environment variables the scripts read, the engine chosen for the run, the Python
  that runs them, and the stat (size, mtime_ns) of every file of `common/` and of each script;
- trees: (relative path, size, mtime_ns) of every file under each pipeline folder the chain
  can read or write (its own, those of the scripts it runs, and the sibling gen.* folders
  scripts read from), except what the run itself writes when nothing is done: log.txt,
  *.log, output/report.md/html, __pycache__ and this stamp.

Why the skip is sound: the recorded run left the project in state S, and each of its steps is
a checkpointed script that, rerun at S with the same context, finds everything done. So while
the current fingerprint equals the recorded one, each recorded step is a no-op at S and leaves
S unchanged; any sequence of them is a no-op too. Hence a run may skip the *leading* steps of
its selection that belong to the recorded run; the first other step runs, and from there on
everything runs, since the state may change. A step whose arguments redo work on purpose
(--force-start, --disable-resumable) is never skipped, nor is anything after `generate.py
--force-start`. Stat instead of content hashes: a touched file reruns, which is cheap, and
a no-op run stays in milliseconds.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from common.config.paths import CODE_FOLDERS, PIPELINES, REPO_ROOT, WORKSPACE_ENV
from common.state.atomic import atomic_write_json
from common.state.checkpoints import fingerprint

STAMP_NAME = "orchestrator.state.json"
STAMP_VERSION = 1
FORCING_ARGS = ("--force-start", "--disable-resumable")  # a step with these redoes work on every run
# Environment variables scripts read that are not settings (common/media/ffmpeg.py, common/run/runner.py).
EXTRA_ENV = ("FFMPEG_BINARY", "PIPELINE_DEBUG")
EXTRA_ENV_PREFIXES = ("PIPELINE_", "COMFYUI_", "LM_STUDIO_", "YOUTUBE_")
COMMON_DIR = REPO_ROOT / "common"

Listing = dict[str, list[int]]


def stamp_path(pipeline_dir: Path) -> Path:
    return Path(pipeline_dir) / "output" / "tracking" / STAMP_NAME


def step_id(step: Any) -> str:
    """What makes a step the same step: its name, its arguments and the services it gets."""
    return json.dumps([step.name, list(step.args), bool(step.needs_comfyui), bool(step.needs_llm)])


def forcing(step: Any) -> bool:
    return any(arg in FORCING_ARGS for arg in step.args)


def tree_roots(pipeline_dir: Path, steps: Sequence[Any]) -> list[Path]:
    """Every pipeline folder the chain touches: its own, its scripts', and the gen.* siblings they read.
    In a story workspace those are the workspace's folders, plus the code the scripts read from the
    pipeline folders (scripts/, workflow/, voices/), not the pipeline folders' own story data."""
    pipeline_dir = Path(pipeline_dir).resolve()
    roots = [pipeline_dir] + [Path(s.pipeline_dir).resolve() for s in steps]
    roots += [pipeline_dir.parent / name for name in PIPELINES if (pipeline_dir.parent / name).is_dir()]
    for code in dict.fromkeys(s.path.resolve().parent.parent for s in steps):
        if code not in roots:
            roots += [code / part for part in CODE_FOLDERS if (code / part).is_dir()]
    return list(dict.fromkeys(roots))


def _excluded(rel: str, name: str) -> bool:
    """What the orchestrator itself writes on a run in which no script does anything."""
    return (rel in ("log.txt", "output/report.md", "output/report.html", "output/report.json",
                    f"output/tracking/{STAMP_NAME}", "approved.txt",  # approved.txt: the dailies' marks, no input
                    "output/run.lock", "output/run.lock.guard")  # common/run/lock.py
            or name.endswith((".log", ".pyc")))


def snapshot(root: Path) -> Listing:
    """(size, mtime_ns) of every file under root, by POSIX relative path; symlinks are followed once."""
    listing: Listing = {}
    seen: set[tuple[int, int]] = set()

    def walk(directory: Path, prefix: str) -> None:
        try:
            info = directory.stat()
            if (info.st_dev, info.st_ino) in seen:
                return
            seen.add((info.st_dev, info.st_ino))
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            rel = prefix + entry.name
            try:
                if entry.is_dir():
                    if entry.name != "__pycache__":
                        walk(Path(entry.path), rel + "/")
                    continue
                if _excluded(rel, entry.name):
                    continue
                st = entry.stat()
                listing[rel] = [st.st_size, st.st_mtime_ns]
            except OSError:  # vanished meanwhile or a dangling link: it is recorded as absent
                listing[rel] = [-1, 0]

    walk(Path(root), "")
    return listing


def snapshot_trees(roots: Iterable[Path]) -> dict[str, Listing]:
    return {str(root): snapshot(root) for root in roots}


def _file_stat(path: Path) -> list[int]:
    try:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return [-1, 0]


def context_parts(settings: Any, engine: tuple[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Digests of what, besides the files, decides what a step does; kept apart to say which changed."""
    environ = os.environ if environ is None else environ
    values = dict(getattr(settings, "values", {}) or {})
    # PIPELINE_WORKSPACE only says where the stamp itself is: a story run by the queue or alone is the same run.
    env = {k: v for k, v in environ.items()
           if (k in EXTRA_ENV or k.startswith(EXTRA_ENV_PREFIXES)) and k != WORKSPACE_ENV}
    # Files a setting names outside the project (e.g. YOUTUBE_TOKEN=/home/me/token.json).
    # A value given as ~/... is read expanded (common/publish/auth.py), so it is fingerprinted expanded.
    named = {k: _file_stat(Path(os.path.expanduser(v))) for k, v in values.items()
             if isinstance(v, str) and v and os.path.isabs(os.path.expanduser(v))
             and os.path.isfile(os.path.expanduser(v))}
    code = {str(p.relative_to(COMMON_DIR)): _file_stat(p) for p in sorted(COMMON_DIR.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    return {
        # fingerprint(*parts) digests the list of parts: the same digests the stamp always held
        # (settings values are never Paths, which fingerprint would hash by content).
        "settings": fingerprint(values, env, named),
        "engine": fingerprint(*engine),
        "code": fingerprint(sys.executable, sys.version, code),
    }


@dataclass
class Stamp:
    finished_at: str
    steps: list[str]
    context: dict[str, str]
    trees: dict[str, Listing] = field(default_factory=dict)


def load_stamp(pipeline_dir: Path) -> Stamp | None:
    """The last record, or None when there is none or it is unreadable (then everything just runs)."""
    try:
        raw = json.loads(stamp_path(pipeline_dir).read_text(encoding="utf-8"))
        if raw.get("version") != STAMP_VERSION:
            return None
        return Stamp(str(raw["finished_at"]), [str(s) for s in raw["steps"]], dict(raw["context"]),
                     {str(k): dict(v) for k, v in raw["trees"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_stamp(pipeline_dir: Path, stamp: Stamp) -> None:
    atomic_write_json(stamp_path(pipeline_dir), {
        "version": STAMP_VERSION, "finished_at": stamp.finished_at, "steps": stamp.steps,
        "context": stamp.context, "trees": stamp.trees,
    })


def _tree_changes(old: Mapping[str, Listing], new: Mapping[str, Listing], limit: int = 3) -> list[str]:
    changed: list[str] = []
    for root in sorted(set(old) | set(new)):
        a, b = old.get(root, {}), new.get(root, {})
        name = Path(root).name
        for rel in sorted(set(a) | set(b)):
            if a.get(rel) != b.get(rel):
                what = "added" if rel not in a else "deleted" if rel not in b else "changed"
                changed.append(f"{name}/{rel} {what}")
                if len(changed) >= limit:
                    return changed + ["..."]
    return changed


@dataclass
class SkipPlan:
    """Which selected steps are skipped, since when they are up to date, and why the rest runs."""

    skipped: list[Any]
    since: str | None
    reason: str

    @property
    def positions(self) -> set[int]:
        return {s.position for s in self.skipped}


def plan_skips(pipeline_dir: Path, steps: Sequence[Any], context: Mapping[str, str], *, force: bool,
               trees: Mapping[str, Listing] | None = None) -> SkipPlan:
    """The leading steps of `steps` the stamp proves to be no-ops (see the module docstring)."""
    if force:
        return SkipPlan([], None, "--force-start: every selected script runs")
    stamp = load_stamp(pipeline_dir)
    if stamp is None:
        return SkipPlan([], None, "no record of a finished run yet")
    changed = [k for k in ("settings", "engine", "code") if stamp.context.get(k) != context.get(k)]
    if changed:
        return SkipPlan([], None, f"{' and '.join(changed)} changed since the run of {stamp.finished_at}")
    if trees is None:  # every folder recorded then or read now: a file of either may matter
        roots = list(dict.fromkeys([*tree_roots(pipeline_dir, steps), *map(Path, stamp.trees)]))
        trees = snapshot_trees(roots)
    differences = _tree_changes(stamp.trees, trees)
    if differences:
        return SkipPlan([], None, f"files changed since the run of {stamp.finished_at}: {', '.join(differences)}")
    known = set(stamp.steps)
    skipped = []
    for step in steps:
        if step_id(step) not in known or forcing(step):
            break
        skipped.append(step)
    if len(skipped) == len(steps):
        return SkipPlan(skipped, stamp.finished_at, "")
    first = steps[len(skipped)]
    why = ("redoes its work on every run (its arguments include " + ", ".join(a for a in first.args if a in FORCING_ARGS)
           + ")") if forcing(first) else f"was not part of the run of {stamp.finished_at}"
    return SkipPlan(skipped, stamp.finished_at if skipped else None, f"{first.name} {why}")


def record_run(pipeline_dir: Path, steps: Sequence[Any], context: Mapping[str, str], finished_at: str,
               previous: SkipPlan | None = None) -> None:
    """After a run in which every selected step succeeded: the state now is a no-op for all of them.

    When the whole selection was skipped nothing changed, and the older (possibly larger)
    record stays as it is.
    """
    if previous is not None and len(previous.skipped) == len(steps) and steps:
        return
    trees = snapshot_trees(tree_roots(pipeline_dir, steps))
    save_stamp(pipeline_dir, Stamp(finished_at, [step_id(s) for s in steps], dict(context), trees))
