"""The night-time troubles of ComfyUI, met through a real numbered script (gen.image 2.character /
3.scene) and fake servers that misbehave on purpose: several servers with one killed, a hung job,
a stuck server, out of memory, a failing node, 500s, a lost answer, a server that dies and comes
back, a missing model.

Every assertion reads what the fake servers recorded (prompts queued, jobs finished) and the
checkpoint files, so "retried", "not generated twice" and "nothing completed lost" are facts
about the servers, not about our own log lines.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from tests.fakes import FakeServer, start_fake_comfyui
from tests.support.image_inputs import SCENES, SMALL, image_pipeline
from tests.support.project import env_for, run_script

pytestmark = pytest.mark.timeout(180)

WORDS = {"male_doctor_watson": "ALPHA", "female_nervous_mother": "BRAVO"}
EXTRA_SCENES = [
    "(scene_2.2) {{loc_2}}, {Weather/Season/Time: rain};((male_doctor_watson)){Primary Action: running HOTEL};",
    "(scene_2.3) {{loc_1}}, {Weather/Season/Time: dawn};((female_nervous_mother)){Primary Action: sleeping INDIA};",
    "(scene_3.1) {{loc_2}}, {Weather/Season/Time: noon};((male_doctor_watson)){Primary Action: writing JULIET};",
]
SCENE_WORDS = {"scene_1.1": "ECHO", "scene_1.2": "FOXTROT", "scene_2.1": "GOLF", "scene_2.2": "HOTEL",
               "scene_2.3": "INDIA", "scene_3.1": "JULIET"}


def comfy_env(url: str, **extra: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=url, LM_STUDIO_CMD="no-such-lms-command",
                   **SMALL, **extra)


def texts(prompt: dict[str, Any]) -> str:
    return " ".join(str(v) for node in prompt.values() for v in node.get("inputs", {}).values() if isinstance(v, str))


def item_of(prompt: dict[str, Any], words: dict[str, str]) -> str | None:
    """Which item a job was for, told by the one word only its description has (None: another kind)."""
    text = texts(prompt)
    found = [k for k, word in words.items() if word in text]
    assert len(found) <= 1, found
    return found[0] if found else None


def finished_jobs(servers: list[FakeServer], words: dict[str, str]) -> dict[str, int]:
    """Successful jobs per item over all servers (a killed server's record survives it)."""
    counts = {k: 0 for k in words}
    for server in servers:
        prompts = {e["prompt_id"]: e["prompt"] for e in server.record_events("prompt")}
        for done in server.record_events("job_done"):
            key = item_of(prompts[done["prompt_id"]], words) if done["prompt_id"] in prompts else None
            if done["status"] == "success" and key is not None:
                counts[key] += 1
    return counts


def items(pipeline: Path, script: str) -> dict[str, Any]:
    return json.loads((pipeline / "output" / "tracking" / f"{script}.state.json").read_text())["items"]


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def assert_one_sentence(result: Any, code: int) -> str:
    assert result.returncode == code, result.stdout[-1500:] + result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    line = last_line(result.stderr)
    assert line.startswith("error: ") and line.endswith(".")
    return line


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    return image_pipeline(tmp_path)


def test_three_servers_one_killed_mid_run_every_picture_made_once(tmp_path: Path, pipeline: Path) -> None:
    (pipeline / "input" / "3.scene.txt").write_text("\n".join(SCENES + EXTRA_SCENES) + "\n", encoding="utf-8")
    servers = [start_fake_comfyui(tmp_path / f"server{n}", job_seconds=0.6) for n in (1, 2, 3)]
    try:
        env = comfy_env(",".join(s.url for s in servers), COMFYUI_RETURN_WAIT="1")
        result = run_script(pipeline, "2.character.py", env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert finished_jobs(servers, WORDS) == {k: 1 for k in WORDS}  # scene prompts name characters too
        victim = servers[1]
        before = len(victim.record_events("prompt"))

        def kill_once_busy() -> None:
            # Kill server 2 while it holds a scene job it has not finished.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                queued = {e["prompt_id"] for e in victim.record_events("prompt")[before:]}
                done = {e["prompt_id"] for e in victim.record_events("job_done")}
                if queued - done:
                    victim.kill()
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_once_busy, daemon=True)
        killer.start()
        result = run_script(pipeline, "3.scene.py", env=env)
        killer.join(timeout=60)
        assert victim.proc.poll() is not None, "server 2 was never given a scene job"
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "stopped answering" in result.stderr and "moving it to another server" in result.stderr
        # Every picture made, each by exactly one successful job over the three servers.
        for scene in SCENE_WORDS:
            with Image.open(pipeline / "output" / "scene" / f"{scene}.png") as img:
                assert img.size == (192, 112)
        assert finished_jobs(servers, SCENE_WORDS) == {k: 1 for k in SCENE_WORDS}
        # The work was spread: the two live servers both ran scenes, and the victim had taken one.
        for server in (servers[0], servers[2]):
            assert server.jobs_run("success") >= 2
        assert all(entry["status"] == "done" for entry in items(pipeline, "3.scene").values())
    finally:
        for server in servers:
            server.stop()


def test_a_hung_job_is_interrupted_and_retried(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.05, fail_mode="hang", fail_jobs=1) as fake:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_STALL_TIMEOUT="1",
                                                                     COMFYUI_QUEUE_DEPTH="1"))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "stalled" in result.stderr and "trying again (1 of 1)" in result.stderr
        assert fake.jobs_run("interrupted") == 1
        assert finished_jobs([fake], WORDS) == {k: 1 for k in WORDS}
        # The retried job is the same job: same graph as the one that hung.
        prompts = fake.prompts()
        first = item_of(prompts[0], WORDS)
        assert [p for p in prompts if item_of(p, WORDS) == first][0] == [p for p in prompts if item_of(p, WORDS) == first][1]


