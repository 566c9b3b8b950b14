"""Preflight: every problem of an overnight run found before any job is queued, on one screen."""
from __future__ import annotations

import socket
from pathlib import Path

from common.run.errors import InputError, PreflightError
from tests.fakes import start_fake_comfyui
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.project import copy_pipeline, env_for, run_generate

MISSING_NODE = "EmptyLatentAudio"  # used by gen.audio/workflow/sfx.json
MISSING_MODEL = "t5-base.safetensors"  # sfx.json's CLIPLoader clip_name


def _unused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _comfy_env(url: str, **extra: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=url, LM_STUDIO_BASE_URL=_unused_url(),
                   LM_STUDIO_MODEL="auto", LM_STUDIO_CMD="no-such-lms-command", **extra)


def test_missing_node_and_model_stop_the_run_before_any_job(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path / "project")
    with start_fake_comfyui(tmp_path, missing_node=[MISSING_NODE], missing_model=[MISSING_MODEL]) as fake:
        result = run_generate(pipeline, "--only", "7", env=_comfy_env(fake.url), timeout=60)
        screen = result.stdout + result.stderr
        assert result.returncode == PreflightError.exit_code, screen
        assert MISSING_NODE in screen and "ComfyUI/custom_nodes" in screen
        assert MISSING_MODEL in screen and "ComfyUI/models/text_encoders" in screen
        assert "2 problem(s)" in screen  # the whole list, not just the first
        assert fake.prompts() == [] and fake.jobs_run() == 0
    output = pipeline / "output"
    assert not (output / "tracking").exists() and not list(output.glob("*.wav"))
    assert {p.name for p in output.iterdir()} <= {"report.md", "report.html", "report.json", "comfyui.log"}
    report = (output / "report.md").read_text(encoding="utf-8")
    assert MISSING_MODEL in report and "python generate.py --check" in report


