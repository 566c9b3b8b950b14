"""A throw-away copy of a pipeline folder, so a test runs the real scripts without touching the repo."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]


def copy_pipeline(tmp_path: Path, name: str = "gen.audio", story: str | None = None) -> Path:
    """Copy scripts, workflows, voices and generate.py of a pipeline (not its output) into tmp_path."""
    src = REPO / name
    dst = tmp_path / name
    dst.mkdir(parents=True)
    for part in ("scripts", "workflow", "voices"):
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(src / "generate.py", dst / "generate.py")
    (dst / "input").mkdir()
    if story is not None:
        (dst / "input" / "1.story.txt").write_text(story, encoding="utf-8")
    elif (src / "input" / "1.story.txt").is_file():
        shutil.copy2(src / "input" / "1.story.txt", dst / "input" / "1.story.txt")
    return dst


def env_for(**extra: str) -> dict[str, str]:
    """The environment a user would have, with the repo importable and our variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "COMFYUI_", "LM_STUDIO_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["COMFYUI_RETURN_WAIT"] = "3"  # a test whose server died should not wait a minute for it
    env["LLM_RETRY_PAUSES"] = "[0.05]"  # nor tens of seconds between its retries of a failing LLM server
    env.update(extra)
    return env


def run_script(pipeline: Path, script: str, *args: str, env: dict[str, str] | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script, *args], cwd=pipeline / "scripts", env=env or env_for(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def run_generate(pipeline: Path, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "generate.py", *args], cwd=pipeline, env=env or env_for(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def spoken_pipeline(tmp_path: Path) -> Path:
    """gen.audio with the sample story spoken by the offline engine (steps 1 and 2), in tmp_path.

    Several test modules start from this state; each makes it once (module fixture) and copies it.
    """
    pipeline = copy_pipeline(tmp_path)
    offline = env_for(PIPELINE_ENGINE="offline")
    for step in ("1.character.py", "2.story.py"):
        result = run_script(pipeline, step, env=offline)
        assert result.returncode == 0, result.stdout + result.stderr
    return pipeline


def kill_tree(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGKILL an orchestrator's process group and the scripts it runs (each in a session of its own),
    like a power cut; returns once they are all gone."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    os.killpg(proc.pid, signal.SIGKILL)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=timeout)
    psutil.wait_procs(children, timeout=timeout)
