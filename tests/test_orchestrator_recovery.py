"""Restart-and-retry: a script that exits 5 because ComfyUI died gets the server restarted when it is ours.

The real 7.sfx.py runs against the fake ComfyUI (started by the orchestrator from a COMFYUI_DIR
whose main.py runs fake_comfyui.py, or already running and adopted). The test kills the
server process, found by its listening port, while the first job runs; the script's client
then gives up with exit 5. Ours: restarted, the script runs again and finishes. Adopted: the
run stops, says why and that the user must restart it.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

from tests.support.project import copy_pipeline  # noqa: E402

pytestmark = pytest.mark.timeout(150)

EFFECTS = 3
SFX_STEP = "7"  # --only 7: 7.sfx.py, which needs ComfyUI


def _sfx_pipeline(tmp_path: Path) -> Path:
    """gen.audio with just what 7.sfx.py reads: input/4.sfx.txt and output/story.wav."""
    from common.media import ffmpeg as media

    pipeline = copy_pipeline(tmp_path / "project")
    effects = [f"A soft rustle number {n}" for n in range(1, EFFECTS + 1)]
    (pipeline / "input" / "4.sfx.txt").write_text("".join(f"0.500: Silence\n1.500: {e}\n" for e in effects),
                                                   encoding="utf-8")
    (pipeline / "output").mkdir()
    media.write_wav(pipeline / "output" / "story.wav", media.silence(2.0 * EFFECTS, 44100), 44100)
    return pipeline


def _env(tmp_path: Path, **kw: object) -> dict[str, str]:
    env = S.service_env(tmp_path, lms=False, engine="comfyui", **kw)  # type: ignore[arg-type]
    env.update({
        "PYTHONPATH": str(S.REPO),
        "COMFYUI_EXTRA_ARGS": "--job-seconds 1.5",  # long enough to be killed in the middle of the first job
        "COMFYUI_RETURN_WAIT": "2",
        "SERVICE_STOP_GRACE": "3",
    })
    return env


def _listener(port: int) -> psutil.Process | None:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            try:
                return psutil.Process(conn.pid)
            except psutil.NoSuchProcess:
                return None
    return None


def _run_and_kill_first_job(pipeline: Path, env: dict[str, str], record: Path, port: int
                            ) -> tuple[subprocess.CompletedProcess, int]:
    """generate.py --only 7; kill the process listening on the ComfyUI port when the first job is queued."""
    proc = subprocess.Popen([sys.executable, "generate.py", "--only", SFX_STEP], cwd=pipeline, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(e.get("event") == "prompt" for e in S.read_jsonl(record)):
                server = _listener(port)
                assert server is not None, "nothing listens on the ComfyUI port while a job runs"
                killed = server.pid
                server.kill()
                break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), killed


@pytest.fixture
def fake_comfyui() -> None:
    S.require_fake(S.FAKE_COMFYUI, wait=5)


def _run_with_our_comfyui(tmp_path: Path, **extra: str) -> tuple[Path, Path, Any, int | None]:
    """7.sfx.py through generate.py with a ComfyUI the run starts itself, its first job's server
    killed; returns (pipeline, the ComfyUI dir, the finished run, the killed server's pid)."""
    pipeline = _sfx_pipeline(tmp_path)
    record = tmp_path / "comfy_events.jsonl"
    comfy = S.make_comfyui_dir(tmp_path, record)
    port = S.free_port()
    env = dict(_env(tmp_path, comfy_dir=comfy, comfy_port=port), **extra)
    try:
        result, killed = _run_and_kill_first_job(pipeline, env, record, port)
    finally:
        for start in S.comfy_starts(comfy):
            S.kill_pid(start["server"])
            S.kill_pid(start["main"])
    return pipeline, comfy, result, killed


def test_our_comfyui_is_restarted_and_the_step_runs_again(tmp_path: Path, fake_comfyui: None) -> None:
    pipeline, comfy, result, killed = _run_with_our_comfyui(tmp_path)
    output = result.stdout + result.stderr
    assert killed, "the first job was never queued"
    assert result.returncode == 0, output
    starts = S.comfy_starts(comfy)
    assert len(starts) == 2 and starts[0]["server"] == killed, starts
    assert "restarting ComfyUI (restart 1 of 1) and running 7.sfx.py again" in output
    log = (pipeline / "log.txt").read_text(encoding="utf-8")
    assert log.count("===== START 7.sfx.py") == 2 and "(exit=5," in log and "(exit=0," in log
    assert (pipeline / "output" / "sfx.wav").stat().st_size > 0
    report = (pipeline / "output" / "report.md").read_text(encoding="utf-8")
    assert "7.sfx.py: ok after 1 server restart(s)" in report
    for start in starts:  # the run stopped what it started, both times
        assert S.pid_gone(start["server"]) and S.pid_gone(start["main"])


def test_no_restart_when_service_restarts_is_zero(tmp_path: Path, fake_comfyui: None) -> None:
    _, comfy, result, killed = _run_with_our_comfyui(tmp_path, SERVICE_RESTARTS="0")
    output = result.stdout + result.stderr
    assert killed and result.returncode == 5, output
    assert len(S.comfy_starts(comfy)) == 1
    assert "restarting" not in output


def test_an_adopted_comfyui_is_never_restarted(tmp_path: Path, fake_comfyui: None) -> None:
    pipeline = _sfx_pipeline(tmp_path)
    record = tmp_path / "comfy_events.jsonl"
    comfy = S.make_comfyui_dir(tmp_path / "ours", record)  # would be used if the run started one
    port = S.free_port()
    env = _env(tmp_path, comfy_dir=comfy, comfy_port=port)
    env["COMFYUI_EXTRA_ARGS"] = ""
    extra = ["--job-seconds", "1.5"]
    cmd = [sys.executable, str(S.FAKE_COMFYUI), "--port", str(port), "--record", str(record), *extra]
    theirs = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        S.wait_for(lambda: S.http_ok(f"http://127.0.0.1:{port}/system_stats") or theirs.poll() is not None,
                   what="the user's fake ComfyUI ready")
        result, killed = _run_and_kill_first_job(pipeline, env, record, port)
    finally:
        theirs.kill()
        theirs.wait(10)
    output = result.stdout + result.stderr
    assert killed == theirs.pid, "the user's server was not the one listening"
    assert result.returncode == 5, output
    assert S.comfy_starts(comfy) == [], "the run started a ComfyUI of its own"
    assert "not ours to restart: restart it yourself, then run generate.py again" in output
    assert "ComfyUI stopped answering" in output  # the script's own sentence is repeated
    report = (pipeline / "output" / "report.md").read_text(encoding="utf-8")
    assert "7.sfx.py: FAILED (exit 5)" in report and "restart it yourself" in report
