"""The run stamp: a finished run re-run skips its scripts; any change makes them run again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

from tests.support.project import copy_pipeline, env_for, run_generate as run_real  # noqa: E402

pytestmark = pytest.mark.timeout(120)

# A step that copies input/in.txt to output/<stem>.out unless that exists, and says it ran.
STEP = r'''
import json, os, sys
from pathlib import Path
here = Path(__file__).resolve().parent.parent
with open(os.environ["TEST_EVENTS"], "a") as fh:
    fh.write(json.dumps({"script": Path(__file__).name, "argv": sys.argv[1:]}) + "\n")
out = here / "output" / (Path(__file__).stem + ".out")
out.parent.mkdir(exist_ok=True)
if not out.exists():
    out.write_text((here / "input" / "in.txt").read_text())
if "--exit" in sys.argv:
    sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
'''
SCRIPTS = ["1.a.py", "2.b.py", "3.c.py"]


def _pipeline(tmp_path: Path, args: dict[str, list[str]] | None = None) -> Path:
    pipe = S.make_pipeline(tmp_path, SCRIPTS, script_args=args)
    for name in SCRIPTS:
        (pipe / "scripts" / name).write_text(STEP, encoding="utf-8")
    (pipe / "input").mkdir()
    (pipe / "input" / "in.txt").write_text("hello\n", encoding="utf-8")
    return pipe


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = S.service_env(tmp_path, engine="offline")
    env.update(TEST_EVENTS=str(tmp_path / "events.jsonl"), **extra)  # outside the pipeline folder
    return env


def _generate(pipe: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run generate.py; returns the result and the scripts that actually ran."""
    events = Path(env["TEST_EVENTS"])
    before = len(S.read_jsonl(events))
    result = subprocess.run([sys.executable, str(pipe / "generate.py"), *args], env=env, capture_output=True,
                            text=True, encoding="utf-8", timeout=60, stdin=subprocess.DEVNULL)
    return result, [e["script"] for e in S.read_jsonl(events)[before:]]


def _report(pipe: Path) -> str:
    return (pipe / "output" / "report.md").read_text(encoding="utf-8")


def test_a_finished_run_run_again_skips_every_script_and_says_so(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path)
    env = _env(tmp_path)
    result, ran = _generate(pipe, env)
    assert result.returncode == 0 and ran == SCRIPTS, result.stdout + result.stderr
    stamp = json.loads((pipe / "output" / "tracking" / "orchestrator.state.json").read_text(encoding="utf-8"))
    assert len(stamp["steps"]) == 3 and "output/1.a.out" in stamp["trees"][str(pipe.resolve())]

    result, ran = _generate(pipe, env)
    assert result.returncode == 0 and ran == [], result.stdout + result.stderr
    assert "[1] 1.a.py: up to date since" in result.stdout and "nothing to do: all 3 script(s)" in result.stdout
    report = _report(pipe)
    assert "1.a.py: up to date since" in report and "skipped" in report and "nothing to do" in report
    assert "nothing left to run" in report
    # A selection of steps of that run, or the same again, is skipped too; the stamp is kept.
    for args in (["--only", "2"], ["--from", "2"], []):
        result, ran = _generate(pipe, env, *args)
        assert result.returncode == 0 and ran == [], (args, result.stdout + result.stderr)


