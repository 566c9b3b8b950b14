"""Issue 17's night, for real: gen.audio's twelve scripts on a queue of three short stories, offline,
one of them broken, SIGKILLed in the middle of the second story and run again."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support.channel import channel_state, write_stories
from tests.support.project import copy_pipeline, env_for, kill_tree

pytestmark = pytest.mark.timeout(420)

STORIES = {
    "a": "[narrator] The boat left the harbour at dawn.\n[female_ada] I will be back before the storm.\n"
         "[narrator] The gulls followed her out.\n",
    "b": "[narrator] The storm came early that night.\n[male_bram] Light the lamp, the boat is late.\n"
         "[narrator] And the lamp was lit.\n",
    "c": "[narrator The third story forgot to close its tag.\n",
}


def _entries(folder: Path, story: str) -> dict[str, dict]:
    """Every checkpoint of a story's workspace: (script, item) -> entry."""
    found = {}
    for path in sorted((folder / story / "gen.audio" / "output" / "tracking").glob("*.state.json")):
        try:
            items = json.loads(path.read_text(encoding="utf-8"))["items"]
        except (OSError, ValueError, KeyError):
            continue
        found.update({f"{path.name} {key}": entry for key, entry in items.items()})
    return found


def _publish_at(folder: Path, story: str) -> str:
    manifest = json.loads((folder / story / "gen.audio" / "output" / "upload.manifest.json").read_text())
    video = next(r for r in manifest["requests"] if r["item"] == "video")
    return video["body"]["status"]["publishAt"]


def test_a_killed_night_of_three_stories_resumes_with_the_series_voice_and_the_schedule(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path / "project", "gen.audio")
    folder = write_stories(tmp_path / "stories", STORIES)
    (folder / "a").mkdir()
    (folder / "a" / "settings.toml").write_text('NARRATOR_VOICE = "henry_en"\n', encoding="utf-8")  # a's own cast
    env = env_for(PIPELINE_ENGINE="offline")
    command = [sys.executable, "generate.py", "--stories", str(folder)]

    night = subprocess.Popen(command, cwd=pipeline, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while (not any(k.startswith("2.story") for k in _entries(folder, "b")) and night.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert night.poll() is None, "the queue ended before the second story's speech was checkpointed"
        assert any(k.startswith("2.story") for k in _entries(folder, "b")), "b's speech never got a checkpoint"
    finally:
        kill_tree(night)
    before = {story: _entries(folder, story) for story in ("a", "b")}
    a_log = (folder / "a" / "gen.audio" / "log.txt").read_text(encoding="utf-8")
    assert channel_state(folder)["a"]["state"] == "finished" and channel_state(folder)["b"]["state"] == "running"

    status = subprocess.run(command + ["--status"], cwd=pipeline, env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "a: finished" in status.stdout and "b: interrupted (the run was killed" in status.stdout

    rerun = subprocess.run(command, cwd=pipeline, env=env, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
    assert rerun.returncode == 3, rerun.stdout + rerun.stderr  # the broken story's exit; the others finished
    # The killed run's lock was taken over, not obeyed: said in b's log, or by the queue when it met it first.
    said = (folder / "b" / "gen.audio" / "log.txt").read_text(encoding="utf-8") + rerun.stdout + rerun.stderr
    assert "run lock: took over" in said, said[-3000:]

    # Two stories finished; the broken one is reported with its reason.
    state = channel_state(folder)
    assert state["a"]["state"] == state["b"]["state"] == "finished"
    assert state["c"]["state"] == "failed" and state["c"]["code"] == 3
    assert "1.story.txt line 1" in state["c"]["reason"] and "fix the line" in state["c"]["reason"]
    c_report = (folder / "c" / "gen.audio" / "output" / "report.md").read_text(encoding="utf-8")
    assert f"cd {pipeline} && PIPELINE_WORKSPACE={folder / 'c'} python generate.py --from 1" in c_report

    # No finished item was redone: a was skipped whole, b kept every item it had checkpointed.
    assert (folder / "a" / "gen.audio" / "log.txt").read_text(encoding="utf-8") == a_log
    for story, entries in before.items():
        after = _entries(folder, story)
        redone = [k for k, e in entries.items() if e.get("status", "done") == "done"
                  and after[k]["finished_at"] != e["finished_at"]]
        assert not redone, f"{story}: {redone} made again"
    assert len(_entries(folder, "b")) > len(before["b"])

    # The narrator a cast (its own NARRATOR_VOICE) is the series' voice, and b, without that setting, got it.
    assert "narrator    henry_en" in (folder / "series" / "voices.txt").read_text(encoding="utf-8")
    b_map = (folder / "b" / "gen.audio" / "input" / "1.story.speakers.txt").read_text(encoding="utf-8")
    assert any(line.split() == ["narrator", "henry_en"] for line in b_map.splitlines())
    assert "male_bram" in (folder / "series" / "voices.txt").read_text(encoding="utf-8")

    # One publishing slot a day at 18:00 local time, in the dry-run manifests and in the channel report.
    a_at, b_at = _publish_at(folder, "a"), _publish_at(folder, "b")
    local = [datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone() for t in (a_at, b_at)]
    assert [(t.hour, t.minute) for t in local] == [(18, 0), (18, 0)]
    assert local[1].date() - local[0].date() == timedelta(days=1)
    report = (folder / "channel.report.md").read_text(encoding="utf-8")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report.splitlines() if line.startswith("| ")}
    assert a_at in rows["a"] and "| finished |" in rows["a"] and "(a/gen.audio/output/report.md)" in rows["a"]
    assert b_at in rows["b"] and "| finished |" in rows["b"]
    assert rows["c"].startswith("| c | failed: ") and "1.story.txt line 1" in rows["c"] and "T18" not in rows["c"]
    assert "<table>" in (folder / "channel.report.html").read_text(encoding="utf-8")