def test_a_job_that_keeps_hanging_fails_its_item_and_the_others_are_kept(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.05, fail_mode="hang", fail_jobs=2) as fake:
        env = comfy_env(fake.url, COMFYUI_STALL_TIMEOUT="1", COMFYUI_QUEUE_DEPTH="1")
        result = run_script(pipeline, "2.character.py", env=env)
        line = assert_one_sentence(result, 6)
        assert fake.jobs_run("interrupted") == 2  # the job and its one retry, no more
        first = item_of(fake.prompts()[0], WORDS)
        assert line.startswith(f"error: 1 of 2 characters failed, first {first}: ComfyUI job")
        assert "showed no progress for 1 s" in line and "run the same command again" in line
        state = items(pipeline, "2.character")
        other = next(k for k in WORDS if k != first)
        assert state[first]["status"] == "failed" and "no progress" in state[first]["data"]["error"]
        assert state[other]["status"] == "done"
        assert (pipeline / "output" / "characters" / f"{other}.png").is_file()
        jobs_before = len(fake.prompts())
        again = run_script(pipeline, "2.character.py", env=env)  # the fake now behaves
        assert again.returncode == 0, again.stderr[-2000:]
        redone = [item_of(p, WORDS) for p in fake.prompts()[jobs_before:]]
        assert redone == [first]


def test_a_stuck_server_is_one_sentence_and_exit_5(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.05, fail_mode="stuck", fail_jobs=1) as fake:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_STALL_TIMEOUT="1",
                                                                     COMFYUI_QUEUE_DEPTH="1"))
        line = assert_one_sentence(result, 5)
        assert "did not stop job" in line and "restart ComfyUI" in line
        assert "waiting for it to answer again" in result.stderr  # not dropped at once: it may come back
        assert len(fake.prompts()) == 1  # nothing more was queued behind the stuck job


def test_out_of_memory_frees_and_retries_once_with_lower_settings(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.02, fail_mode="oom", fail_jobs=1) as fake:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="1",
                                                                     COMFYUI_OOM_SCALE="0.75"))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "ran out of memory" in result.stderr and "lower settings" in result.stderr
        assert len(fake.record_events("free")) == 1
        prompts = fake.prompts()
        first = item_of(prompts[0], WORDS)
        failed, retried = [p for p in prompts if item_of(p, WORDS) == first]

        def size(prompt: dict[str, Any]) -> tuple[int, int]:
            (node,) = [n for n in prompt.values() if n["class_type"] == "EmptySD3LatentImage"]
            return node["inputs"]["width"], node["inputs"]["height"]

        def decoders(prompt: dict[str, Any]) -> list[str]:
            return sorted(n["class_type"] for n in prompt.values() if n["class_type"].startswith("VAEDecode"))

        assert size(failed) == (96, 144) and decoders(failed) == ["VAEDecode"]
        assert size(retried) == (64, 96) and decoders(retried) == ["VAEDecodeTiled"]  # 72 x 108, to multiples of 16
        other = next(k for k in WORDS if k != first)
        assert size([p for p in prompts if item_of(p, WORDS) == other][0]) == (96, 144)  # only that job was lowered
        with Image.open(pipeline / "output" / "characters" / "clean" / f"{first}.png") as img:
            assert img.size == (96, 144)  # scaled back to the size the story asked for


