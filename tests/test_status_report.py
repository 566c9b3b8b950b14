"""--status from the checkpoints after a killed and resumed run; the morning report; NOTIFY_CMD."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.project import copy_pipeline, env_for, run_generate

STORY_ITEMS = 4  # the sample story: 11 lines in chunks of 5 -> 1_5, 6_10, 11_11, plus story.wav
CHARACTER_ITEMS = 6  # 2 summary parts, the title, 3 chapters


def _items(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["items"]
    except (OSError, ValueError, KeyError):
        return {}


def _status_rows(pipeline: Path, env: dict[str, str]) -> dict[str, list[str]]:
    result = run_generate(pipeline, "--status", "--until", "2", env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].endswith(".py"):
            rows[words[1]] = words[2:]
    return rows


def _kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL the orchestrator's group and the script it runs (in a session of its own)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    os.killpg(proc.pid, signal.SIGKILL)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)
    psutil.wait_procs(children, timeout=10)


def test_status_after_a_killed_and_resumed_run(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    env = env_for(PIPELINE_ENGINE="offline")
    state = pipeline / "output" / "tracking" / "2.story.state.json"
    proc = subprocess.Popen([sys.executable, "generate.py", "--until", "2"], cwd=pipeline, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _items(state) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert _items(state), "2.story.py recorded no item in time"
    finally:
        _kill_run(proc)
    before = len(_items(state))
    assert 0 < before < STORY_ITEMS

    rows = _status_rows(pipeline, env)
    assert rows["1.character.py"][:4] == [str(CHARACTER_ITEMS), str(CHARACTER_ITEMS), "0", "?"]
    assert rows["2.story.py"][:4] == [str(before), str(before), "0", str(STORY_ITEMS - before)]

    result = run_generate(pipeline, "--until", "2", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _status_rows(pipeline, env)
    assert rows["1.character.py"][:4] == [str(CHARACTER_ITEMS), str(CHARACTER_ITEMS), "0", "?"]
    assert rows["2.story.py"][:4] == [str(STORY_ITEMS), str(STORY_ITEMS), "0", "0"]
    took = sum(e["took"] for e in _items(state).values())
    hours, minutes, seconds = (int(x) for x in rows["2.story.py"][4].split(":"))
    assert hours * 3600 + minutes * 60 + seconds == round(took)

    report = (pipeline / "output" / "report.md").read_text(encoding="utf-8")
    assert "2.story.py: ok" in report
    assert f"{STORY_ITEMS - before} made, {before} already done, 0 failed, 0 left" in report
    assert "engine: offline" in report and "nothing left to run" in report
    assert "<h2>Steps</h2>" in (pipeline / "output" / "report.html").read_text(encoding="utf-8")


@pytest.fixture
def notify_cmd(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "notify.py"
    out = tmp_path / "notified.json"
    script.write_text("import json, sys\nopen(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))\n", encoding="utf-8")
    return shlex.join([sys.executable, str(script), str(out)]), out


def test_report_names_the_failed_step_and_notify_gets_its_path(tmp_path: Path, notify_cmd: tuple[str, Path]) -> None:
    command, notified = notify_cmd
    pipeline = copy_pipeline(tmp_path / "project")
    env = env_for(PIPELINE_ENGINE="offline", NOTIFY_CMD=command)
    result = run_generate(pipeline, "--only", "3", env=env, timeout=60)  # no story.wav yet: 3.transcribe fails
    assert result.returncode == 3, result.stdout + result.stderr
    report_path = pipeline / "output" / "report.md"
    report = report_path.read_text(encoding="utf-8")
    assert "3.transcribe.py: FAILED (exit 3)" in report
    assert "python generate.py --from 3" in report
    assert json.loads(notified.read_text(encoding="utf-8")) == [str(report_path)]


def test_failing_notify_command_is_not_fatal(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path / "project")
    env = env_for(PIPELINE_ENGINE="offline", NOTIFY_CMD="no-such-notify-command --flag")
    result = run_generate(pipeline, "--until", "1", env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOTIFY_CMD" in result.stderr
    assert "1.character.py: ok" in (pipeline / "output" / "report.md").read_text(encoding="utf-8")