@pytest.mark.parametrize("change", ["touch input", "setting env", "settings.toml", "delete output", "edit script"])
def test_any_change_makes_the_next_run_run_the_scripts(tmp_path: Path, change: str) -> None:
    pipe = _pipeline(tmp_path)
    env = _env(tmp_path)
    assert _generate(pipe, env)[0].returncode == 0
    if change == "touch input":
        stat = (pipe / "input" / "in.txt").stat()
        os.utime(pipe / "input" / "in.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    elif change == "setting env":
        env["CHUNK_SIZE"] = "3"
    elif change == "settings.toml":
        (pipe / "settings.toml").write_text("CHUNK_SIZE = 3\n", encoding="utf-8")
    elif change == "delete output":
        (pipe / "output" / "2.b.out").unlink()
    else:
        with open(pipe / "scripts" / "3.c.py", "a", encoding="utf-8") as fh:
            fh.write("# edited\n")
    result, ran = _generate(pipe, env)
    assert result.returncode == 0 and ran == SCRIPTS, result.stdout + result.stderr
    assert "run stamp:" in result.stdout
    assert (pipe / "output" / "2.b.out").is_file()
    assert _generate(pipe, env)[1] == []  # and then it is up to date again


def test_force_start_never_skips(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path)
    env = _env(tmp_path)
    assert _generate(pipe, env)[0].returncode == 0
    result, ran = _generate(pipe, env, "--force-start")
    assert result.returncode == 0 and ran == SCRIPTS, result.stdout + result.stderr
    assert all(e["argv"] == [] for e in S.read_jsonl(tmp_path / "events.jsonl"))  # not passed on to scripts


def test_only_the_leading_steps_of_the_recorded_run_are_skipped(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path)
    env = _env(tmp_path)
    assert _generate(pipe, env, "--until", "2")[1] == ["1.a.py", "2.b.py"]
    result, ran = _generate(pipe, env)
    assert result.returncode == 0 and ran == ["3.c.py"], result.stdout + result.stderr
    assert "3.c.py was not part of the run of" in result.stdout
    assert "2.b.py: up to date since" in _report(pipe) and "3.c.py: ok" in _report(pipe)
    assert _generate(pipe, env)[1] == []  # the whole selection is recorded now


def test_a_failed_run_records_nothing(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, {"3.c.py": ["--exit", "3"]})
    env = _env(tmp_path)
    assert _generate(pipe, env)[0].returncode == 3
    assert not (pipe / "output" / "tracking" / "orchestrator.state.json").exists()
    result, ran = _generate(pipe, env)
    assert result.returncode == 3 and ran == SCRIPTS


def test_a_step_that_redoes_its_work_is_never_skipped(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, {"2.b.py": ["--force-start"]})
    env = _env(tmp_path)
    assert _generate(pipe, env)[0].returncode == 0
    result, ran = _generate(pipe, env)
    assert result.returncode == 0 and ran == ["2.b.py", "3.c.py"], result.stdout + result.stderr
    assert "2.b.py redoes its work on every run" in result.stdout


def test_dry_run_says_what_would_be_skipped(tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path)
    env = _env(tmp_path)
    assert _generate(pipe, env, "--until", "1")[0].returncode == 0
    result, ran = _generate(pipe, env, "--dry-run")
    assert result.returncode == 0 and ran == []
    assert "[1] 1.a.py: up to date since" in result.stdout
    assert "would run: python 2.b.py" in result.stdout and "would run: python 1.a.py" not in result.stdout


def test_real_gen_audio_rerun_is_skipped_until_something_changes(tmp_path: Path) -> None:
    """1.character.py and 2.story.py for real (offline): re-run skipped; story, setting, output changes run."""
    pipeline = copy_pipeline(tmp_path)
    env = env_for(PIPELINE_ENGINE="offline")
    first = run_real(pipeline, "--until", "2", env=env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr

    def runs(extra_env: dict[str, str] | None = None) -> list[str]:
        log = pipeline / "log.txt"
        before = log.read_text(encoding="utf-8").count("===== START")
        result = run_real(pipeline, "--until", "2", env=dict(env, **(extra_env or {})), timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        text = log.read_text(encoding="utf-8")
        return [line.split()[2] for line in text.splitlines() if line.startswith("===== START")][before:]

    assert runs() == []
    assert "2.story.py: up to date since" in (pipeline / "output" / "report.md").read_text(encoding="utf-8")
    story = pipeline / "input" / "1.story.txt"
    os.utime(story, ns=(story.stat().st_atime_ns, story.stat().st_mtime_ns + 1_000_000))
    assert runs() == ["1.character.py", "2.story.py"]
    assert runs() == []
    assert runs({"CHUNK_SIZE": "3"}) == ["1.character.py", "2.story.py"]
    (pipeline / "output" / "story.wav").unlink()
    assert runs({"CHUNK_SIZE": "3"}) == ["1.character.py", "2.story.py"]
    assert (pipeline / "output" / "story.wav").stat().st_size > 0
