"""Which Python starts ComfyUI (common.services.comfyui.interpreter), and what a ComfyUI that exits
before it is ready tells the user: real folders laid out like real installs, real processes."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

from common.config.settings import load_settings  # noqa: E402
from common.engines.choice import choose_engines  # noqa: E402
from common.run.errors import ServiceError  # noqa: E402
from common.services.comfyui.interpreter import comfyui_python  # noqa: E402
from common.services.lifecycle import ServiceManager  # noqa: E402
from common.services.processes import command_line  # noqa: E402

pytestmark = pytest.mark.timeout(60)
posix_only = pytest.mark.skipif(os.name == "nt", reason="a shell script stands in for the venv's python")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def _settings(comfy: Path, python: str = "") -> SimpleNamespace:
    return SimpleNamespace(COMFYUI_DIR=str(comfy), COMFYUI_PYTHON=python)


def _manager(tmp_path: Path, comfy: Path, lines: list[str], **environ: str) -> ServiceManager:
    """The services a run would have with only these settings given (COMFYUI_PYTHON left out unless given)."""
    settings = load_settings(tmp_path, environ={"COMFYUI_DIR": str(comfy), "SERVICE_START_TIMEOUT": "30",
                                                "SERVICE_STOP_GRACE": "5",
                                                "COMFYUI_BASE_URL": f"http://127.0.0.1:{S.free_port()}", **environ})
    return ServiceManager.from_settings(settings, tmp_path, use_llm=False, say=lines.append)


# --------------------------------------------------------------------------- discovery


@posix_only
def test_posix_prefers_comfyuis_venv_then_dot_venv_then_ours(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path, crash="x")
    used = tmp_path / "used.txt"
    own, why = comfyui_python(_settings(comfy), windows=False)
    assert own == sys.executable and why == "the pipeline's own Python, as COMFYUI_DIR has no venv or .venv"
    # The portable build's Python is a Windows .exe: never tried here.
    _touch(tmp_path / "python_embeded" / "python.exe").chmod(0o755)
    assert comfyui_python(_settings(comfy), windows=False)[0] == sys.executable
    dot = S.make_python(comfy / ".venv" / "bin" / "python", used)
    assert comfyui_python(_settings(comfy), windows=False) == (str(dot), ".venv inside COMFYUI_DIR")
    venv = S.make_python(comfy / "venv" / "bin" / "python", used)
    assert comfyui_python(_settings(comfy), windows=False) == (str(venv), "venv inside COMFYUI_DIR")
    # A venv whose python cannot be run (not executable) is passed over, not chosen to fail later.
    venv.chmod(0o644)
    assert comfyui_python(_settings(comfy), windows=False) == (str(dot), ".venv inside COMFYUI_DIR")
    # COMFYUI_PYTHON, when set, wins over everything found.
    assert comfyui_python(_settings(comfy, "/opt/py/bin/python3"), windows=False) == (
        "/opt/py/bin/python3", "COMFYUI_PYTHON")


def test_windows_prefers_venv_then_dot_venv_then_the_portable_builds_python(tmp_path: Path) -> None:
    # The portable build: <root>/python_embeded/python.exe beside <root>/ComfyUI/main.py.
    comfy = S.make_comfyui_dir(tmp_path, crash="x")
    own, why = comfyui_python(_settings(comfy), windows=True)
    assert own == sys.executable and why.endswith("has no venv or .venv and no ..\\python_embeded beside it")
    _touch(comfy / "venv" / "bin" / "python")  # a POSIX venv's layout means nothing on Windows
    assert comfyui_python(_settings(comfy), windows=True)[0] == sys.executable
    portable = _touch(tmp_path / "python_embeded" / "python.exe")
    assert comfyui_python(_settings(comfy), windows=True) == (
        str(portable), "the Windows portable build's python_embeded")
    dot = _touch(comfy / ".venv" / "Scripts" / "python.exe")
    assert comfyui_python(_settings(comfy), windows=True) == (str(dot), ".venv inside COMFYUI_DIR")
    venv = _touch(comfy / "venv" / "Scripts" / "python.exe")
    assert comfyui_python(_settings(comfy), windows=True) == (str(venv), "venv inside COMFYUI_DIR")
    assert comfyui_python(_settings(comfy, "C:\\Py\\python.exe"), windows=True) == (
        "C:\\Py\\python.exe", "COMFYUI_PYTHON")


@posix_only
def test_a_relative_comfyui_dir_gives_a_path_that_works_from_comfyuis_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ComfyUI runs with COMFYUI_DIR as its working folder: a relative interpreter path would miss."""
    comfy = S.make_comfyui_dir(tmp_path, crash="x")
    S.make_python(comfy / "venv" / "bin" / "python", tmp_path / "used.txt")
    monkeypatch.chdir(tmp_path)
    python, _ = comfyui_python(_settings(Path("ComfyUI")), windows=False)
    assert Path(python).is_absolute() and Path(python) == comfy / "venv" / "bin" / "python"


def test_an_empty_comfyui_python_setting_means_find_it(tmp_path: Path) -> None:
    """The setting's default is empty (not our sys.executable), so COMFYUI_DIR alone is enough."""
    comfy = S.make_comfyui_dir(tmp_path, crash="x")
    _touch(comfy / "venv" / "Scripts" / "python.exe")
    settings = load_settings(tmp_path, environ={"COMFYUI_DIR": str(comfy)})
    assert settings.COMFYUI_PYTHON == ""
    assert comfyui_python(settings, windows=True)[1] == "venv inside COMFYUI_DIR"
    given = load_settings(tmp_path, environ={"COMFYUI_DIR": str(comfy), "COMFYUI_PYTHON": sys.executable})
    assert comfyui_python(given, windows=True) == (sys.executable, "COMFYUI_PYTHON")


