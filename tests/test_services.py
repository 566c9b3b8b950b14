"""Service lifecycle against real processes: a fake ComfyUI install, fake_llm and a fake `lms`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

from common.engines.choice import choose_engines, engines_from_env  # noqa: E402
from common.run.errors import ServiceError  # noqa: E402
from common.config.settings import load_settings  # noqa: E402
from common.services.comfyui.service import ComfyUIService  # noqa: E402
from common.services.lifecycle import ServiceManager  # noqa: E402
from common.services.llm_server import LLMService  # noqa: E402
from common.services.processes import stop_process_tree, wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake_comfyui() -> None:
    S.require_fake(S.FAKE_COMFYUI, wait=5)


def comfy_service(tmp_path: Path, comfy_dir: Path, port: int, lines: list[str] | None = None,
                  extra_args: tuple[str, ...] = ()) -> ComfyUIService:
    return ComfyUIService(f"http://127.0.0.1:{port}", comfy_dir, sys.executable, tmp_path / "out" / "comfyui.log",
                          extra_args, start_timeout=30, stop_grace=5,
                          say=(lines.append if lines is not None else None))


# --------------------------------------------------------------------------- wait_until


def test_wait_until_returns_once_the_check_passes() -> None:
    calls = []

    def check() -> bool:
        calls.append(1)
        return len(calls) >= 3

    took = wait_until(check, timeout=10, what="thing")
    assert len(calls) == 3 and took >= 0


def test_wait_until_gives_up_after_its_timeout_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("line one\nport already in use\n")
    with pytest.raises(ServiceError, match="not ready after") as info:
        wait_until(lambda: False, timeout=0.3, what="Thing", log_path=log)
    assert "port already in use" in str(info.value)


def test_wait_until_ends_at_once_when_the_process_dies(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([sys.executable, "-c", "print('boom: no module torch'); raise SystemExit(7)"],
                                stdout=handle, stderr=subprocess.STDOUT)
    try:
        # The timeout is far beyond the test's own: only the dead-process rule can end this wait.
        with pytest.raises(ServiceError, match="exited with code 7") as info:
            wait_until(lambda: False, timeout=600, what="ComfyUI", process=proc, log_path=log)
        assert "boom: no module torch" in str(info.value)
    finally:
        proc.wait(5)


def test_stop_process_tree_kills_a_tree_that_ignores_polite_signals(tmp_path: Path) -> None:
    pids = tmp_path / "pids.txt"
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        S.wait_for(lambda: pids.is_file() and pids.read_text().strip(), what="child started")
        child = int(pids.read_text())
        stop_process_tree(proc, grace=0.4)
        assert proc.poll() is not None
        S.wait_for(lambda: S.pid_gone(child), timeout=5, what="grandchild gone")
    finally:
        S.kill_pid(proc.pid)
        if pids.is_file() and pids.read_text().strip():
            S.kill_pid(int(pids.read_text()))


# --------------------------------------------------------------------------- ComfyUI


def test_comfyui_is_started_from_main_py_and_stopped_as_a_tree(tmp_path: Path, fake_comfyui: None) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    port = S.free_port()
    lines: list[str] = []
    # The server listens only after a delay: readiness must be noticed by polling, whenever it comes.
    service = comfy_service(tmp_path, comfy, port, lines, extra_args=("--startup-delay", "0.5"))
    try:
        service.ensure_running()
        assert service.started_by_us and not service.adopted
        assert S.http_ok(f"http://127.0.0.1:{port}/system_stats")
        (start,) = S.comfy_starts(comfy)
        assert start["argv"] == ["--listen", "127.0.0.1", "--port", str(port), "--startup-delay", "0.5"]
        log_text = (tmp_path / "out" / "comfyui.log").read_text()
        assert "Starting server" in log_text
        service.ensure_running()  # already ours: kept, not started again
        assert len(S.comfy_starts(comfy)) == 1
        service.stop()
        assert not service.started_by_us
        S.wait_for(lambda: S.pid_gone(start["main"]) and S.pid_gone(start["server"]), timeout=5,
                   what="ComfyUI tree gone")
        assert not S.http_ok(f"http://127.0.0.1:{port}/system_stats")
        assert any("starting ComfyUI" in line for line in lines)
        assert any("stopped ComfyUI" in line for line in lines)
    finally:
        service.stop()
        for start in S.comfy_starts(comfy):
            S.kill_pid(start["server"])
            S.kill_pid(start["main"])


def test_a_comfyui_still_loading_is_waited_for_not_raced(tmp_path: Path, fake_comfyui: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ComfyUI loads its nodes for seconds before it listens, its command line being just ours:
    the process is up long before the server answers, and only the answer means ready."""
    monkeypatch.setenv("FAKE_COMFYUI_STARTUP_DELAY", "2")
    comfy = S.make_comfyui_dir(tmp_path)
    port = S.free_port()
    lines: list[str] = []
    service = comfy_service(tmp_path, comfy, port, lines)
    checks: list[bool] = []
    asked = service.answers

    def answers(timeout: float = 0.5) -> bool:
        checks.append(asked(timeout))
        return checks[-1]

    service.answers = answers  # type: ignore[method-assign]
    try:
        service.ensure_running()
        assert S.http_ok(f"http://127.0.0.1:{port}/system_stats")  # ready when it returned, not later
        # Not answering before the start, then not yet while it loaded, then ready: polled until it was.
        assert checks[0] is False and checks[-1] is True and checks.count(False) >= 2
        (start,) = S.comfy_starts(comfy)
        assert start["argv"] == ["--listen", "127.0.0.1", "--port", str(port)]
        log_text = (tmp_path / "out" / "comfyui.log").read_text()
        assert log_text.index("loading nodes for 2 s") < log_text.index("To see the GUI go to")
        assert any(line.startswith("services: ComfyUI ready in") for line in lines)
    finally:
        service.stop()
        for start in S.comfy_starts(comfy):
            S.kill_pid(start["server"])
            S.kill_pid(start["main"])


