"""gen.audio steps 5-7 (5.timeline.py, 6.timing.py, 7.sfx.py) run as a user runs them: offline for
real, on the seed system's own files, and through the fake ComfyUI + fake LLM servers, including a
SIGKILL in the middle of 7.sfx.py."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from common.media import ffmpeg as media
from common.formats.story import read_story
from common.formats.timeline import read_timeline
from common.offline import sfx
from tests.fakes import start_fake_comfyui
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.project import copy_pipeline, env_for, run_script, spoken_pipeline

OFFLINE = env_for(PIPELINE_ENGINE="offline")
STEPS = ("5.timeline.py", "6.timing.py", "7.sfx.py")


def _run(pipeline: Path, script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = run_script(pipeline, script, *args, env=env, timeout=120)
    assert result.returncode == 0, f"{script}:\n{result.stdout}\n{result.stderr}"
    return result


def _exact_total(path: Path) -> Fraction:
    return sum((Fraction(e.raw.split(":")[0].strip()) for e in read_timeline(path).entries), Fraction(0))


def _state(pipeline: Path, script: str) -> dict:
    return json.loads((pipeline / "output" / "tracking" / f"{script}.state.json").read_text())["items"]


def _sentences(text: str) -> list[str]:
    return [p for p in re.split(r"(?<=[.!?])\s+", text) if p]


def write_timeline(pipeline: Path, spans: list[tuple[str, float, float]], total: float) -> list[str]:
    """A 2.timeline.txt like a transcriber's: each line cut at its sentences, pauses given to the
    segment before them, milliseconds rounded cumulatively so the lines add up to `total`."""
    lines, previous_ms = [], 0
    for number, (text, start, _end) in enumerate(spans):
        stop = spans[number + 1][1] if number + 1 < len(spans) else total
        begin = 0.0 if number == 0 else start
        parts = _sentences(text)
        weights = [len(p) for p in parts]
        at = begin
        for part, weight in zip(parts, weights):
            at += (stop - begin) * weight / sum(weights)
            ms = round(at * 1000)
            lines.append(f"{(ms - previous_ms) / 1000:.3f}: {part}")
            previous_ms = ms
    (pipeline / "input" / "2.timeline.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def write_story_wav(pipeline: Path, seconds: float, rate: int = 44100) -> Path:
    """A stand-in narration: quiet noise of the right length (steps 5-7 only need its length)."""
    rng = np.random.default_rng(1)
    path = pipeline / "output" / "story.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    return media.write_wav(path, (rng.standard_normal(int(round(seconds * rate))) * 0.02).astype(np.float32), rate)


# ---------------------------------------------------------------- offline, for real

@pytest.fixture(scope="module")
def offline_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline = spoken_pipeline(tmp_path_factory.mktemp("sfx-offline"))
    timings = json.loads((pipeline / "output" / "story.timings.json").read_text())
    write_timeline(pipeline, [(l["text"], l["start"], l["end"]) for l in timings["lines"]], timings["duration"])
    return pipeline


def test_offline_steps_make_scene_sounds_aligned_to_the_story(offline_pipeline: Path) -> None:
    pipeline = offline_pipeline
    for script in STEPS:
        _run(pipeline, script, OFFLINE)
    inputs = pipeline / "input"
    timeline, timing = read_timeline(inputs / "2.timeline.txt"), read_timeline(inputs / "3.timing.txt")
    assert [e.raw.split(":")[0] for e in timing.entries] == [e.raw.split(":")[0] for e in timeline.entries]
    sounds = [e.text for e in timing.entries]
    assert "Silence" in sounds and len(set(sounds)) > 3
    for sound in sounds:  # only what the offline engine can make
        assert sound == "Silence" or sfx.match_sounds(sound), sound
    by_text = dict(zip((e.text for e in timeline.entries), sounds))
    assert "rain" in by_text["Up here, child."].lower()  # the lamp room: {Night, wind and rain}
    assert by_text["The door at the foot of the tower stood open, and the stairs smelled of salt and lamp oil."] == "Footsteps"
    assert by_text["Uncle?"] == "Silence"  # a staircase in lantern light: nothing the scene says is heard
    assert by_text["Ada!"] == "Footsteps, waves breaking on the shore"  # ((bram)){Running along the jetty}, loc_1's sea

    assert _exact_total(inputs / "4.sfx.txt") == _exact_total(inputs / "2.timeline.txt")
    story, rate = media.read_wav(pipeline / "output" / "story.wav")
    track, track_rate = media.read_wav(pipeline / "output" / "sfx.wav")
    assert (track_rate, track.ndim, len(track)) == (rate, 1, len(story))
    at = Fraction(0)
    for entry in read_timeline(inputs / "4.sfx.txt").entries:
        a, at = round(at * rate), at + Fraction(entry.raw.split(":")[0])
        b = round(at * rate)
        loudness = float(np.sqrt(np.mean(track[a:b].astype(np.float64) ** 2)))
        assert (loudness > 30) if entry.text != "Silence" else (loudness == 0), entry.raw
    assert all(item.get("preview") for item in _state(pipeline, "7.sfx").values())
    assert len(list((pipeline / "output" / "sfx").glob("*.wav"))) == len(_state(pipeline, "7.sfx")) - 1

    made = (pipeline / "output" / "sfx.wav").stat().st_mtime_ns
    rerun = _run(pipeline, "7.sfx.py", OFFLINE).stdout  # every clip and the track are checkpointed
    assert re.search(r"\[sfx\] \d+ items: 0 made", rerun) and "[sfx.wav] 1 items: 0 made" in rerun
    assert (pipeline / "output" / "sfx.wav").stat().st_mtime_ns == made


def test_seed_system_files_are_accepted(fixtures_dir: Path, tmp_path: Path) -> None:
    seed = fixtures_dir / "gen.audio" / "input"
    pipeline = copy_pipeline(tmp_path, story=(seed / "1.story.txt").read_text(encoding="utf-8"))
    inputs = pipeline / "input"
    shutil.copy(seed / "2.timeline.txt", inputs)
    _run(pipeline, "5.timeline.py", OFFLINE)
    timing = read_timeline(inputs / "3.timing.txt")
    # The seed story has no scene lines, so the offline engine hears nothing; the spelling is kept.
    assert {e.text for e in timing.entries} == {"Silence"}
    assert timing.entries[0].raw == "2.920000: Silence" and len(timing.entries) == 481

    shutil.copy(seed / "3.timing.txt", inputs)
    _run(pipeline, "6.timing.py", OFFLINE)
    assert _exact_total(inputs / "4.sfx.txt") == _exact_total(seed / "3.timing.txt") == Fraction("2703.32")
    plan = read_timeline(inputs / "4.sfx.txt")
    assert sum(1 for e in plan.entries if e.text != "Silence") == 113

    shutil.copy(seed / "4.sfx.txt", inputs)  # the seed's own plan (5 ms short of its timeline)
    write_story_wav(pipeline, 2703.32, rate=2000)
    result = _run(pipeline, "7.sfx.py", env_for(PIPELINE_ENGINE="offline", AUDIO_SAMPLE_RATE="2000"))
    assert "111 items: 111 made" in result.stdout  # 113 effects, two repeated exactly
    with wave.open(str(pipeline / "output" / "sfx.wav"), "rb") as handle:
        assert (handle.getnframes(), handle.getframerate()) == (round(2703.32 * 2000), 2000)


# ---------------------------------------------------------------- ComfyUI + LLM (fakes)

EFFECTS = {  # segment of the sample story's timeline -> the sound the "LLM" gives it
    2: "Waves slapping against a wooden rowing boat",
    4: "Oars creaking in iron rowlocks",
    6: "A brass lantern handle squeaks",
    9: "Footsteps on a stone spiral staircase",
    12: "Heavy rain against glass windows",
    14: "Wind gusting around a stone tower",
    17: "Distant surf on rocks",
    20: "A match strikes and flares",
}


def _comfy_pipeline(tmp_path: Path) -> tuple[Path, list[str]]:
    pipeline = copy_pipeline(tmp_path)
    story = read_story(pipeline / "input" / "1.story.txt")
    spans = [(u.text, 4.0 * k, 4.0 * k + 3.7) for k, u in enumerate(story.utterances)]
    total = 4.0 * len(spans)
    lines = write_timeline(pipeline, spans, total)
    write_story_wav(pipeline, total)
    return pipeline, lines


def _llm_answers(lines: list[str], batch: int) -> list[dict]:
    seconds = {n: float(line.split(":")[0]) for n, line in enumerate(lines, start=1)}
    answers = []
    for first in range(1, len(lines) + 1, batch):
        indices = range(first, min(first + batch, len(lines) + 1))
        good = {"sounds": [{"index": n, "sound": EFFECTS.get(n, "Silence")} for n in indices]}
        entry = {"contains": f"\n[{first}] ({seconds[first]:.2f} s) ", "answers": [good]}
        if first == 1:  # a reasoning answer first: rejected, asked again
            bad = {"sounds": [dict(item, sound="Waves, because the story opens at sea") if item["index"] == 2 else item
                              for item in good["sounds"]]}
            entry["answers"] = [bad, good]
        answers.append(entry)
    timings = [{"index": n, "start": round((seconds[n] - min(2.0, seconds[n] * 0.6)) / 2, 3),
                "seconds": round(min(2.0, seconds[n] * 0.6), 3)} for n in sorted(EFFECTS)]
    answers.append({"contains": f"\n[{min(EFFECTS)}] segment of", "answer": {"timings": timings}})
    return answers


def _comfy_env(comfy_url: str, llm_url: str, **extra: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=comfy_url, LM_STUDIO_BASE_URL=llm_url,
                   LM_STUDIO_MODEL="auto", LM_STUDIO_CMD="no-such-lms-command", **extra)


def _job(prompt: dict) -> tuple[str, float]:
    """(prompt text, seconds) of one Stable Audio job."""
    sampler = next(n for n in prompt.values() if n["class_type"] == "KSampler")
    text = prompt[sampler["inputs"]["positive"][0]]["inputs"]["text"]
    seconds = next(n for n in prompt.values() if n["class_type"] == "EmptyLatentAudio")["inputs"]["seconds"]
    return text, seconds


def _max_in_flight(events: list[dict]) -> int:
    """Most jobs queued or running at one moment, from the fake's record."""
    depth = best = 0
    for event in sorted((e for e in events if e["event"] in ("prompt", "job_done")), key=lambda e: e["time"]):
        depth += 1 if event["event"] == "prompt" else -1
        best = max(best, depth)
    return best


