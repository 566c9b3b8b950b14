"""--status from the checkpoints after a killed and resumed run; the morning report; NOTIFY_CMD."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.project import copy_pipeline, env_for, run_generate, kill_tree

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

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
        kill_tree(proc)
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


def _start_run(pipeline: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "generate.py", "--until", "2"], cwd=pipeline, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _kill_when(proc: subprocess.Popen, ready) -> None:
    try:
        deadline = time.monotonic() + 90
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert ready(), "the moment to kill never came"
    finally:
        kill_tree(proc)


def test_status_and_report_after_two_kills_and_a_final_resume(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    env = env_for(PIPELINE_ENGINE="offline")
    character = pipeline / "output" / "tracking" / "1.character.state.json"
    story = pipeline / "output" / "tracking" / "2.story.state.json"

    # Kill 1: as soon as 1.character.py has finished an item (in it, or just after it).
    _kill_when(_start_run(pipeline, env), lambda: bool(_items(character)))
    assert 0 < len(_items(character)) <= CHARACTER_ITEMS and len(_items(story)) < STORY_ITEMS
    # Kill 2: the resumed run, in the middle of 2.story.py.
    _kill_when(_start_run(pipeline, env), lambda: bool(_items(story)))
    done_before = len(_items(story))
    assert 0 < done_before < STORY_ITEMS
    assert len(_items(character)) == CHARACTER_ITEMS
    rows = _status_rows(pipeline, env)
    assert rows["2.story.py"][:4] == [str(done_before), str(done_before), "0", str(STORY_ITEMS - done_before)]
    log = (pipeline / "log.txt").read_text(encoding="utf-8")
    assert log.count("===== START 1.character.py") == 2 and "===== END 2.story.py" not in log

    result = run_generate(pipeline, "--until", "2", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _status_rows(pipeline, env)
    assert rows["1.character.py"][:4] == [str(CHARACTER_ITEMS), str(CHARACTER_ITEMS), "0", "?"]
    assert rows["2.story.py"][:4] == [str(STORY_ITEMS), str(STORY_ITEMS), "0", "0"]
    report = (pipeline / "output" / "report.md").read_text(encoding="utf-8")
    assert "FAILED" not in report and "Failed items" not in report
    assert "1.character.py: ok in" in report
    assert f"0 made, {CHARACTER_ITEMS} already done, 0 failed" in report
    assert "2.story.py: ok" in report
    assert f"{STORY_ITEMS - done_before} made, {done_before} already done, 0 failed, 0 left" in report
    assert "nothing left to run" in report
    # The killed runs left no run stamp: this resume ran both scripts, the next run skips them.
    again = run_generate(pipeline, "--until", "2", env=env, timeout=120)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


FAILING_STEP = r'''
import json, os, sys
from pathlib import Path
tracking = Path(__file__).resolve().parent.parent / "output" / "tracking"
tracking.mkdir(parents=True, exist_ok=True)
items = {
    "scene_1.1": {"fingerprint": "a", "files": [], "status": "done", "finished_at": "2000-01-01 00:00:00"},
    "scene_1.2": {"fingerprint": "b", "files": [], "status": "failed", "finished_at": "2000-01-01 00:00:00",
                  "data": {"error": "ComfyUI rejected the job: the node CheckpointLoader is missing."}},
    "scene_2.1": {"fingerprint": "c", "files": [], "status": "failed", "finished_at": "2000-01-01 00:00:00",
                  "data": {"error": "The picture came back empty; run again."}},
}
(tracking / (Path(__file__).stem + ".state.json")).write_text(json.dumps({"version": 1, "items": items}))
print("error: 2 of 3 scenes failed; the others are kept", file=sys.stderr)
sys.exit(6)
'''


def test_failed_items_are_listed_with_the_command_that_redoes_them(tmp_path: Path) -> None:
    pipe = S.make_pipeline(tmp_path, ["1.ok.py", "2.scenes.py", "3.after.py"],
                           script_args={"2.scenes.py": ["--mode", "all"]})
    (pipe / "scripts" / "2.scenes.py").write_text(FAILING_STEP, encoding="utf-8")
    env = dict(S.service_env(tmp_path, engine="offline"), TEST_EVENTS=str(tmp_path / "events.jsonl"))
    result = subprocess.run([sys.executable, str(pipe / "generate.py")], env=env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 6, result.stdout + result.stderr
    report = (pipe / "output" / "report.md").read_text(encoding="utf-8")
    assert "2.scenes.py: FAILED (exit 6)" in report and "0 made, 1 already done, 2 failed" in report
    assert "## Failed items" in report
    assert "- 2.scenes.py scene_1.2: ComfyUI rejected the job: the node CheckpointLoader is missing." in report
    assert "- 2.scenes.py scene_2.1: The picture came back empty; run again." in report
    assert f"redo the 2 failed item(s) of 2.scenes.py: cd {pipe} && python generate.py --only 2" in report
    assert f"cd {pipe / 'scripts'} && python 2.scenes.py --mode all" in report
    html = (pipe / "output" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Failed items</h2>" in html and "scene_2.1" in html
    # The same as data for the dailies page's morning view: each step's start and length, its counts,
    # its failed items and their redo command.
    data = json.loads((pipe / "output" / "report.json").read_text(encoding="utf-8"))
    assert data["code"] == 6 and [s["name"] for s in data["steps"]] == ["1.ok.py", "2.scenes.py", "3.after.py"]
    ok, scenes, after = data["steps"]
    assert ok["code"] == 0 and ok["started_at"] >= data["started_at"] and ok["took"] > 0
    assert scenes["code"] == 6 and (scenes["made"], scenes["cached"], scenes["failed"]) == (0, 1, 2)
    assert [f["key"] for f in scenes["failed_items"]] == ["scene_1.2", "scene_2.1"]
    assert scenes["redo"] == f"cd {pipe} && python generate.py --only 2"
    assert after["code"] is None and after["started_at"] == "" and data["next"].startswith("python generate.py --from 2")

    status = subprocess.run([sys.executable, str(pipe / "generate.py"), "--status"], env=env, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert status.returncode == 0, status.stderr
    row = next(line.split() for line in status.stdout.splitlines() if " 2.scenes.py " in line and "failed:" not in line)
    assert row[2:5] == ["1", "0", "2"]  # done, preview, failed
    assert "failed: 2.scenes.py scene_1.2: ComfyUI rejected the job" in status.stdout
    assert f"redo them: cd {pipe} && python generate.py --only 2" in status.stdout