def test_a_running_comfyui_is_adopted_freed_and_never_stopped(tmp_path: Path, fake_comfyui: None) -> None:
    port = S.free_port()
    record = tmp_path / "record.jsonl"
    comfy = S.make_comfyui_dir(tmp_path)
    lines: list[str] = []
    with S.running_fake_comfyui(port, record) as server:
        service = comfy_service(tmp_path, comfy, port, lines)
        service.ensure_running()
        assert service.adopted and not service.started_by_us
        service.release()
        assert any(e.get("event") == "free" for e in S.read_jsonl(record))
        service.stop()
        service.release()  # nothing used since the last free: no second POST /free
        assert sum(e.get("event") == "free" for e in S.read_jsonl(record)) == 1
        assert server.poll() is None and S.http_ok(f"http://127.0.0.1:{port}/system_stats")
        assert not S.comfy_starts(comfy)
        assert any("adopted the ComfyUI" in line for line in lines)


def test_missing_comfyui_install_is_one_clear_sentence(tmp_path: Path) -> None:
    service = comfy_service(tmp_path, tmp_path / "nowhere", S.free_port())
    with pytest.raises(ServiceError) as info:
        service.ensure_running()
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "ComfyUI/README.md" in message


def test_a_remote_comfyui_that_does_not_answer_is_not_started_here(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path, crash="should never run")
    service = ComfyUIService("http://192.0.2.1:8188", comfy, sys.executable, tmp_path / "c.log")
    with pytest.raises(ServiceError, match="start it there yourself"):
        service.ensure_running()
    assert not (tmp_path / "c.log").exists()


def test_a_comfyui_that_crashes_at_start_fails_fast_with_its_log(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path, crash="ModuleNotFoundError: No module named 'torch'")
    service = ComfyUIService(f"http://127.0.0.1:{S.free_port()}", comfy, sys.executable, tmp_path / "c.log",
                             start_timeout=600)
    with pytest.raises(ServiceError, match="exited with code 1") as info:
        service.ensure_running()
    assert "No module named 'torch'" in str(info.value)
    assert not service.started_by_us