# --------------------------------------------------------------------------- the engine line, --dry-run


def test_the_command_line_shown_is_the_one_this_system_would_run() -> None:
    """--dry-run and comfyui.log show ComfyUI's command so it can be pasted into this system's shell."""
    argv = ["C:\\My Py\\python.exe", "main.py", "--listen", "127.0.0.1", "--output-directory", "D:\\out dir"]
    assert command_line(argv, windows=True) == (
        '"C:\\My Py\\python.exe" main.py --listen 127.0.0.1 --output-directory "D:\\out dir"')
    assert command_line(["/opt/my py/python", "main.py", "--cpu"], windows=False) == "'/opt/my py/python' main.py --cpu"


@posix_only
def test_the_engine_line_names_the_python_that_will_start_comfyui_and_why(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path, crash="x")
    venv = S.make_python(comfy / "venv" / "bin" / "python", tmp_path / "used.txt")
    base = dict(PIPELINE_ENGINE="auto", PIPELINE_TEXT_ENGINE="offline", COMFYUI_DIR=str(comfy), COMFYUI_PYTHON="",
                COMFYUI_BASE_URL=f"http://127.0.0.1:{S.free_port()}",
                LM_STUDIO_BASE_URL=f"http://127.0.0.1:{S.free_port()}/v1", LM_STUDIO_CMD="no-such-lms-command-xyz")
    auto = choose_engines(SimpleNamespace(**base))
    assert auto.media == "comfyui"
    assert f"ComfyUI will be started from {comfy} with {venv} (venv inside COMFYUI_DIR)" in auto.reason
    forced = choose_engines(SimpleNamespace(**dict(base, PIPELINE_ENGINE="comfyui", COMFYUI_PYTHON=sys.executable)))
    assert f"(when not running: started from {comfy} with {sys.executable} (COMFYUI_PYTHON))" in forced.reason


# --------------------------------------------------------------------------- starting it


@posix_only
def test_comfyui_is_started_with_the_venv_found_in_comfyui_dir(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    used = tmp_path / "used.txt"
    venv = S.make_python(comfy / "venv" / "bin" / "python", used)
    lines: list[str] = []
    manager = _manager(tmp_path, comfy, lines, COMFYUI_EXTRA_ARGS="--cpu --preview-method auto")
    assert manager.comfyui is not None
    try:
        manager.prepare_for(True, False)
        (start,) = S.comfy_starts(comfy)
        assert start["argv"][-3:] == ["--cpu", "--preview-method", "auto"]  # real flags the fake accepts
        assert used.read_text().split() == ["main.py", *start["argv"]]  # run by the venv's python
        assert any(f"services: starting ComfyUI (pid {start['main']})" in line
                   and f"with {venv} (venv inside COMFYUI_DIR)" in line for line in lines)
    finally:
        manager.shutdown()
        for start in S.comfy_starts(comfy):
            S.kill_pid(start["server"])
            S.kill_pid(start["main"])


def test_a_comfyui_that_exits_at_once_names_comfyui_python_and_extra_args_with_its_log(tmp_path: Path) -> None:
    """COMFYUI_DIR alone, no venv in it: ComfyUI runs with our Python, which has no torch."""
    comfy = S.make_comfyui_dir(tmp_path, crash="ModuleNotFoundError: No module named 'torch'")
    lines: list[str] = []
    manager = _manager(tmp_path, comfy, lines)
    with pytest.raises(ServiceError) as caught:
        manager.prepare_for(True, False)
    message = str(caught.value)
    sentence, _, tail = message.partition("\n")
    assert sentence.startswith("ComfyUI exited with code 1 before it was ready")
    assert f"it ran with {sys.executable} (the pipeline's own Python, as COMFYUI_DIR has no venv" in sentence
    assert "set COMFYUI_PYTHON to the Python of your ComfyUI install" in sentence
    assert "COMFYUI_EXTRA_ARGS (e.g. --cpu without a GPU" in sentence
    assert str(tmp_path / "output" / "comfyui.log") in sentence and sentence.endswith("its last lines:")
    assert "No module named 'torch'" in tail
    assert manager.comfyui is not None and not manager.comfyui.started_by_us


@posix_only
def test_a_flag_comfyui_does_not_know_ends_it_with_exit_2_and_points_at_extra_args(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path)
    S.make_python(comfy / "venv" / "bin" / "python", tmp_path / "used.txt")
    lines: list[str] = []
    manager = _manager(tmp_path, comfy, lines, COMFYUI_EXTRA_ARGS="--cpu --no-such-flag")
    try:
        with pytest.raises(ServiceError) as caught:
            manager.prepare_for(True, False)
        message = str(caught.value)
        assert message.startswith("ComfyUI exited with code 2 before it was ready")
        assert "(venv inside COMFYUI_DIR)" in message and "COMFYUI_EXTRA_ARGS" in message
        assert "unrecognized arguments: --no-such-flag" in message.splitlines()[-1]
    finally:
        manager.shutdown()
        for start in S.comfy_starts(comfy):
            S.kill_pid(start["server"])
            S.kill_pid(start["main"])