def test_out_of_memory_twice_fails_only_that_item(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.02, fail_mode="oom", fail_jobs=2) as fake:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="1"))
        line = assert_one_sentence(result, 6)
        assert "ran out of GPU memory" in line and "1 of 2 characters failed" in line
        assert len(fake.prompts()) == 3  # the job, its one lowered retry, and the other character


def test_a_failing_node_fails_its_item_while_the_others_finish(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.02, fail_mode="execution_error", fail_jobs=1) as fake:
        env = comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="1")
        result = run_script(pipeline, "2.character.py", env=env)
        line = assert_one_sentence(result, 6)
        assert "Fake failure requested" in line
        assert len(fake.prompts()) == 2  # not retried: a node that raises would raise again
        assert sorted(e["status"] for e in items(pipeline, "2.character").values()) == ["done", "failed"]
        again = run_script(pipeline, "2.character.py", env=env)
        assert again.returncode == 0 and len(fake.prompts()) == 3


def test_a_missing_model_stops_at_once_without_trying_the_other_items(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.02, missing_model=["flux_kontext_vae.safetensors"]) as fake:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="1"))
        line = assert_one_sentence(result, 6)
        assert "flux_kontext_vae.safetensors" in line and "ComfyUI/models/vae" in line
        assert len(fake.record_events("rejected")) == 1 and not fake.prompts()


def test_500s_are_retried_within_bounds(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.02, prompt_500=2) as fake:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="1"))
        assert result.returncode == 0, result.stderr[-2000:]
        assert len(fake.record_events("http_500")) == 2 and finished_jobs([fake], WORDS) == {k: 1 for k in WORDS}
    with start_fake_comfyui(tmp_path / "again", job_seconds=0.02, prompt_500=100) as fake:
        result = run_script(pipeline, "2.location.py", env=comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="1"))
        line = assert_one_sentence(result, 5)
        assert "HTTP 500" in line and "console output" in line
        # Three tries, then one sentence: a server that answers with errors is not waited for.
        assert len(fake.record_events("http_500")) == 3 and not fake.prompts()


def test_a_lost_answer_to_a_queued_job_does_not_run_it_twice(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.02, drop_prompt=1) as fake:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="1"))
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert len(fake.record_events("dropped_answer")) == 1
        assert len(fake.prompts()) == 2 and finished_jobs([fake], WORDS) == {k: 1 for k in WORDS}


def test_a_dropped_socket_mid_job_falls_back_to_polling(tmp_path: Path, pipeline: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.2, ws="drop") as fake:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_STALL_TIMEOUT="1"))
        assert result.returncode == 0, result.stderr[-2000:]
        assert finished_jobs([fake], WORDS) == {k: 1 for k in WORDS}


def test_comfyui_dying_and_coming_back_mid_job(tmp_path: Path, pipeline: Path) -> None:
    fake = start_fake_comfyui(tmp_path, job_seconds=1.5)
    port = fake.port
    holder: dict[str, FakeServer] = {}

    def crash_and_restart() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not fake.prompts():
            time.sleep(0.05)
        fake.kill()
        time.sleep(1.0)
        holder["server"] = start_fake_comfyui(tmp_path, port=port, job_seconds=0.02)

    thread = threading.Thread(target=crash_and_restart, daemon=True)
    thread.start()
    try:
        result = run_script(pipeline, "2.character.py", env=comfy_env(fake.url, COMFYUI_RETURN_WAIT="30",
                                                                     COMFYUI_QUEUE_DEPTH="1"))
        thread.join(timeout=60)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        # Back within the client's patience the job is "lost" (the new server never heard of it);
        # later, the server "stopped answering" and the pool waited for it: either way, queued again.
        assert "queueing it again" in result.stderr or "is back" in result.stderr
        # The record file is shared by both lives of the server: the crashed job never finished,
        # the restarted server made each picture once.
        assert finished_jobs([holder["server"]], WORDS) == {k: 1 for k in WORDS}
        assert all(e["status"] == "done" for e in items(pipeline, "2.character").values())
    finally:
        fake.stop()
        if "server" in holder:
            holder["server"].stop()


def test_comfyui_down_from_the_start_fails_at_once(tmp_path: Path, pipeline: Path) -> None:
    fake = start_fake_comfyui(tmp_path)
    url = fake.url
    fake.stop()
    result = run_script(pipeline, "2.character.py", env=comfy_env(url, COMFYUI_RETURN_WAIT="60"))
    line = assert_one_sentence(result, 5)
    assert f"ComfyUI is not answering at {url}" in line
    assert "waiting up to" not in result.stderr  # no waiting for a server that never answered