@pytest.mark.parametrize("flags, error", [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--cpu", "--lowvram"], "argument --lowvram: not allowed with argument --cpu"),
    (["--preview-method", "sometimes"], "argument --preview-method: invalid choice"),
])
def test_the_fake_comfyui_rejects_flags_as_comfyuis_argparse_does(flags: list[str], error: str) -> None:
    result = subprocess.run([sys.executable, str(S.FAKE_COMFYUI), "--port", "0", *flags], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ") and error in result.stderr


# --------------------------------------------------------------------------- LLM


def test_llm_server_is_started_with_lms_loaded_then_unloaded_and_stopped(tmp_path: Path, lms_state: Path) -> None:
    port = S.free_port()
    lines: list[str] = []
    service = LLMService(f"http://127.0.0.1:{port}/v1", S.lms_command(), "qwen/qwen3-14b", start_timeout=30,
                         say=lines.append)
    try:
        service.ensure_running()
        assert service.started_by_us and S.http_ok(f"http://127.0.0.1:{port}/v1/models")
        service.ensure_running()  # kept; the model is already loaded, so no second load
        calls = S.lms_calls(lms_state)
        assert ["server", "start", "--port", str(port)] in calls
        assert [c for c in calls if c[0] == "load"] == [
            ["load", "qwen/qwen3-14b", "--identifier", "qwen/qwen3-14b", "-y"]]
        service.release()
        calls = S.lms_calls(lms_state)
        assert calls.index(["unload", "--all"]) < calls.index(["server", "stop"])
        assert not service.started_by_us
        assert not S.http_ok(f"http://127.0.0.1:{port}/v1/models")
        assert any("starting the LLM server" in line for line in lines)
    finally:
        service.stop()


def test_a_step_with_its_own_model_gets_it_loaded_in_place_of_the_other(tmp_path: Path, lms_state: Path) -> None:
    """2.motion.py asks MODEL_MOTION_GENERATION (a vision model, gemma 3 here): loaded for it, one at a time."""
    port = S.free_port()
    service = LLMService(f"http://127.0.0.1:{port}/v1", S.lms_command(), "qwen/qwen3-14b", start_timeout=30,
                         say=lambda _: None)
    manager = ServiceManager(None, service, say=lambda _: None)
    try:
        manager.prepare_for(False, True)
        manager.prepare_for(False, True, llm_model="google/gemma-3-12b")
        manager.prepare_for(False, True, llm_model="google/gemma-3-12b")  # already loaded: nothing to do
        calls = [c for c in S.lms_calls(lms_state) if c[0] in ("load", "unload")]
        assert calls == [["load", "qwen/qwen3-14b", "--identifier", "qwen/qwen3-14b", "-y"], ["unload", "--all"],
                         ["load", "google/gemma-3-12b", "--identifier", "google/gemma-3-12b", "-y"]]
    finally:
        manager.shutdown()


def test_an_adopted_lm_studio_is_only_unloaded(tmp_path: Path, lms_state: Path) -> None:
    port = S.free_port()
    subprocess.run([sys.executable, str(S.FAKE_LMS), "server", "start", "--port", str(port)],
                   check=True, timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    service = LLMService(f"http://127.0.0.1:{port}/v1", S.lms_command(), "qwen/qwen3-14b", say=lambda _: None)
    service.ensure_running()
    assert service.adopted and not service.started_by_us
    service.release()
    service.stop()
    calls = S.lms_calls(lms_state)
    assert ["unload", "--all"] in calls
    assert ["server", "stop"] not in calls
    assert S.http_ok(f"http://127.0.0.1:{port}/v1/models")


def test_an_adopted_server_that_is_not_lm_studio_is_left_alone(tmp_path: Path, lms_state: Path) -> None:
    port = S.free_port()
    lines: list[str] = []
    with S.running_fake_llm(port) as server:
        service = LLMService(f"http://127.0.0.1:{port}/v1", S.lms_command(), "qwen/qwen3-14b", say=lines.append)
        service.ensure_running()
        service.release()
        service.stop()
        assert server.poll() is None
    calls = S.lms_calls(lms_state)
    assert not [c for c in calls if c[0] in ("load", "unload") or c[:2] == ["server", "stop"]]
    assert any("not LM Studio; nothing to free" in line for line in lines)


def test_no_llm_server_and_no_lms_is_one_clear_sentence() -> None:
    service = LLMService(f"http://127.0.0.1:{S.free_port()}/v1", "no-such-lms-command-xyz", "m")
    with pytest.raises(ServiceError, match="LM_STUDIO_CMD"):
        service.ensure_running()


# --------------------------------------------------------------------------- manager


def test_manager_never_keeps_both_on_the_gpu_and_shutdown_is_idempotent(
    tmp_path: Path, lms_state: Path, fake_comfyui: None,
) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    comfy_port, llm_port = S.free_port(), S.free_port()
    comfyui = comfy_service(tmp_path, comfy, comfy_port)
    llm = LLMService(f"http://127.0.0.1:{llm_port}/v1", S.lms_command(), "qwen/qwen3-14b", start_timeout=30,
                     say=lambda _: None)
    try:
        with ServiceManager(comfyui, llm, say=lambda _: None) as manager:
            manager.prepare_for(needs_comfyui=True, needs_llm=False)
            (start,) = S.comfy_starts(comfy)
            manager.prepare_for(needs_comfyui=False, needs_llm=True)
            assert S.pid_gone(start["server"]) and S.pid_gone(start["main"])
            assert llm.started_by_us
            manager.prepare_for(needs_comfyui=True, needs_llm=True)  # a script that needs both gets both
            assert comfyui.started_by_us and llm.started_by_us
        assert not comfyui.started_by_us and not llm.started_by_us
        manager.shutdown()
        for start in S.comfy_starts(comfy):
            assert S.pid_gone(start["server"]) and S.pid_gone(start["main"])
        assert not S.http_ok(f"http://127.0.0.1:{llm_port}/v1/models")
    finally:
        comfyui.stop()
        for start in S.comfy_starts(comfy):
            S.kill_pid(start["server"])
            S.kill_pid(start["main"])


# --------------------------------------------------------------------------- engine choice


def settings_for(tmp_path: Path, **values: str) -> SimpleNamespace:
    base = dict(PIPELINE_ENGINE="auto", PIPELINE_TEXT_ENGINE="auto",
                COMFYUI_BASE_URL=f"http://127.0.0.1:{S.free_port()}", COMFYUI_DIR=str(tmp_path / "none"),
                LM_STUDIO_BASE_URL=f"http://127.0.0.1:{S.free_port()}/v1", LM_STUDIO_CMD="no-such-lms-command-xyz")
    base.update(values)
    return SimpleNamespace(**base)


def test_auto_with_nothing_available_is_offline_and_says_why(tmp_path: Path) -> None:
    choice = choose_engines(settings_for(tmp_path))
    assert (choice.media, choice.text) == ("offline", "offline")
    assert choice.reason.startswith("engine: offline (ComfyUI not found at")
    assert "no-such-lms-command-xyz" in choice.reason and choice.reason.endswith("outputs are previews")
    assert "\n" not in choice.reason


def test_auto_counts_a_startable_comfyui_and_an_lms_command(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path, crash="x")
    settings = settings_for(tmp_path, COMFYUI_DIR=str(comfy), LM_STUDIO_CMD=S.lms_command())
    choice = choose_engines(settings)
    assert (choice.media, choice.text) == ("comfyui", "llm")
    # A script run alone never starts servers, so "startable" does not count there.
    alone = engines_from_env(settings, environ={})
    assert (alone.media, alone.text) == ("offline", "offline")


def test_auto_decides_media_and_text_independently(tmp_path: Path) -> None:
    port = S.free_port()
    with S.running_fake_llm(port):
        settings = settings_for(tmp_path, LM_STUDIO_BASE_URL=f"http://127.0.0.1:{port}/v1")
        choice = choose_engines(settings)
        alone = engines_from_env(settings, environ={})
    assert (choice.media, choice.text) == ("offline", "llm")
    assert (alone.media, alone.text) == ("offline", "llm")
    assert "media outputs are previews" in choice.reason


def test_forced_engines_and_the_orchestrators_exported_choice(tmp_path: Path) -> None:
    offline = choose_engines(settings_for(tmp_path, PIPELINE_ENGINE="offline"))
    assert (offline.media, offline.text) == ("offline", "offline")
    text_only = choose_engines(settings_for(tmp_path, PIPELINE_ENGINE="offline", PIPELINE_TEXT_ENGINE="llm"))
    assert (text_only.media, text_only.text) == ("offline", "llm")  # previews, with the real LLM's text
    forced = choose_engines(settings_for(tmp_path, PIPELINE_ENGINE="comfyui"))
    assert (forced.media, forced.text) == ("comfyui", "llm")
    child = engines_from_env(settings_for(tmp_path),
                             environ={"PIPELINE_ENGINE": "comfyui", "PIPELINE_TEXT_ENGINE": "offline"})
    assert (child.media, child.text) == ("comfyui", "offline")
    # As a child script sees it: the orchestrator's exports arrive through load_settings.
    settings = load_settings(tmp_path, environ={"PIPELINE_ENGINE": "offline", "PIPELINE_TEXT_ENGINE": "llm"})
    seen = engines_from_env(settings, environ={})
    assert (seen.media, seen.text) == ("offline", "llm")
    assert "media outputs are previews" in seen.reason


def test_command_settings_lose_their_quotes_on_windows_too() -> None:
    """COMFYUI_EXTRA_ARGS / LM_STUDIO_CMD / NOTIFY_CMD: Windows splitting keeps backslashes and, with
    shlex's non-POSIX mode, used to keep the quotes too, so a quoted path arrived with them."""
    from common.services.processes import split_command

    text = '--lowvram --output-directory "C:\\My Renders\\out" --preview-method auto'
    assert split_command(text, windows=True) == ["--lowvram", "--output-directory", "C:\\My Renders\\out",
                                                 "--preview-method", "auto"]
    assert split_command("--cpu --extra-model-paths-config '/home/me/my paths.yaml'", windows=False) == [
        "--cpu", "--extra-model-paths-config", "/home/me/my paths.yaml"]