def test_check_alone_lists_problems_and_runs_nothing(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path / "project")
    with start_fake_comfyui(tmp_path, missing_model=[MISSING_MODEL]) as fake:
        result = run_generate(pipeline, "--check", "--only", "7", env=_comfy_env(fake.url), timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert MISSING_MODEL in result.stdout and "gen.audio/workflow/sfx.json" in result.stdout
        assert fake.jobs_run() == 0
    assert not (pipeline / "output" / "report.md").exists()
    assert not (pipeline / "log.txt").exists()


def test_check_passes_when_comfyui_has_everything(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path / "project")
    with start_fake_comfyui(tmp_path) as fake:
        result = run_generate(pipeline, "--check", "--only", "7", env=_comfy_env(fake.url), timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "every node type and model file present" in result.stdout
        assert fake.jobs_run() == 0


def test_llm_model_not_offered_is_a_problem(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path / "project")
    with start_fake_llm(tmp_path, model=["small-model"]) as llm:
        env = env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=_unused_url(), LM_STUDIO_BASE_URL=llm.base_url,
                      LM_STUDIO_MODEL="big-model", LM_STUDIO_CMD="no-such-lms-command")
        result = run_generate(pipeline, "--check", "--only", "1", env=env, timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "does not offer big-model" in result.stdout and "small-model" in result.stdout
        assert llm.chat_count() == 0
        env["LM_STUDIO_MODEL"] = "small-model"
        result = run_generate(pipeline, "--check", "--only", "1", env=env, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_llm_named_without_v1_and_auto_name_the_model_the_questions_use(tmp_path: Path) -> None:
    """The server at host:port is the one the client reaches at /v1; `auto` is its first chat model,
    not the embedding model LM Studio may list first."""
    pipeline = copy_pipeline(tmp_path / "project")
    with start_fake_llm(tmp_path, model=["text-embedding-nomic-embed-text-v1.5", "small-model"]) as llm:
        bare = llm.base_url.removesuffix("/v1")
        env = env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=_unused_url(), LM_STUDIO_BASE_URL=bare,
                      LM_STUDIO_MODEL="auto", LM_STUDIO_CMD="no-such-lms-command")
        result = run_generate(pipeline, "--check", "--only", "1", env=env, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"answering at {bare}/v1, 2 model(s) offered" in result.stdout
        assert "auto: small-model" in result.stdout and "auto: text-embedding" not in result.stdout
    with start_fake_llm(tmp_path, model=["text-embedding-nomic-embed-text-v1.5"]) as llm:
        env["LM_STUDIO_BASE_URL"] = llm.base_url + "/"
        result = run_generate(pipeline, "--check", "--only", "1", env=env, timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "auto: the server offers no chat model" in result.stdout
        assert llm.chat_count() == 0


def test_offline_check_passes_and_bad_story_is_named(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path / "project")
    env = env_for(PIPELINE_ENGINE="offline")
    result = run_generate(pipeline, "--check", env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("ffmpeg", "TTS (espeak-ng)", "disk", "YouTube", "offline (PIPELINE_ENGINE=offline)"):
        assert name in result.stdout
    (pipeline / "input" / "1.story.txt").unlink()
    result = run_generate(pipeline, "--until", "2", env=env, timeout=60)
    assert result.returncode == InputError.exit_code  # the only problem is an input: its own exit code
    assert "no story found" in result.stdout + result.stderr
    assert not (pipeline / "output" / "tracking").exists()


def test_missing_loader_class_and_its_model_file_are_listed_in_one_check(tmp_path: Path) -> None:
    # CLIPLoader gone (as a node pack that is not installed) and the file it names gone too: one
    # --check says both, so installing the pack leaves no surprise for the next check.
    pipeline = copy_pipeline(tmp_path / "project")
    with start_fake_comfyui(tmp_path, missing_node=["CLIPLoader"], missing_model=[MISSING_MODEL]) as fake:
        result = run_generate(pipeline, "--check", "--only", "7", env=_comfy_env(fake.url), timeout=60)
    screen = result.stdout + result.stderr
    assert result.returncode == 1, screen
    assert "no node type CLIPLoader (node 10)" in screen and "ComfyUI/custom_nodes" in screen
    assert MISSING_MODEL in screen and "ComfyUI/models/text_encoders" in screen
    assert "2 problem(s)" in screen
    with start_fake_comfyui(tmp_path, missing_model=[MISSING_MODEL]) as fake:  # the pack is now installed
        result = run_generate(pipeline, "--check", "--only", "7", env=_comfy_env(fake.url), timeout=60)
    assert result.returncode == 1 and "1 problem(s)" in result.stdout and MISSING_MODEL in result.stdout


def test_comfyui_too_old_for_speech_is_a_problem_of_the_speech_step_only(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path / "project")
    with start_fake_comfyui(tmp_path, comfyui_version="0.8.0") as fake:
        result = run_generate(pipeline, "--check", "--only", "2", env=_comfy_env(fake.url), timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"ComfyUI 0.8.0 at {fake.url}: speech workflows need 0.8.1 or newer" in result.stdout
        assert "update ComfyUI" in result.stdout and "1 problem(s)" in result.stdout
        result = run_generate(pipeline, "--check", "--only", "7", env=_comfy_env(fake.url), timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr  # sound effects run on 0.8.0
        assert "ComfyUI 0.8.0" in result.stdout and "speech" not in result.stdout
    with start_fake_comfyui(tmp_path, comfyui_version="0.8.1") as fake:
        result = run_generate(pipeline, "--check", "--only", "2", env=_comfy_env(fake.url), timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ComfyUI 0.8.1: speech workflows need 0.8.1 or newer" in result.stdout


def test_check_names_the_speaking_shots_audio_encoder_and_its_folder(tmp_path: Path) -> None:
    """gen.video's 3.animate.py queues speak_wan.json too (SPEAKING_SHOTS): its wav2vec2 encoder is checked
    in ComfyUI/models/audio_encoders before the night starts; without speaking shots it is not needed."""
    encoder = "wav2vec2_large_english_fp16.safetensors"
    pipeline = copy_pipeline(tmp_path / "project", "gen.video")
    with start_fake_comfyui(tmp_path, missing_model=[encoder]) as fake:
        env = _comfy_env(fake.url, IDENTITY_JUDGE="off", VIDEO_WORKFLOW="wan")
        result = run_generate(pipeline, "--check", "--only", "3.animate.py", env=env, timeout=60)
        screen = result.stdout + result.stderr
        assert result.returncode == 1, screen
        assert encoder in screen and "ComfyUI/models/audio_encoders" in screen and "speak_wan.json" in screen
        quiet = run_generate(pipeline, "--check", "--only", "3.animate.py", env={**env, "SPEAKING_SHOTS": "false"},
                             timeout=60)
        assert "animate_wan.json" in quiet.stdout and "speak_wan.json" not in quiet.stdout
        assert encoder not in quiet.stdout + quiet.stderr
        assert fake.jobs_run() == 0