def test_preflight_checks_every_listed_server(tmp_path: Path) -> None:
    """With several servers each gets jobs of every kind, so a model missing on one stops the run."""
    from tests.support.project import copy_pipeline, run_generate

    project = copy_pipeline(tmp_path / "project")
    good = start_fake_comfyui(tmp_path / "good")
    short = start_fake_comfyui(tmp_path / "short", missing_model=["t5-base.safetensors"])
    try:
        env = comfy_env(f"{good.url}, {short.url}", LM_STUDIO_BASE_URL="http://127.0.0.1:9/v1",
                        LM_STUDIO_MODEL="auto")
        result = run_generate(project, "--check", "--only", "7", env=env, timeout=60)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"gen.audio/workflow/sfx.json on {short.url}" in result.stdout and "t5-base.safetensors" in result.stdout
        assert f"gen.audio/workflow/sfx.json on {good.url}" in result.stdout
        assert good.jobs_run() == short.jobs_run() == 0
    finally:
        good.stop()
        short.stop()


def test_ctrl_c_cancels_the_jobs_workers_wait_on(tmp_path: Path, pipeline: Path) -> None:
    """Ctrl+C reaches the main thread only; the jobs its workers wait on are cancelled, not awaited."""
    with start_fake_comfyui(tmp_path, job_seconds=120) as fake:
        proc = subprocess.Popen([sys.executable, "2.character.py"], cwd=pipeline / "scripts",
                                env=comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="2"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while len(fake.prompts()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(fake.prompts()) == 2  # both pictures queued at once, one running
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)  # far less than one 120 s job
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted: finished items are kept" in err and "Traceback" not in err
        # The pending job was dropped, the running one interrupted (it stops at its next sampler step).
        deadline = time.monotonic() + 30
        while fake.jobs_run("interrupted") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake.jobs_run("interrupted") == 1 and fake.jobs_run("success") == 0
        queue = requests.get(fake.url + "/queue", timeout=5).json()
        assert queue["queue_running"] == [] and queue["queue_pending"] == []


def test_overnight_command_stops_at_once_on_a_missing_model(tmp_path: Path) -> None:
    """The whole chain (cd gen.video && python generate.py) with one model file missing in ComfyUI:
    one screen naming the file and its folder, exit 8, nothing generated."""
    from tests.fakes.llm_helpers import start_fake_llm
    from tests.support import chaos
    from tests.support.project import run_generate

    video = chaos.make_project(tmp_path / "project")
    with start_fake_comfyui(tmp_path, missing_model=["flux1-kontext-dev-Q8_0.gguf"]) as fake, \
            start_fake_llm(tmp_path) as llm:
        env = comfy_env(fake.url, LM_STUDIO_BASE_URL=llm.base_url, LM_STUDIO_MODEL="auto")
        result = run_generate(video, env=env, timeout=120)
        screen = result.stdout + result.stderr
        assert result.returncode == 8, screen
        assert "flux1-kontext-dev-Q8_0.gguf" in screen and "ComfyUI/models/unet" in screen
        assert "gen.image/workflow/scene.json" in screen  # every workflow of the chain was checked
        assert fake.prompts() == [] and not fake.record_events("upload")
        asked = llm.record.read_text().splitlines() if llm.record.exists() else []
        assert not [line for line in asked if "chat/completions" in line]  # no question asked either
    for pipeline in ("gen.audio", "gen.image", "gen.video"):
        assert not (tmp_path / "project" / pipeline / "output" / "tracking").exists(), pipeline


def test_a_rerun_after_a_kill_takes_over_the_job_it_left_on_the_server(tmp_path: Path, pipeline: Path) -> None:
    """SIGKILL while ComfyUI runs a picture: the next run does not queue that job again, it waits for
    the one still running (the same graph has the same prompt id) and keeps its result."""
    with start_fake_comfyui(tmp_path, job_seconds=3.0) as fake:
        env = comfy_env(fake.url, COMFYUI_QUEUE_DEPTH="1")
        proc = subprocess.Popen([sys.executable, "2.character.py"], cwd=pipeline / "scripts", env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not fake.prompts() and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        assert len(fake.prompts()) == 1 and fake.jobs_run() == 0  # killed while its first job runs
        result = run_script(pipeline, "2.character.py", env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert len(fake.prompts()) == 2  # the left job was taken over, only the other picture was queued
        assert finished_jobs([fake], WORDS) == {k: 1 for k in WORDS}
        # A plain re-run has nothing to do; --force-start redoes every picture, on the server too.
        again = run_script(pipeline, "2.character.py", "--force-start", env=env)
        assert again.returncode == 0 and len(fake.prompts()) == 4
