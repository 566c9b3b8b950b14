"""gen.audio steps 1-2 through the real HTTP/WebSocket APIs, against the fake ComfyUI and LLM servers,
including SIGKILLs in the middle of 2.story.py."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from tests.fakes import FakeServer, start_fake_comfyui
from tests.fakes.llm_helpers import free_port, start_fake_llm
from tests.support.project import copy_pipeline, env_for, run_generate, run_script

TTS_CLASS = "OmniVoiceMultiSpeakerTTS"


def _tts_node(prompt: dict) -> dict:
    return next(node for node in prompt.values() if node["class_type"] == TTS_CLASS)


def _comfy_env(url: str, **extra: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=url, LM_STUDIO_CMD="no-such-lms-command", **extra)


def test_generate_through_fake_servers(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    with start_fake_comfyui(tmp_path, job_seconds=0.05) as comfy, start_fake_llm(tmp_path) as llm:
        env = _comfy_env(comfy.url, LM_STUDIO_BASE_URL=llm.base_url, LM_STUDIO_MODEL="auto")
        # Steps 1-2 here; each later step has its own test against these fakes.
        result = run_generate(pipeline, "--until", "2.story", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        prompts = comfy.prompts()
        chat_count = llm.chat_count()
    assert "ComfyUI + LLM" in result.stdout
    assert chat_count == 2 + 1 + 3  # two summary chunks, the title, three chapters
    assert len(prompts) == 3  # chunks 1_5, 6_10, 11_11 (two at a time: in any order)
    (chunk_1,) = [p for p in prompts if "The lighthouse on Gull Point" in _tts_node(p)["inputs"]["text"]]
    first = _tts_node(chunk_1)["inputs"]
    lines = first["text"].split("\n")
    assert lines[0].startswith("[Speaker_1]: The lighthouse on Gull Point")
    assert lines[1].startswith("[Speaker_2]: Uncle Silas never misses")
    assert first["num_speakers"] == "3"  # narrator, Ada, Bram in chunk 1
    loaders = {nid: n for nid, n in chunk_1.items() if n["class_type"] == "LoadAudio"}
    assert len(loaders) == 3
    for slot in (1, 2, 3):
        link = first[f"num_speakers.speaker_{slot}_audio"]
        assert link[0] in loaders and first[f"num_speakers.speaker_{slot}_ref_text"].strip()
    assert "narrator" in loaders[first["num_speakers.speaker_1_audio"][0]]["inputs"]["audio"]
    timings = json.loads((pipeline / "output" / "story.timings.json").read_text())
    assert {l["timing"] for l in timings["lines"]} == {"estimated"}
    state = json.loads((pipeline / "output" / "tracking" / "2.story.state.json").read_text())
    assert not any(item.get("preview") for item in state["items"].values())


def test_comfyui_down_is_one_sentence(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    assert run_script(pipeline, "1.character.py", "--mode", "voices", env=env_for(PIPELINE_ENGINE="offline")).returncode == 0
    url = f"http://127.0.0.1:{free_port()}"
    result = run_script(pipeline, "2.story.py", env=_comfy_env(url))
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(r"ComfyUI is not answering at http://127\.0\.0\.1:\d+", result.stderr)
    # Through the orchestrator, with nothing installed to start: also one sentence, exit 5.
    result = run_generate(pipeline, "--only", "2.story", env=_comfy_env(url, COMFYUI_DIR=str(tmp_path / "nowhere")))
    assert result.returncode == 5 and "ComfyUI is not installed in" in result.stdout + result.stderr


def _chunk_of(prompt: dict) -> str:
    """The chunk a speech job was for, named by its first line's text."""
    return _tts_node(prompt)["inputs"]["text"].split("\n")[0].split(": ", 1)[1][:40]


