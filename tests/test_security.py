"""Proof suite: security. Secrets stay in their files, server-given names stay inside the output
folder, managed services listen on 127.0.0.1 only, and no Python file reaches for a shell."""
from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

from common.services.comfyui.service import ComfyUIService
from common.services.llm_server import LLMService
from common.config.settings import load_settings
from common.publish.auth import check_credentials
from tests.fakes import start_fake_comfyui
from tests.fakes.llm_helpers import free_port
from tests.support.project import REPO, copy_pipeline, env_for, run_generate, run_script
from tests.support.youtube import SECRETS, Transport, make_video, make_wav, token_ok, write_inputs, write_token

CLIENT_SECRETS = {"installed": {
    "client_id": "123-CLIENTID.apps.googleusercontent.com", "client_secret": "GOCSPX-CLIENT-SECRETS-FILE-VALUE",
    "project_id": "proof-suite", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    "token_uri": "https://oauth2.googleapis.com/token", "redirect_uris": ["http://localhost"],
}}
ALL_SECRETS = (*SECRETS, CLIENT_SECRETS["installed"]["client_secret"])


def youtube_env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in env_for(**extra).items() if not k.startswith("YOUTUBE_")}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {"video": make_video(folder / "video.mp4", seconds=1.0), "wav": make_wav(folder / "final.wav", seconds=1.0),
            "short": make_video(folder / "short.mp4", size="180x320", seconds=1.0)}


@pytest.fixture
def credentialed(tmp_path: Path, media) -> Path:
    """gen.audio with every step-12 input, a token.json and a client_secrets.json full of secrets."""
    pipeline = write_inputs(copy_pipeline(tmp_path), media, shorts=1)
    write_token(pipeline / "token.json", expired=True)
    (pipeline / "client_secrets.json").write_text(json.dumps(CLIENT_SECRETS), encoding="utf-8")
    return pipeline


def offline_env() -> dict[str, str]:
    """google-auth always refreshes at Google's own endpoint: send it to a closed local port instead."""
    closed = f"http://127.0.0.1:{free_port()}"
    return youtube_env(HTTPS_PROXY=closed, https_proxy=closed, HTTP_PROXY=closed, http_proxy=closed, NO_PROXY="")


def leaked(text: str) -> list[str]:
    return [secret for secret in ALL_SECRETS if secret in text]