def test_llm_plans_and_comfyui_makes_every_effect(tmp_path: Path) -> None:
    pipeline, lines = _comfy_pipeline(tmp_path)
    assert len(lines) == 21  # batches 1-8, 9-16, 17-21
    with start_fake_comfyui(tmp_path, job_seconds=0.3) as comfy, \
            start_fake_llm(tmp_path, answers=_llm_answers(lines, 8)) as llm:
        env = _comfy_env(comfy.url, llm.base_url, SFX_BATCH_SIZE="8")
        for script in STEPS:
            _run(pipeline, script, env)
        chats = llm.chat_requests()
        prompts, events = comfy.prompts(), comfy.record_events()
    assert len(chats) == 3 + 1 + 1  # three sound batches (the first asked twice) and one timing batch
    assert "because" in chats[1]["last_user"] and "explains" in chats[1]["last_user"]

    timing = read_timeline(pipeline / "input" / "3.timing.txt")
    assert {n: e.text for n, e in enumerate(timing.entries, start=1) if e.text != "Silence"} == EFFECTS
    plan = read_timeline(pipeline / "input" / "4.sfx.txt")
    assert _exact_total(pipeline / "input" / "4.sfx.txt") == _exact_total(pipeline / "input" / "2.timeline.txt")
    effects = [(e.text, e.seconds) for e in plan.entries if e.text != "Silence"]
    assert [text for text, _ in effects] == list(EFFECTS.values())
    # every effect is one job with its own prompt text and length (Stable Audio's minimum is 1 s)
    assert sorted(_job(p) for p in prompts) == sorted((text, max(1.0, seconds)) for text, seconds in effects)
    assert _max_in_flight(events) >= 2  # queued ahead, so the server never waited for us

    with wave.open(str(pipeline / "output" / "story.wav"), "rb") as story, \
            wave.open(str(pipeline / "output" / "sfx.wav"), "rb") as track:
        assert (track.getnframes(), track.getframerate(), track.getnchannels()) == (story.getnframes(), story.getframerate(), 1)
    state = _state(pipeline, "7.sfx")
    assert len(state) == len(EFFECTS) + 1 and not any(item.get("preview") for item in state.values())


