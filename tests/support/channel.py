"""A small pipeline for channel-mode tests: real numbered scripts (common.run.runner) that checkpoint one
item per story line, can be held at a checkpoint, and upload (or find the quota spent) like step 12."""
from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["1.make.py", "2.hold.py", "12.youtube.py"]

_HEADER = r'''
import json, os, time
from common.run.runner import Script

def event(ctx, **data):
    data.update(script=os.path.basename(__file__), story=ctx.pipeline_dir.parent.name, pid=os.getpid())
    with open(os.environ["TEST_EVENTS"], "a") as fh:
        fh.write(json.dumps(data) + "\n")

def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [path]
'''

# One item per line of the story copy the queue put in the workspace.
MAKE = _HEADER + r'''
script = Script(__file__, "one item per story line")

def main(ctx):
    story = ctx.pipeline_dir.parent / "gen.audio" / "input" / "1.story.txt"
    lines = [l for l in story.read_text().splitlines() if l.strip()]
    keys = [f"line_{n}" for n in range(1, len(lines) + 1)]
    ctx.each(keys, label="lines", key=lambda k: k, fingerprint=lambda k: lines[keys.index(k)],
             work=lambda k: (write(ctx.output_dir / f"{k}.txt", lines[keys.index(k)]), {}))
    event(ctx, kind="made", items=keys)

script.run(main)
'''

# Checkpoints "first", then, while the file TEST_HOLD names exists, waits (for a signal) before "second".
HOLD = _HEADER + r'''
script = Script(__file__, "two items, held between them while TEST_HOLD exists")

def work(ctx, key):
    hold = os.environ.get("TEST_HOLD", "/nonexistent")
    if key == "second" and os.path.exists(hold):
        event(ctx, kind="holding")
        while os.path.exists(hold):
            time.sleep(0.05)
    return write(ctx.output_dir / f"{key}.txt", key), {}

def main(ctx):
    ctx.each(["first", "second"], label="hold", key=lambda k: k, fingerprint=lambda k: k,
             work=lambda k: work(ctx, k))
    event(ctx, kind="held")

script.run(main)
'''

# Step 12's part in the queue: exit 7 (QuotaError) while the file TEST_QUOTA names exists.
UPLOAD = _HEADER + r'''
from common.run.errors import QuotaError
script = Script(__file__, "upload, or find the quota spent")

def main(ctx):
    if os.path.exists(os.environ.get("TEST_QUOTA", "/nonexistent")):
        event(ctx, kind="quota")
        raise QuotaError("YouTube's daily upload quota is spent; run again after it resets.")
    ctx.each(["video"], label="upload", key=lambda k: k, fingerprint=lambda k: k,
             work=lambda k: (write(ctx.output_dir / "uploaded.txt", ctx.pipeline_dir.parent.name), {"video_id": "v"}))
    event(ctx, kind="uploaded")

script.run(main)
'''

GENERATE = r'''
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from common.run.orchestrator import run_pipeline
sys.exit(run_pipeline(Path(__file__).resolve().parent, scripts={scripts!r}, script_args={{}}, argv=sys.argv[1:]))
'''


def make_channel_pipeline(root: Path) -> Path:
    """root/gen.test: the three scripts above and its generate.py."""
    pipe = root / "gen.test"
    (pipe / "scripts").mkdir(parents=True)
    for name, text in zip(SCRIPTS, (MAKE, HOLD, UPLOAD)):
        (pipe / "scripts" / name).write_text(text, encoding="utf-8")
    (pipe / "generate.py").write_text(GENERATE.format(repo=str(REPO), scripts=SCRIPTS), encoding="utf-8")
    return pipe


def write_stories(folder: Path, stories: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in stories.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def channel_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Offline, with the repo importable and the scripts' events in tmp_path/events.jsonl."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "COMFYUI_", "LM_STUDIO_"))}
    env.update(PIPELINE_ENGINE="offline", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               TEST_EVENTS=str(tmp_path / "events.jsonl"), TEST_HOLD=str(tmp_path / "hold"),
               TEST_QUOTA=str(tmp_path / "quota"))
    env.update(extra)
    return env


def events(tmp_path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    if not path.is_file():
        return []
    found = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e for e in found if kind is None or e["kind"] == kind]


def channel_state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "channel.state.json").read_text(encoding="utf-8"))["stories"]


def scripted_clock(times: list[datetime]) -> Callable[[], datetime]:
    """A clock that answers the given times in turn (the last one from then on)."""
    answers: Iterator[datetime] = iter(times)
    last = [times[0]]

    def now() -> datetime:
        last[0] = next(answers, last[0])
        return last[0]

    return now
