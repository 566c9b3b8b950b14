"""Servers a run started outlive it when it dies without a chance to stop them (kill -9, a dropped
SSH session): the next run must recognise them as its own, not as the user's.

Real processes throughout: the orchestrator (a temp pipeline's generate.py) starts the fake
ComfyUI (a COMFYUI_DIR whose main.py runs fake_comfyui.py) or the fake LLM server (through the
fake `lms`); the test SIGKILLs the orchestrator's own process group only, so the servers live
on, then runs again and watches what happens to them.
"""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(os.name == "nt", reason="POSIX signals")]

MEDIA = "1.media.py"
TEXT = "1.text.py"


@pytest.fixture
def fake_comfyui() -> None:
    S.require_fake(S.FAKE_COMFYUI, wait=5)


def records_path(pipe: Path) -> Path:
    return pipe / "output" / "tracking" / "services.json"


def cleanup_comfy(comfy: Path) -> None:
    for start in S.comfy_starts(comfy):
        S.kill_pid(start["server"])
        S.kill_pid(start["main"])


def run_generate(pipe: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(pipe / "generate.py"), *args], env=dict(env, TEST_EVENTS=str(pipe / "events.jsonl")),
                          capture_output=True, text=True, encoding="utf-8", timeout=90, stdin=subprocess.DEVNULL)


def start_sleeping_run(pipe: Path, env: dict[str, str], out: Path, **popen: object) -> subprocess.Popen:
    """generate.py in its own process group, returned once its script sleeps (services started)."""
    proc = subprocess.Popen([sys.executable, str(pipe / "generate.py")], stdin=subprocess.DEVNULL,
                            env=dict(env, TEST_EVENTS=str(pipe / "events.jsonl")), start_new_session=True,
                            **({"stdout": open(out, "w"), "stderr": subprocess.STDOUT} | popen))  # type: ignore[arg-type]
    S.wait_for(lambda: any(e["kind"] == "sleeping" for e in S.events(pipe)) or proc.poll() is not None,
               timeout=60, what="the script sleeping")
    assert proc.poll() is None, out.read_text() if out.is_file() else "the run ended early"
    return proc


def kill_run(proc: subprocess.Popen, script: str) -> None:
    """kill -9 of the orchestrator's process group: the servers (their own sessions) live on.
    The script (its own session too) is killed by the test: only the servers are the subject here."""
    scripts = [p for p in psutil.Process(proc.pid).children() if script in p.cmdline()]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for child in scripts:
        S.kill_pid(child.pid)


def kill_during_step(tmp_path: Path, scripts: list[str], comfy: dict[str, bool], llm: dict[str, bool],
                     env: dict[str, str]) -> Path:
    pipe = S.make_pipeline(tmp_path, scripts, comfy, llm, {scripts[0]: ["--sleep", "60"]})
    kill_run(start_sleeping_run(pipe, env, tmp_path / "first.out"), scripts[0])
    return pipe


# --------------------------------------------------------------------------- ComfyUI


def test_a_comfyui_left_by_a_killed_run_is_taken_over_and_stopped_at_the_end(tmp_path: Path,
                                                                              fake_comfyui: None) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    env = S.service_env(tmp_path, comfy_dir=comfy, lms=False, engine="comfyui")
    try:
        pipe = kill_during_step(tmp_path, [MEDIA], {MEDIA: True}, {}, env)
        (start,) = S.comfy_starts(comfy)
        assert not S.pid_gone(start["main"]), "the server did not outlive the killed run"
        (record,) = json.loads(records_path(pipe).read_text())["servers"]
        assert record["kind"] == "comfyui" and record["pid"] == start["main"]
        S.make_pipeline(tmp_path, [MEDIA], {MEDIA: True})  # the same pipeline, its script no longer sleeping
        dry = run_generate(pipe, env, "--dry-run")
        assert f"would take over the ComfyUI an earlier run started at {env['COMFYUI_BASE_URL']}" in dry.stdout
        assert "at the end: would stop ComfyUI" in dry.stdout
        assert not S.pid_gone(start["main"]) and records_path(pipe).is_file()  # a dry run changes nothing
        result = run_generate(pipe, env)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert len(S.comfy_starts(comfy)) == 1, "a second ComfyUI was started beside the orphan"
        assert S.runs(pipe)[-1]["comfy_up"]
        assert f"ComfyUI (pid {start['main']}) was started by an earlier run" in output
        assert "adopted the ComfyUI already running" not in output
        assert S.pid_gone(start["main"]) and S.pid_gone(start["server"]), "the orphan was not stopped"
        assert not records_path(pipe).exists()
    finally:
        cleanup_comfy(comfy)


def test_a_comfyui_left_by_a_killed_run_is_restarted_on_a_service_failure(tmp_path: Path,
                                                                           fake_comfyui: None) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    env = S.service_env(tmp_path, comfy_dir=comfy, lms=False, engine="comfyui")
    try:
        pipe = kill_during_step(tmp_path, [MEDIA], {MEDIA: True}, {}, env)
        (orphan,) = S.comfy_starts(comfy)
        S.make_pipeline(tmp_path, [MEDIA], {MEDIA: True}, {}, {MEDIA: ["--exit", "5"]})
        result = run_generate(pipe, env)
        output = result.stdout + result.stderr
        assert result.returncode == 5, output
        assert "restarting ComfyUI (restart 1 of 1)" in output
        assert "not ours to restart" not in output
        starts = S.comfy_starts(comfy)
        assert len(starts) == 2
        for start in starts:
            assert S.pid_gone(start["main"]) and S.pid_gone(start["server"])
        assert not records_path(pipe).exists()
    finally:
        cleanup_comfy(comfy)


