"""The orchestrator with real processes: tiny numbered scripts, a fake ComfyUI install, a fake `lms`."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

from common.run.orchestrator import run_pipeline  # noqa: E402

pytestmark = pytest.mark.timeout(90)

START_RE = re.compile(r"^===== START (\S+) @ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d =====$")
END_RE = re.compile(r"^===== END (\S+) @ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(exit=(-?\d+), took=\d+\.\d\ds\) =====$")


@pytest.fixture
def fake_comfyui() -> None:
    S.require_fake(S.FAKE_COMFYUI, wait=5)


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def run_generate(pipe: Path, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(env, TEST_EVENTS=str(pipe / "events.jsonl"))
    return subprocess.run([sys.executable, str(pipe / "generate.py"), *args], env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout, stdin=subprocess.DEVNULL)


def markers(pipe: Path) -> list[tuple[str, str, int | None]]:
    """(kind, name, exit) for every START/END line of log.txt; other lines must not look like markers."""
    found = []
    for line in (pipe / "log.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("====="):
            start, end = START_RE.match(line), END_RE.match(line)
            assert start or end, f"malformed marker: {line!r}"
            found.append(("START", start.group(1), None) if start else ("END", end.group(1), int(end.group(2))))
    return found


def cleanup_comfy(comfy: Path) -> None:
    for start in S.comfy_starts(comfy):
        S.kill_pid(start["server"])
        S.kill_pid(start["main"])


def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipe: Path) -> None:
    use_env(monkeypatch, S.service_env(tmp_path, engine="offline"))
    monkeypatch.setenv("TEST_EVENTS", str(pipe / "events.jsonl"))


SCRIPTS = ["1.text.py", "2.media.py", "3.media.py", "4.plain.py", "5.media.py"]
NEEDS_COMFYUI = {"2.media.py": True, "3.media.py": True, "5.media.py": True}
NEEDS_LLM = {"1.text.py": True}


# --------------------------------------------------------------------------- --list, selection, --dry-run


def test_list_numbers_the_scripts_and_says_what_each_needs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pipe = S.make_pipeline(tmp_path, ["1.text.py", "2.media.py", "../../gen.other/scripts/9.thumb.py"],
                           {"2.media.py": True, "9.thumb.py": True}, {"1.text.py": True},
                           {"9.thumb.py": ["--mode", "flux"]})
    code = run_pipeline(pipe, scripts=["1.text.py", "2.media.py", "../../gen.other/scripts/9.thumb.py"],
                        needs_comfyui={"2.media.py": True, "9.thumb.py": True}, needs_lmstudio={"1.text.py": True},
                        script_args={"9.thumb.py": ["--mode", "flux"]}, argv=["--list"])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"1\. 1\.text\.py\s+needs: LLM$", out, re.M)
    assert re.search(r"2\. 2\.media\.py\s+needs: ComfyUI$", out, re.M)
    assert re.search(r"3\. \.\./\.\./gen\.other/scripts/9\.thumb\.py\s+needs: ComfyUI\s+args: --mode flux$", out, re.M)
    assert not (pipe / "log.txt").exists()


def test_missing_scripts_are_named_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = ["1.text.py", "2.media.py", "3.later.py"]
    pipe = S.make_pipeline(tmp_path, scripts, missing=("3.later.py",))
    offline_env(tmp_path, monkeypatch, pipe)
    kwargs = dict(scripts=scripts, needs_comfyui={}, needs_lmstudio={}, script_args={})
    assert run_pipeline(pipe, **kwargs, argv=["--list"]) == 4
    captured = capsys.readouterr()
    assert "(missing)" in captured.out and "3.later.py" in captured.err
    assert run_pipeline(pipe, **kwargs, argv=["--dry-run"]) == 4
    assert run_pipeline(pipe, **kwargs, argv=[]) == 4
    err = capsys.readouterr().err
    assert err.count("error: 1 script(s) listed in SCRIPTS do not exist (3.later.py") == 2
    assert not S.events(pipe) and not (pipe / "log.txt").exists()
    # Only the selected scripts must exist: the first two can run on their own.
    assert run_pipeline(pipe, **kwargs, argv=["--until", "2"]) == 0
    assert [e["script"] for e in S.runs(pipe)] == ["1.text.py", "2.media.py"]


@pytest.mark.parametrize("argv, expected", [
    (["--only", "2"], ["2.media.py"]),
    (["--only", "4.plain"], ["4.plain.py"]),
    (["--from", "3.media"], ["3.media.py", "4.plain.py", "5.media.py"]),
    (["--until", "2"], ["1.text.py", "2.media.py"]),
    (["--from", "2", "--until", "4.plain.py"], ["2.media.py", "3.media.py", "4.plain.py"]),
])
def test_from_until_only_select_by_position_or_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   argv: list[str], expected: list[str]) -> None:
    pipe = S.make_pipeline(tmp_path, SCRIPTS)
    offline_env(tmp_path, monkeypatch, pipe)
    code = run_pipeline(pipe, scripts=SCRIPTS, needs_comfyui=NEEDS_COMFYUI, needs_lmstudio=NEEDS_LLM,
                        script_args={}, argv=argv)
    assert code == 0
    assert [e["script"] for e in S.runs(pipe)] == expected


@pytest.mark.parametrize("argv, message", [
    (["--only", "9"], "out of range"),
    (["--only", "media"], "matches no script"),
    (["--from", "4", "--until", "2"], "comes after"),
    (["--only", "1", "--from", "2"], "cannot be combined"),
])
def test_bad_selections_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    pipe = S.make_pipeline(tmp_path, SCRIPTS)
    offline_env(tmp_path, monkeypatch, pipe)
    code = run_pipeline(pipe, scripts=SCRIPTS, needs_comfyui={}, needs_lmstudio={}, script_args={}, argv=argv)
    assert code == 4
    assert message in capsys.readouterr().err
    assert not S.events(pipe)


def test_ambiguous_prefix_names_the_candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    scripts = ["1.story.py", "2.story.py", "2.storyboard.py"]
    pipe = S.make_pipeline(tmp_path, scripts)
    offline_env(tmp_path, monkeypatch, pipe)
    assert run_pipeline(pipe, scripts=scripts, needs_comfyui={}, needs_lmstudio={}, script_args={},
                        argv=["--only", "2.sto"]) == 4
    assert "2.story.py, 2.storyboard.py" in capsys.readouterr().err
    assert run_pipeline(pipe, scripts=scripts, needs_comfyui={}, needs_lmstudio={}, script_args={},
                        argv=["--only", "2.story"]) == 0  # an exact stem wins over a prefix
    assert [e["script"] for e in S.runs(pipe)] == ["2.story.py"]


def test_dry_run_says_what_would_start_stop_and_run_and_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    # ComfyUI's own venv, found without COMFYUI_PYTHON: the command line names it, and says why.
    venv = S.make_python(comfy / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python"),
                         tmp_path / "used.txt")
    pipe = S.make_pipeline(tmp_path, SCRIPTS)
    env = S.service_env(tmp_path, comfy_dir=comfy)
    del env["COMFYUI_PYTHON"]
    env["COMFYUI_EXTRA_ARGS"] = "--lowvram --preview-method auto"
    use_env(monkeypatch, env)
    code = run_pipeline(pipe, scripts=SCRIPTS, needs_comfyui=NEEDS_COMFYUI, needs_lmstudio=NEEDS_LLM,
                        script_args={"2.media.py": ["--x", "a b"]}, argv=["--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("engine: ComfyUI + LLM") == 1
    assert f"ComfyUI will be started from {comfy} with {venv} (venv inside COMFYUI_DIR)" in out
    lines = [line.strip() for line in out.splitlines()]
    step1 = lines.index("[1] 1.text.py  (needs: LLM)")
    assert lines[step1 + 1].startswith("would start the LLM server: `lms server start --port")
    assert "`lms load qwen/qwen3-14b --identifier qwen/qwen3-14b -y`" in lines[step1 + 1]
    step2 = lines.index("[2] 2.media.py  (needs: ComfyUI)")
    assert lines[step2 + 1:step2 + 4] == [
        "would stop LLM server",
        f"would start ComfyUI: {venv} main.py --listen 127.0.0.1 --port "
        f"{env['COMFYUI_BASE_URL'].rsplit(':', 1)[1]} --lowvram --preview-method auto "
        f"(in {comfy}; its Python: venv inside COMFYUI_DIR)",
        f"would run: python 2.media.py --x 'a b'  (in {pipe / 'scripts'})",
    ]
    step3 = lines.index("[3] 3.media.py  (needs: ComfyUI)")
    assert lines[step3 + 1] == "would keep ComfyUI"
    step4 = lines.index("[4] 4.plain.py  (needs: -)")
    assert lines[step4 + 1] == "would stop ComfyUI"
    assert lines[-1] == "at the end: would stop ComfyUI"
    assert not S.comfy_starts(comfy) and not S.events(pipe) and not (pipe / "log.txt").exists()
    assert not S.lms_calls(tmp_path / "lms-state") and not (tmp_path / "used.txt").exists()


def test_dry_run_stops_where_a_required_service_could_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    pipe = S.make_pipeline(tmp_path, SCRIPTS)
    use_env(monkeypatch, S.service_env(tmp_path, lms=False, engine="comfyui"))
    code = run_pipeline(pipe, scripts=SCRIPTS, needs_comfyui=NEEDS_COMFYUI, needs_lmstudio=NEEDS_LLM,
                        script_args={}, argv=["--dry-run", "--from", "2"])
    out = capsys.readouterr().out
    assert code == 5
    assert "the run would stop here: ComfyUI is not installed in" in out
    assert "would run" not in out and not S.events(pipe)


# --------------------------------------------------------------------------- real runs


def test_services_start_only_when_needed_and_are_kept_across_consecutive_scripts(
    tmp_path: Path, fake_comfyui: None,
) -> None:
    comfy = S.make_comfyui_dir(tmp_path, record=tmp_path / "comfy-record.jsonl")
    env = S.service_env(tmp_path, comfy_dir=comfy)
    pipe = S.make_pipeline(tmp_path, SCRIPTS, NEEDS_COMFYUI, NEEDS_LLM, {"4.plain.py": ["--a", "b c"]})
    try:
        result = run_generate(pipe, env)
        assert result.returncode == 0, result.stdout + result.stderr
        seen = {e["script"]: e for e in S.runs(pipe)}
        assert list(seen) == SCRIPTS
        # GPU exclusivity: each script finds exactly the servers it needs.
        assert (seen["1.text.py"]["llm_up"], seen["1.text.py"]["comfy_up"]) == (True, False)
        for name in ("2.media.py", "3.media.py", "5.media.py"):
            assert (seen[name]["comfy_up"], seen[name]["llm_up"]) == (True, False), name
        assert (seen["4.plain.py"]["comfy_up"], seen["4.plain.py"]["llm_up"]) == (False, False)
        assert seen["4.plain.py"]["argv"] == ["--a", "b c"]
        for entry in seen.values():
            assert (entry["engine"], entry["text"]) == ("comfyui", "llm")
            assert Path(entry["cwd"]) == pipe / "scripts"
            assert entry["stdin_tty"] is False
        starts = S.comfy_starts(comfy)
        assert len(starts) == 2  # once for 2-3 (kept), once again for 5 after 4 did not need it
        for start in starts:
            assert S.pid_gone(start["main"]) and S.pid_gone(start["server"])
        calls = S.lms_calls(tmp_path / "lms-state")
        wanted = [c for c in calls if c[0] in ("load", "unload") or c[0] == "server" and c[1] in ("start", "stop")]
        port = env["LM_STUDIO_BASE_URL"].rsplit(":", 1)[1].split("/")[0]
        assert wanted == [["server", "start", "--port", port],
                          ["load", "qwen/qwen3-14b", "--identifier", "qwen/qwen3-14b", "-y"],
                          ["unload", "--all"], ["server", "stop"]]
        assert markers(pipe) == [m for name in SCRIPTS for m in (("START", name, None), ("END", name, 0))]
        log = (pipe / "log.txt").read_text(encoding="utf-8")
        assert "hello from 3.media.py ünïcode" in log and "progress 100%" in log and "progress 50%" not in log
        assert log.count("engine: ComfyUI + LLM") == 1 and result.stdout.count("engine: ComfyUI + LLM") == 1
        assert "services: starting ComfyUI" in log and "services: stopped ComfyUI" in log
        assert "done: 5 script(s) finished" in result.stdout
    finally:
        cleanup_comfy(comfy)
        S.stop_fake_lms_server(tmp_path / "lms-state")


@pytest.mark.skipif(os.name == "nt", reason="a shell script stands in for the venv's python")
def test_the_run_starts_comfyui_with_its_own_venv_and_its_engine_line_says_so(
    tmp_path: Path, fake_comfyui: None,
) -> None:
    """COMFYUI_DIR alone: the venv inside it runs ComfyUI, which (like a real one) loads for a while
    before it listens; the script that needs it runs only once it answers."""
    comfy = S.make_comfyui_dir(tmp_path)
    used = tmp_path / "used.txt"
    venv = S.make_python(comfy / "venv" / "bin" / "python", used)
    env = S.service_env(tmp_path, comfy_dir=comfy, lms=False)
    del env["COMFYUI_PYTHON"]
    env["FAKE_COMFYUI_STARTUP_DELAY"] = "1"
    pipe = S.make_pipeline(tmp_path, ["1.media.py"], {"1.media.py": True})
    try:
        result = run_generate(pipe, env)
        assert result.returncode == 0, result.stdout + result.stderr
        (start,) = S.comfy_starts(comfy)
        assert used.read_text().split() == ["main.py", *start["argv"]]
        (seen,) = S.runs(pipe)
        assert seen["comfy_up"] is True
        log = (pipe / "log.txt").read_text(encoding="utf-8")
        engine = next(line for line in log.splitlines() if line.startswith("engine: "))
        assert f"ComfyUI will be started from {comfy} with {venv} (venv inside COMFYUI_DIR)" in engine
        assert engine in result.stdout
        assert f"services: starting ComfyUI (pid {start['main']})" in log
    finally:
        cleanup_comfy(comfy)


def test_a_failing_script_stops_the_run_and_what_we_started(tmp_path: Path, fake_comfyui: None) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    scripts = ["1.media.py", "2.story.py", "3.after.py"]
    pipe = S.make_pipeline(tmp_path, scripts, {"1.media.py": True, "2.story.py": True}, {},
                           {"2.story.py": ["--exit", "3"]})
    try:
        result = run_generate(pipe, S.service_env(tmp_path, comfy_dir=comfy))
        assert result.returncode == 3
        assert [e["script"] for e in S.runs(pipe)] == ["1.media.py", "2.story.py"]
        assert ("2.story.py failed (exit 3); fix the problem above and run generate.py again: "
                "finished work is kept") in result.stderr
        assert markers(pipe)[-1] == ("END", "2.story.py", 3)
        assert "2.story.py fails" in (pipe / "log.txt").read_text()
        (start,) = S.comfy_starts(comfy)
        assert S.pid_gone(start["main"]) and S.pid_gone(start["server"])
    finally:
        cleanup_comfy(comfy)


def test_an_adopted_comfyui_is_freed_and_left_running(tmp_path: Path, fake_comfyui: None) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    port = S.free_port()
    record = tmp_path / "adopted-record.jsonl"
    scripts = ["1.media.py", "2.plain.py", "3.media.py"]
    pipe = S.make_pipeline(tmp_path, scripts, {"1.media.py": True, "3.media.py": True})
    with S.running_fake_comfyui(port, record) as server:
        result = run_generate(pipe, S.service_env(tmp_path, comfy_dir=comfy, comfy_port=port, lms=False))
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.poll() is None and S.http_ok(f"http://127.0.0.1:{port}/system_stats")
        # Freed before 2.plain.py and at the end: never stopped, never started by us.
        assert sum(e.get("event") == "free" for e in S.read_jsonl(record)) == 2
        assert not S.comfy_starts(comfy)
        assert "engine: ComfyUI media, offline text" in result.stdout
        assert "adopted the ComfyUI already running" in (pipe / "log.txt").read_text()


@pytest.mark.parametrize("form", ["http://127.0.0.1:{port}", "http://127.0.0.1:{port}/", "http://127.0.0.1:{port}/v1/"])
def test_a_running_lm_studio_named_without_v1_is_adopted_not_started(tmp_path: Path, form: str) -> None:
    """The client adds /v1 to a bare host:port; the orchestrator must reach the same server, not call
    it down, go offline or run `lms server start` on its port."""
    port = S.free_port()
    env = S.service_env(tmp_path, llm_port=port)
    env["LM_STUDIO_BASE_URL"] = form.format(port=port)
    state = tmp_path / "lms-state"
    scripts = ["1.text.py", "2.plain.py"]
    pipe = S.make_pipeline(tmp_path, scripts, {}, {"1.text.py": True})
    try:
        started = subprocess.run([sys.executable, str(S.FAKE_LMS), "server", "start", "--port", str(port)],
                                 env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert started.returncode == 0, started.stderr
        result = run_generate(pipe, env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "engine: offline media, LLM text" in result.stdout
        assert [(e["script"], e["text"]) for e in S.runs(pipe)] == [("1.text.py", "llm"), ("2.plain.py", "llm")]
        calls = S.lms_calls(state)
        assert [c for c in calls if c[:2] == ["server", "start"]] == [["server", "start", "--port", str(port)]]
        assert ["server", "stop"] not in calls and ["unload", "--all"] in calls  # adopted: freed, left running
        assert f"adopted the LLM server already running at http://127.0.0.1:{port}/v1" in (pipe / "log.txt").read_text()
        assert S.http_ok(f"http://127.0.0.1:{port}/v1/models")
    finally:
        S.stop_fake_lms_server(state)


def test_a_service_that_cannot_start_fails_before_its_script(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path, crash="Traceback: no module named torch")
    scripts = ["1.plain.py", "2.media.py"]
    pipe = S.make_pipeline(tmp_path, scripts, {"2.media.py": True})
    result = run_generate(pipe, S.service_env(tmp_path, comfy_dir=comfy, lms=False, engine="comfyui"))
    assert result.returncode == 5
    assert [e["script"] for e in S.runs(pipe)] == ["1.plain.py"]
    assert "no module named torch" in result.stderr
    assert markers(pipe) == [("START", "1.plain.py", None), ("END", "1.plain.py", 0)]


def _start_and_signal(tmp_path: Path, pipe: Path, env: dict[str, str], sig: int) -> tuple[int, str]:
    out = tmp_path / "orchestrator.out"
    with open(out, "w") as handle:
        proc = subprocess.Popen([sys.executable, str(pipe / "generate.py")], stdin=subprocess.DEVNULL,
                                stdout=handle, stderr=subprocess.STDOUT,
                                env=dict(env, TEST_EVENTS=str(pipe / "events.jsonl")))
        try:
            S.wait_for(lambda: any(e["kind"] == "sleeping" for e in S.events(pipe)) or proc.poll() is not None,
                       timeout=40, what="script sleeping")
            proc.send_signal(sig)
            code = proc.wait(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    return code, out.read_text(encoding="utf-8")


def test_sigterm_is_passed_on_and_services_we_started_are_stopped(tmp_path: Path, fake_comfyui: None) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    scripts = ["1.media.py", "2.never.py"]
    pipe = S.make_pipeline(tmp_path, scripts, {"1.media.py": True}, {}, {"1.media.py": ["--sleep", "60"]})
    try:
        code, output = _start_and_signal(tmp_path, pipe, S.service_env(tmp_path, comfy_dir=comfy), signal.SIGTERM)
        assert code == 143, output
        assert {"kind": "signal", "signal": int(signal.SIGTERM), "script": "1.media.py"} in S.events(pipe)
        assert [e["script"] for e in S.runs(pipe)] == ["1.media.py"]
        assert markers(pipe) == [("START", "1.media.py", None), ("END", "1.media.py", 130)]
        assert "interrupted (SIGTERM) during 1.media.py" in output
        (start,) = S.comfy_starts(comfy)
        assert S.pid_gone(start["main"]) and S.pid_gone(start["server"])
    finally:
        cleanup_comfy(comfy)


def test_ctrl_c_is_passed_on_and_a_stubborn_script_is_killed_after_the_grace(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = ["1.stubborn.py", "2.never.py"]
    pipe = S.make_pipeline(tmp_path, scripts, {}, {}, {"1.stubborn.py": ["--sleep", "60", "--ignore-term"]})
    env = dict(S.service_env(tmp_path, engine="offline"), SERVICE_STOP_GRACE="1")
    code, output = _start_and_signal(tmp_path, pipe, env, signal.SIGINT)
    assert code == 130, output
    assert {"kind": "ignored", "signal": int(signal.SIGINT), "script": "1.stubborn.py"} in S.events(pipe)
    assert markers(pipe) == [("START", "1.stubborn.py", None), ("END", "1.stubborn.py", 128 + signal.SIGKILL)]
    assert "engine: offline (PIPELINE_ENGINE=offline) — outputs are previews" in output


def test_a_name_shared_with_another_pipeline_means_this_pipelines_own_script() -> None:
    from pathlib import Path as _P

    from common.run.steps import _resolve_position, build_steps

    steps = build_steps(_P("/x/gen.video"), ["../../gen.image/scripts/1.story.py", "1.story.py", "2.motion.py"],
                        {}, {}, {})
    assert _resolve_position("1.story", steps, "--from") == 2
    assert _resolve_position("2.mo", steps, "--from") == 3