def test_sigkill_mid_story_never_redoes_a_finished_chunk(tmp_path: Path) -> None:
    reference = copy_pipeline(tmp_path / "ref")
    killed = copy_pipeline(tmp_path / "killed")
    offline = env_for(PIPELINE_ENGINE="offline")
    for pipeline in (reference, killed):
        assert run_script(pipeline, "1.character.py", "--mode", "voices", env=offline).returncode == 0

    with start_fake_comfyui(tmp_path / "ref", job_seconds=0.05) as comfy:
        result = run_script(reference, "2.story.py", "--chunk-size", "2", env=_comfy_env(comfy.url))
        assert result.returncode == 0, result.stderr

    state_file = killed / "output" / "tracking" / "2.story.state.json"
    with start_fake_comfyui(tmp_path / "killed", job_seconds=0.4) as comfy:
        env = _comfy_env(comfy.url)
        kills = 0
        # Kill once the fake has recorded so many more jobs queued or finished (12 for the 6
        # chunks, more after kills: these kills land on any machine speed); None: let it finish.
        for events in (1, 3, 1, 2, None):
            done_before = set(json.loads(state_file.read_text())["items"]) if state_file.exists() else set()
            queued_before = len(comfy.prompts())
            target = _job_events(comfy) + (events or 0)
            proc = subprocess.Popen(
                [sys.executable, "2.story.py", "--chunk-size", "2"], cwd=killed / "scripts", env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if events is not None:
                _wait_until(lambda: proc.poll() is not None or _job_events(comfy) >= target)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            code = proc.wait(timeout=60)
            assert events is not None or code == 0  # the last run, not killed, finishes

            if state_file.exists():
                json.loads(state_file.read_text())  # never torn
            # What this run queued never includes a chunk finished before it started.
            finished = _finished_chunk_texts(killed, done_before)
            assert not {_chunk_of(p) for p in comfy.prompts()[queued_before:]} & finished
        per_chunk: dict[str, int] = {}
        for prompt in comfy.prompts():
            per_chunk[_chunk_of(prompt)] = per_chunk.get(_chunk_of(prompt), 0) + 1
    assert kills >= 3
    assert len(per_chunk) == 6  # 11 lines in chunks of 2
    # At most the jobs in flight at a kill are repeated: COMFYUI_QUEUE_DEPTH (2) chunks at a time.
    assert sum(per_chunk.values()) <= 6 + 2 * kills
    assert (killed / "output" / "story.wav").read_bytes() == (reference / "output" / "story.wav").read_bytes()


def _job_events(comfy: FakeServer) -> int:
    """Jobs the fake has recorded as queued or finished so far."""
    return sum(1 for e in comfy.record_events() if e["event"] in ("prompt", "job_done"))


def _wait_until(ready: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll until `ready()`; the timeout is a bound for a stuck run, not a plan."""
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.01)


def _finished_chunk_texts(pipeline: Path, keys: set[str]) -> set[str]:
    """The first-line texts of finished chunks, as the speech job would show them."""
    from common.formats.story import read_story

    utterances = read_story(pipeline / "input" / "1.story.txt").utterances
    texts = set()
    for key in keys:
        if re.fullmatch(r"\d+_\d+", key):
            texts.add(utterances[int(key.split("_")[0]) - 1].text[:40])
    return texts


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the orchestrator and everything under it, like a power cut for the whole run."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)


def test_whole_pipeline_through_the_apis_survives_kills(tmp_path: Path) -> None:
    """All twelve steps via the fake ComfyUI and LLM; two SIGKILLs of the whole run, then resume."""
    from common.media import ffmpeg as media

    pipeline = copy_pipeline(tmp_path)
    with start_fake_comfyui(tmp_path, job_seconds=0.3) as comfy, start_fake_llm(tmp_path) as llm:
        env = _comfy_env(comfy.url, LM_STUDIO_BASE_URL=llm.base_url, LM_STUDIO_MODEL="auto")
        kills = 0
        for events in (2, 5):  # kill once the fake has recorded so many more jobs queued or finished
            target = _job_events(comfy) + events
            proc = subprocess.Popen([sys.executable, "generate.py"], cwd=pipeline, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            _wait_until(lambda: proc.poll() is not None or _job_events(comfy) >= target)
            if proc.poll() is None:
                _kill_tree(proc)
                kills += 1
            for state in (pipeline / "output" / "tracking").glob("*.state.json"):
                json.loads(state.read_text())  # never torn
        result = run_generate(pipeline, env=env, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        prompts = comfy.prompts()
    assert kills == 2
    texts = [json.dumps(p, sort_keys=True) for p in prompts]
    repeats = len(texts) - len(set(texts))
    assert repeats <= kills  # only a job in flight at a kill is ever sent again
    out = pipeline / "output"
    for name in ("story.wav", "sfx.wav", "final.wav", "final.mp4", "thumbnail.png", "description.txt", "upload.manifest.json"):
        assert (out / name).stat().st_size > 0, name
    loudness = media.measure_loudness(out / "final.wav")
    assert abs(loudness.integrated_lufs + 14) <= 1 and loudness.true_peak_dbtp <= -1
    state = json.loads((out / "tracking" / "8.combine.state.json").read_text())
    assert not any(item.get("preview") for item in state["items"].values())