def test_a_comfyui_left_by_a_killed_run_is_stopped_when_the_next_run_does_not_use_it(
    tmp_path: Path, fake_comfyui: None,
) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    env = S.service_env(tmp_path, comfy_dir=comfy, lms=False, engine="comfyui")
    try:
        pipe = kill_during_step(tmp_path, [MEDIA], {MEDIA: True}, {}, env)
        (start,) = S.comfy_starts(comfy)
        S.make_pipeline(tmp_path, [MEDIA], {MEDIA: True})
        result = run_generate(pipe, dict(env, PIPELINE_ENGINE="offline"))  # previews tonight: no ComfyUI needed
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert not S.runs(pipe)[-1]["comfy_up"], "the orphan still held the GPU while the script ran"
        assert S.pid_gone(start["main"]) and S.pid_gone(start["server"])
        assert len(S.comfy_starts(comfy)) == 1 and not records_path(pipe).exists()
    finally:
        cleanup_comfy(comfy)


def test_sighup_with_the_terminal_gone_stops_the_run_like_sigterm(tmp_path: Path, fake_comfyui: None) -> None:
    """An SSH session that drops: the terminal is gone (writes to it fail), then SIGHUP."""
    comfy = S.make_comfyui_dir(tmp_path)
    env = S.service_env(tmp_path, comfy_dir=comfy, lms=False, engine="comfyui")
    pipe = S.make_pipeline(tmp_path, [MEDIA, "2.never.py"], {MEDIA: True}, {}, {MEDIA: ["--sleep", "60"]})
    master, slave = pty.openpty()
    closing = threading.Event()

    def drain() -> None:  # a terminal that is read until the connection drops
        while not closing.is_set():
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        os.close(master)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = None
    try:
        proc = start_sleeping_run(pipe, env, tmp_path / "unused.out", stdout=slave, stderr=slave)
        os.close(slave)
        closing.set()
        reader.join(5)
        proc.send_signal(signal.SIGHUP)
        code = proc.wait(timeout=60)
        log = (pipe / "log.txt").read_text(encoding="utf-8")
        assert code == 129, log
        # The script was asked to stop the way it knows (SIGTERM: it checkpoints and exits).
        assert {"kind": "signal", "signal": int(signal.SIGTERM), "script": MEDIA} in S.events(pipe)
        assert [e["script"] for e in S.runs(pipe)] == [MEDIA]
        assert f"interrupted (SIGHUP: the terminal or SSH session closed) during {MEDIA}" in log
        (start,) = S.comfy_starts(comfy)
        assert S.pid_gone(start["main"]) and S.pid_gone(start["server"])
        assert "stopped ComfyUI" in log
        assert not records_path(pipe).exists()
    finally:
        closing.set()
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        cleanup_comfy(comfy)


def test_a_users_server_stays_theirs_and_a_dead_record_is_dropped(tmp_path: Path, fake_comfyui: None) -> None:
    """Same pid is not enough: a record whose process is gone (its pid taken by the user's server
    now, with another create time) is dropped, and the user's server is only adopted and freed."""
    from common.services.comfyui.service import ComfyUIService
    from common.services.records import ServerRecords

    port = S.free_port()
    records = ServerRecords(tmp_path / "services.json")
    lines: list[str] = []
    with S.running_fake_comfyui(port) as theirs:
        ctime = psutil.Process(theirs.pid).create_time()
        records.add("comfyui", f"http://127.0.0.1:{port}", theirs.pid, ctime - 100.0)
        records.add("comfyui", "http://127.0.0.1:9", 2 ** 22 + 7, 1.0)  # elsewhere, process long gone
        service = ComfyUIService(f"http://127.0.0.1:{port}", S.make_comfyui_dir(tmp_path), sys.executable,
                                 tmp_path / "c.log", start_timeout=30, stop_grace=5, say=lines.append,
                                 records=records)
        service.ensure_running()
        assert service.adopted and not service.started_by_us
        service.release()
        service.stop()
        assert theirs.poll() is None and S.http_ok(f"http://127.0.0.1:{port}/system_stats")
        assert records.load() == [r for r in records.load() if r.base_url == "http://127.0.0.1:9"]
        assert not [r for r in records.load() if r.base_url.endswith(f":{port}")]
        assert any("adopted the ComfyUI already running" in line for line in lines)


# --------------------------------------------------------------------------- the LLM server


def test_an_llm_server_left_by_a_killed_run_is_taken_over_and_stopped(tmp_path: Path) -> None:
    llm_port = S.free_port()
    env = S.service_env(tmp_path, llm_port=llm_port, engine="offline")
    env["PIPELINE_TEXT_ENGINE"] = "llm"
    state = tmp_path / "lms-state"
    try:
        pipe = kill_during_step(tmp_path, [TEXT], {}, {TEXT: True}, env)
        server_pid = json.loads((state / "server.json").read_text())["pid"]
        assert server_pid and not S.pid_gone(server_pid)
        S.make_pipeline(tmp_path, [TEXT], {}, {TEXT: True})
        result = run_generate(pipe, env)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        starts = [c for c in S.lms_calls(state) if c[:2] == ["server", "start"]]
        assert len(starts) == 1, "a second LLM server start was asked for"
        assert ["server", "stop"] in S.lms_calls(state)
        assert "was started by an earlier run" in output
        S.wait_for(lambda: S.pid_gone(server_pid), timeout=10, what="the orphan LLM server gone")
        assert not records_path(pipe).exists()
    finally:
        S.stop_fake_lms_server(state)
