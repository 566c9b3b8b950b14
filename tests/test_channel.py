"""Channel mode's queue (generate.py --stories DIR) with real processes and a small real pipeline
(tests/support/channel.py): order and limits, --until-time with an injected clock, the upload quota,
finished stories skipped without starting anything, the queue's lock, and one story run alone."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from common.run.orchestrator import run_pipeline
from tests.support.channel import (
    SCRIPTS, channel_env, channel_state, events, make_channel_pipeline, scripted_clock, write_stories,
)

pytestmark = pytest.mark.timeout(180)


def queue(pipe: Path, folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(pipe / "generate.py"), "--stories", str(folder), *args], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def items(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text(encoding="utf-8"))["items"]


def tracking(folder: Path, story: str, script: str) -> Path:
    return folder / story / "gen.test" / "output" / "tracking" / f"{script}.state.json"


def at(hour: int, minute: int, second: float = 0.0) -> datetime:
    whole = int(second)
    return datetime(2030, 1, 7, hour, minute, whole, int((second - whole) * 1e6)).astimezone()


@pytest.fixture
def channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, dict[str, str]]:
    pipe = make_channel_pipeline(tmp_path / "project")
    folder = tmp_path / "stories"
    env = channel_env(tmp_path)
    for key, value in env.items():  # for the runs made in this process
        monkeypatch.setenv(key, value)
    return pipe, folder, env


def test_stories_run_in_queue_order_at_most_max_stories_each_in_its_workspace(channel, tmp_path: Path) -> None:
    pipe, folder, env = channel
    write_stories(folder, {name: f"[narrator] {name} begins.\n[narrator] {name} ends.\n"
                           for name in ("alpha", "beta", "gamma", "delta")})
    (folder / "queue.txt").write_text("# tonight\ngamma\nalpha.txt\nghost\nbeta\ngamma\n", encoding="utf-8")
    notified = tmp_path / "notified.txt"
    notify = tmp_path / "notify.py"
    notify.write_text("import sys\nopen(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\n", encoding="utf-8")
    env = dict(env, NOTIFY_CMD=shlex.join([sys.executable, str(notify), str(notified)]))

    first = queue(pipe, folder, env, "--max-stories", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert notified.read_text().splitlines() == [str(folder.resolve() / "channel.report.md")]  # once, the queue's
    assert [e["story"] for e in events(tmp_path, "made")] == ["gamma", "alpha"]
    state = channel_state(folder)
    assert state["gamma"]["state"] == state["alpha"]["state"] == "finished"
    assert "beta" not in state and "delta" not in state
    # The story's own data went to its workspace: the story copy, checkpoints, outputs, log and report.
    assert (folder / "gamma" / "gen.audio" / "input" / "1.story.txt").read_text() == (folder / "gamma.txt").read_text()
    assert (folder / "gamma" / "gen.test" / "output" / "line_2.txt").read_text() == "[narrator] gamma ends."
    assert "===== START 1.make.py" in (folder / "gamma" / "gen.test" / "log.txt").read_text()
    assert not (pipe / "output").exists() and not (pipe / "log.txt").exists()
    report = (folder / "channel.report.md").read_text(encoding="utf-8")
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| story")]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == ["gamma", "alpha", "beta"]
    assert "| beta | waiting |" in report and "(gamma/gen.test/output/report.md)" in report
    assert "queue.txt line 4 names ghost" in report and "names gamma a second time" in report
    assert "not in queue.txt, so not run: delta" in report
    assert "--max-stories 2: the other stories wait for the next run" in report

    second = queue(pipe, folder, env, "--max-stories", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    assert [e["story"] for e in events(tmp_path, "made")] == ["gamma", "alpha", "beta"]  # finished ones do not count
    assert {k: v["state"] for k, v in channel_state(folder).items()} == {"gamma": "finished", "alpha": "finished",
                                                                          "beta": "finished"}


def test_finished_stories_are_skipped_fast_and_an_edited_one_redoes_only_its_new_line(channel, tmp_path: Path) -> None:
    pipe, folder, env = channel
    write_stories(folder, {f"s{n}": f"[narrator] Story {n}.\n" for n in (1, 2, 3)})
    assert queue(pipe, folder, env).returncode == 0
    runs = len(events(tmp_path))
    logs = {n: (folder / f"s{n}" / "gen.test" / "log.txt").read_text() for n in (1, 2, 3)}

    started = time.monotonic()
    again = queue(pipe, folder, env)
    took = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(events(tmp_path)) == runs, "a finished story started a script"
    assert {n: (folder / f"s{n}" / "gen.test" / "log.txt").read_text() for n in (1, 2, 3)} == logs
    assert again.stdout.count("finished, up to date since") == 3
    assert took < 3 * 1.0 + 5.0, f"three finished stories took {took:.1f}s to skip"  # start-up, then well under 1 s each

    made_before = items(tracking(folder, "s2", "1.make"))
    (folder / "s2.txt").write_text("[narrator] Story 2.\n[narrator] And a new line.\n", encoding="utf-8")
    edited = queue(pipe, folder, env)
    assert edited.returncode == 0, edited.stdout + edited.stderr
    assert [e["story"] for e in events(tmp_path, "made")][-1:] == ["s2"] and len(events(tmp_path, "made")) == 4
    made_after = items(tracking(folder, "s2", "1.make"))
    assert made_after["line_1"] == made_before["line_1"] and "line_2" in made_after


def test_until_time_starts_no_story_after_it_and_stops_the_running_one_at_a_checkpoint(channel, tmp_path: Path) -> None:
    pipe, folder, _ = channel
    write_stories(folder, {"s1": "[narrator] One.\n", "s2": "[narrator] Two.\n"})
    argv = ["--stories", str(folder), "--until-time", "07:00"]

    # The queue starts at 06:00; s1 starts at 06:30, and when s2's turn comes it is 07:05: s2 waits.
    code = run_pipeline(pipe, scripts=SCRIPTS, script_args={}, argv=argv,
                        now=scripted_clock([at(6, 0), at(6, 30), at(7, 5)]))
    assert code == 0
    assert [e["story"] for e in events(tmp_path, "made")] == ["s1"]
    assert "s2" not in channel_state(folder)
    assert "--until-time 07:00: no story starts after it" in (folder / "channel.report.md").read_text()

    # The next night s2 starts 3 s before 07:00 and is held at its checkpoint: the deadline stops it there.
    (tmp_path / "hold").write_text("")
    code = run_pipeline(pipe, scripts=SCRIPTS, script_args={}, argv=argv,
                        now=scripted_clock([at(5, 0), at(6, 59, 57.0)]))
    assert code == 0  # stopping at the planned time is not a failure
    record = channel_state(folder)["s2"]
    assert record["state"] == "stopped" and "--until-time" in record["reason"]
    kept = {script: items(tracking(folder, "s2", script)) for script in ("1.make", "2.hold")
            if tracking(folder, "s2", script).is_file()}
    assert "second" not in kept.get("2.hold", {})

    (tmp_path / "hold").unlink()
    code = run_pipeline(pipe, scripts=SCRIPTS, script_args={}, argv=["--stories", str(folder)])
    assert code == 0
    assert channel_state(folder)["s2"]["state"] == "finished"
    for script, entries in kept.items():  # what was checkpointed before the stop was not made again
        after = items(tracking(folder, "s2", script))
        assert all(after[key]["finished_at"] == entry["finished_at"] for key, entry in entries.items())
    assert set(items(tracking(folder, "s2", "2.hold"))) == {"first", "second"}


def test_a_spent_upload_quota_lets_the_queue_make_the_videos_and_upload_them_next_run(channel, tmp_path: Path) -> None:
    pipe, folder, env = channel
    write_stories(folder, {f"q{n}": f"[narrator] Episode {n}.\n" for n in (1, 2, 3)})
    (tmp_path / "quota").write_text("")
    first = queue(pipe, folder, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert [e["story"] for e in events(tmp_path, "quota")] == ["q1"]  # asked once, not once per story
    assert [e["story"] for e in events(tmp_path, "held")] == ["q1", "q2", "q3"]  # every video was made
    state = channel_state(folder)
    assert {k: v["state"] for k, v in state.items()} == {f"q{n}": "upload waits" for n in (1, 2, 3)}
    assert "quota" in state["q1"]["reason"] and "the next run uploads it" in state["q2"]["reason"]

    (tmp_path / "quota").unlink()
    held = len(events(tmp_path, "held"))
    second = queue(pipe, folder, env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert [e["story"] for e in events(tmp_path, "uploaded")] == ["q1", "q2", "q3"]
    assert len(events(tmp_path, "held")) - held == 1  # only q1 had no finished run to skip from
    assert {v["state"] for v in channel_state(folder).values()} == {"finished"}


def test_two_queues_at_once_are_refused_status_reads_and_sigterm_stops_at_a_checkpoint(channel, tmp_path: Path) -> None:
    pipe, folder, env = channel
    write_stories(folder, {"s1": "[narrator] One.\n", "s2": "[narrator] Two.\n"})
    (tmp_path / "hold").write_text("")
    first = subprocess.Popen([sys.executable, str(pipe / "generate.py"), "--stories", str(folder)], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not events(tmp_path, "holding") and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events(tmp_path, "holding"), "the first queue never reached its hold"

        second = queue(pipe, folder, env)
        assert second.returncode == 8
        assert "another run of the stories of" in second.stderr and f"pid {first.pid}" in second.stderr
        assert "wait for it to finish or stop it" in second.stderr

        status = queue(pipe, folder, env, "--status")
        assert status.returncode == 0, status.stderr
        assert "s1: running" in status.stdout and "s2: waiting" in status.stdout

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 143
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert channel_state(folder)["s1"]["state"] == "stopped"
    assert "s2" not in channel_state(folder)  # a stopped queue starts nothing more
    assert not (folder / "channel.lock").exists()

    (tmp_path / "hold").unlink()
    last = queue(pipe, folder, env)
    assert last.returncode == 0, last.stdout + last.stderr
    assert {v["state"] for v in channel_state(folder).values()} == {"finished"}


def test_one_story_runs_alone_in_its_workspace_and_its_report_says_how(channel, tmp_path: Path) -> None:
    pipe, folder, env = channel
    write_stories(folder, {"solo": "[narrator] Alone.\n"})
    (folder / "solo").mkdir()
    (folder / "solo" / "settings.toml").write_text("ENABLE_RESUMABLE_MODE = true\n", encoding="utf-8")
    assert queue(pipe, folder, env, "--until", "1").returncode == 0

    alone = subprocess.run([sys.executable, str(pipe / "generate.py"), "--only", "2"], capture_output=True,
                           text=True, timeout=120, env=dict(env, PIPELINE_WORKSPACE=str(folder / "solo")))
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert [e["story"] for e in events(tmp_path, "held")] == ["solo"]
    assert items(tracking(folder, "solo", "2.hold")).keys() == {"first", "second"}
    report = (folder / "solo" / "gen.test" / "output" / "report.md").read_text()
    assert "2.hold.py: ok" in report
    # Edited in the stories folder, the story reaches the workspace run alone too: only the new line is made.
    first_line = items(tracking(folder, "solo", "1.make"))["line_1"]
    (folder / "solo.txt").write_text("[narrator] Alone.\n[narrator] Not for long.\n", encoding="utf-8")
    again = subprocess.run([sys.executable, str(pipe / "generate.py"), "--only", "1"], capture_output=True,
                           text=True, timeout=120, env=dict(env, PIPELINE_WORKSPACE=str(folder / "solo")))
    assert again.returncode == 0, again.stdout + again.stderr
    made = items(tracking(folder, "solo", "1.make"))
    assert set(made) == {"line_1", "line_2"} and made["line_1"] == first_line

    (tmp_path / "stray").mkdir()
    stray = subprocess.run([sys.executable, str(pipe / "generate.py")], capture_output=True, text=True, timeout=60,
                           env=dict(env, PIPELINE_WORKSPACE=str(tmp_path / "stray")))
    assert stray.returncode == 4
    assert "is not a story workspace" in stray.stderr and stray.stderr.count("\n") == 1


def test_a_missing_stories_folder_and_bad_limits_are_one_sentence(channel, tmp_path: Path) -> None:
    pipe, folder, env = channel
    missing = queue(pipe, tmp_path / "nowhere", env)
    assert missing.returncode == 3 and "does not exist; create it" in missing.stderr
    write_stories(folder, {"s1": "[narrator] One.\n"})
    for args, code, words in ((["--max-stories", "0"], 4, "give 1 or more"),
                              (["--until-time", "7am"], 4, "write it as HH:MM"),
                              (["--setup"], 4, "run it without --stories")):
        result = queue(pipe, folder, env, *args)
        assert result.returncode == code and words in result.stderr, result.stderr
    lonely = subprocess.run([sys.executable, str(pipe / "generate.py"), "--max-stories", "1"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert lonely.returncode == 4 and "add --stories DIR" in lonely.stderr
    assert not os.path.exists(folder / "s1")  # nothing was prepared for a run that was refused