def test_sigkill_mid_sfx_never_redoes_a_finished_clip(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    names = [f"Effect sound {word}" for word in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")]
    plan = "".join(f"1.000: Silence\n1.500: {name}\n" for name in names)
    (pipeline / "input" / "4.sfx.txt").write_text(plan, encoding="utf-8")
    write_story_wav(pipeline, 2.5 * len(names))
    state_file = pipeline / "output" / "tracking" / "7.sfx.state.json"
    with start_fake_comfyui(tmp_path, job_seconds=0.5) as comfy:
        env = _comfy_env(comfy.url, "http://127.0.0.1:9/v1", SFX_MAX_WORKERS="2")
        proc = subprocess.Popen([sys.executable, "7.sfx.py"], cwd=pipeline / "scripts", env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            finished: set[str] = set()
            while len(finished) < 2 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                if state_file.exists():
                    finished = {item["data"]["description"] for item in json.loads(state_file.read_text())["items"].values()}
            proc.kill()
        finally:
            proc.wait(timeout=10)
        finished = {item["data"]["description"] for item in json.loads(state_file.read_text())["items"].values()}
        assert 2 <= len(finished) < len(names)
        before = len(comfy.prompts())
        _run(pipeline, "7.sfx.py", env)
        again = [_job(p)[0] for p in comfy.prompts()[before:]]
    assert not set(again) & finished  # nothing finished was made twice
    assert set(again) <= set(names) - finished
    # The jobs the killed run left on the server were taken over, not queued again: over both
    # runs the server got each effect exactly once.
    assert sorted(_job(p)[0] for p in comfy.prompts()) == sorted(names)
    assert len(_state(pipeline, "7.sfx")) == len(names) + 1
    with wave.open(str(pipeline / "output" / "sfx.wav"), "rb") as track:
        assert track.getnframes() == round(2.5 * len(names) * 44100)


def test_sfx_max_workers_is_a_limit_not_a_floor(tmp_path: Path) -> None:
    """SFX_MAX_WORKERS=1 means one job on the server at a time, even when ComfyUI's queue depth is 2."""
    pipeline = copy_pipeline(tmp_path)
    names = [f"Effect sound {word}" for word in ("alpha", "bravo", "charlie", "delta")]
    (pipeline / "input" / "4.sfx.txt").write_text("".join(f"1.000: Silence\n1.500: {n}\n" for n in names),
                                                  encoding="utf-8")
    write_story_wav(pipeline, 2.5 * len(names))
    with start_fake_comfyui(tmp_path, job_seconds=0.2) as comfy:
        _run(pipeline, "7.sfx.py", _comfy_env(comfy.url, "http://127.0.0.1:9/v1", SFX_MAX_WORKERS="1",
                                              COMFYUI_QUEUE_DEPTH="2"))
        events = comfy.record_events()
    assert sorted(_job(e["prompt"])[0] for e in events if e["event"] == "prompt") == sorted(names)
    assert _max_in_flight(events) == 1


def test_missing_or_stale_inputs_are_one_sentence(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    result = run_script(pipeline, "5.timeline.py", env=OFFLINE)
    assert result.returncode == 3 and "run 3.transcribe.py first" in result.stderr and "Traceback" not in result.stderr
    (pipeline / "input" / "4.sfx.txt").write_text("10.000: Silence\n2.000: Distant thunder\n", encoding="utf-8")
    result = run_script(pipeline, "7.sfx.py", env=OFFLINE)
    assert result.returncode == 3 and "run 2.story.py first" in result.stderr
    write_story_wav(pipeline, 30.0, rate=8000)
    result = run_script(pipeline, "7.sfx.py", env=OFFLINE)
    assert result.returncode == 3 and "lasts 12.00 s but story.wav lasts 30.00 s" in result.stderr
    assert "Traceback" not in result.stderr