def test_secrets_reach_neither_log_nor_terminal_nor_manifest(credentialed: Path) -> None:
    # Through the orchestrator: its YouTube preflight refreshes the token (refused here, no network) and stops.
    done = run_generate(credentialed, "--only", "12", env=offline_env(), timeout=180)
    assert done.returncode != 0 and "YouTube" in done.stdout + done.stderr
    assert leaked(done.stdout + done.stderr) == []
    assert leaked((credentialed / "log.txt").read_text(encoding="utf-8")) == []
    # The step itself, as a dry run: the manifest lists every request and holds no credential.
    done = run_script(credentialed, "12.youtube.py", "--dry-run", env=offline_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert leaked(done.stdout + done.stderr) == []
    manifest = credentialed / "output" / "upload.manifest.json"
    assert json.loads(manifest.read_text(encoding="utf-8"))["dry_run"] == "--dry-run"
    for path in (credentialed / "output").rglob("*"):
        if path.is_file():
            assert leaked(path.read_bytes().decode("utf-8", "replace")) == [], path
    keys = {"token", "refresh_token", "client_secret", "access_token"}

    def secret_keys(value: object) -> list[str]:
        if isinstance(value, dict):
            return [k for k in value if k in keys and value[k]] + [x for v in value.values() for x in secret_keys(v)]
        return [x for v in value for x in secret_keys(v)] if isinstance(value, list) else []

    assert secret_keys(json.loads(manifest.read_text(encoding="utf-8"))) == []


def test_a_garbled_token_is_named_without_quoting_it(credentialed: Path) -> None:
    (credentialed / "token.json").write_text(json.dumps({"refresh_token": SECRETS[1], "token": SECRETS[0]}),
                                             encoding="utf-8")
    done = run_script(credentialed, "12.youtube.py", "--check-auth", env=offline_env(), timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "token.json" in done.stderr
    assert leaked(done.stdout + done.stderr) == []


def test_a_refreshed_token_is_written_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    token = write_token(tmp_path / "token.json", expired=True)
    os.chmod(token, 0o666)
    old = os.umask(0)
    try:
        status = check_credentials(load_settings(tmp_path, environ={}), tmp_path, http=Transport([token_ok("ya29.FRESH")]))
    finally:
        os.umask(old)
    assert status.ok
    assert json.loads(token.read_text(encoding="utf-8"))["token"] == "ya29.FRESH"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]


def test_server_given_names_cannot_leave_the_output_folder(tmp_path: Path) -> None:
    """End to end through the speech engine: the fake lists every output as `../../../name` or an
    absolute path outside (and serves it under that name); the step must still write only inside."""
    pipeline = copy_pipeline(tmp_path / "work", story="[narrator] One.\n[female_ada] Two.\n")
    offline = env_for(PIPELINE_ENGINE="offline")
    assert run_script(pipeline, "1.character.py", "--mode", "voices", env=offline, timeout=60).returncode == 0
    with start_fake_comfyui(tmp_path / "server", job_seconds=0.02, evil_filenames=True) as comfy:
        env = env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=comfy.url, LM_STUDIO_CMD="no-such-lms-command")
        done = run_script(pipeline, "2.story.py", env=env, timeout=120)
        listed = [name for e in comfy.record_events("job_done") for name in e["outputs"]]
    assert done.returncode == 0, done.stderr
    assert listed and all(name.startswith(("../", "/")) for name in listed)
    assert (pipeline / "output" / "story.wav").stat().st_size > 44
    served = {Path(name).name for name in listed}
    fake_output = tmp_path / "server" / "comfyui" / "output"
    strays = [p for p in tmp_path.rglob("*") if p.is_file() and p.name in served and fake_output not in p.parents]
    assert strays == []
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["gen.audio"]
    assert not (tmp_path / "server" / "comfyui" / "escaped").exists()


def test_managed_services_listen_on_localhost_only(tmp_path: Path) -> None:
    comfy = ComfyUIService("http://127.0.0.1:8188", tmp_path, "python", tmp_path / "comfy.log")
    command = comfy.command()
    assert command[command.index("--listen") + 1] == "127.0.0.1"
    assert "0.0.0.0" not in command

    llm = LLMService("http://127.0.0.1:1234/v1", "lms", "some-model", start_timeout=1, say=lambda _: None)
    calls: list[tuple[str, ...]] = []

    class Stop(Exception):
        pass

    def record(*args: str, timeout: float = 0) -> str:
        calls.append(args)
        raise Stop

    llm._lms_checked = record  # type: ignore[method-assign]
    llm._check_startable = lambda: None  # type: ignore[method-assign]
    llm.answers = lambda *a, **k: False  # type: ignore[method-assign]
    with pytest.raises(Stop):
        llm.ensure_running()
    # `lms server start` binds to localhost unless "serve on local network" is set in LM Studio;
    # we never ask for more (no --bind, no --host, no --cors).
    assert calls == [("server", "start", "--port", "1234")]
    fakes = (REPO / "tests" / "fakes")
    for fake in ("fake_comfyui.py", "fake_llm.py", "fake_lms.py"):
        # fake_comfyui.py only starts the package tests/fakes/comfyui/, which holds the server.
        package = sorted((fakes / "comfyui").glob("*.py")) if fake == "fake_comfyui.py" else []
        source = "".join(p.read_text(encoding="utf-8") for p in [fakes / fake, *package])
        assert "0.0.0.0" not in source and "127.0.0.1" in source, fake


def _python_files() -> list[Path]:
    skip = {".git", "__pycache__", "ComfyUI", "node_modules", ".venv", "venv", "story_pipelines.egg-info"}
    return [p for p in REPO.rglob("*.py") if not skip.intersection(p.relative_to(REPO).parts)]


def test_no_shell_anywhere_in_our_python() -> None:
    problems = []
    files = _python_files()
    assert len(files) > 50
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                    problems.append(f"{where} shell={ast.unparse(keyword.value)}")
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "os" \
                    and func.attr in ("system", "popen"):
                problems.append(f"{where} os.{func.attr}")
    assert problems == []
