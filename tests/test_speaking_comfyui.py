"""Speaking shots through ComfyUI, run for real against the fake server (Wan 2.2 S2V nodes, .latent files,
a mouth that follows the audio it hears at 16 fps: tests/fakes/comfyui/media.py) and the fake vision judge.

On a dialogue between two on-screen characters: the speaking shots are the ones the rule picks; every
job of a speaking clip uploads exactly the speaker's span of story.wav; job lengths obey Wan's 4n+1
at 16 fps; a long line is chained, each later job extending the previous job's saved latent; the
judge samples speaking clips like the others (a drifted one is made again, all its jobs); and in
final_sd.mp4 the lips move with the line at its place on the narration, to a frame.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.video import clips
from common.video.animation import FrameRule, slot_frames
from common.video.speaking import read_line_timings
from common.video.storyboard import read_storyboard
from tests.fakes import start_fake_comfyui
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.project import copy_pipeline, env_for, run_script
from tests.support.video_inputs import make_dialogue_inputs

pytestmark = pytest.mark.timeout(240)
W, H, FPS = 160, 96, 24
SPEAKERS = {"scene_1.1": "female_keeper_niece_ada", "scene_1.2": "male_keeper_silas"}


def _verdict(**scores: float) -> dict[str, dict[str, Any]]:
    return {tag: {"score": s, "reason": f"{tag} {'matches' if s >= 0.6 else 'drifted from'} the sheet"}
            for tag, s in scores.items()}


ANSWERS = [  # Silas's speaking clip drifts in its first take and holds in the retake
    {"contains": "Scene scene_1.2:", "answers": [_verdict(male_keeper_silas=0.4, female_keeper_niece_ada=0.9),
                                                 _verdict(male_keeper_silas=0.9, female_keeper_niece_ada=0.9)]},
    {"contains": "Scene scene_1.1:", "answer": _verdict(female_keeper_niece_ada=0.9, male_keeper_silas=0.8)},
    {"contains": "Scene scene_1.3:", "answer": _verdict(male_keeper_silas=0.9)},
    {"contains": "Scene scene_1.4:", "answer": _verdict(female_keeper_niece_ada=0.9)},
    {"contains": "Scene scene_1.5:", "answer": _verdict(female_keeper_niece_ada=0.9)},
]


def _nodes(prompt: dict[str, Any], *classes: str) -> list[dict[str, Any]]:
    return [n for n in prompt.values() if n["class_type"] in classes]


def _is_talk(prompt: dict[str, Any]) -> bool:
    return bool(_nodes(prompt, "WanSoundImageToVideo", "WanSoundImageToVideoExtend"))


def _pcm(path: Path) -> tuple[bytes, int, int]:
    with wave.open(str(path), "rb") as src:
        return src.readframes(src.getnframes()), src.getframerate(), src.getsampwidth() * src.getnchannels()


def _mouth(video: Path) -> np.ndarray:
    """Per frame: the fake's mouth region's mean luma (its opening, up to the encoder's range)."""
    rows = slice(3 * H // 4 - H // 8, 3 * H // 4 + H // 8)
    cols = slice(W // 4, 3 * W // 4)
    return np.array([float(np.frombuffer(f, dtype=np.uint8)[:W * H].reshape(H, W)[rows, cols].mean())
                     for f in clips.frames_of(video, W, H)])


def _heard(story: Path, start_frame: int, count: int) -> np.ndarray:
    """What the line sounds like at each film frame of final.wav's timing: RMS around its instant."""
    data, rate, _ = _pcm(story)
    samples = np.frombuffer(data, dtype="<i2").astype(np.float64)
    out = []
    for k in range(start_frame, start_frame + count):
        t = k / FPS
        chunk = samples[max(0, round((t - 1 / 32) * rate)):round((t + 1 / 32) * rate)]
        out.append(float(np.sqrt(np.mean(chunk ** 2))) if len(chunk) else 0.0)
    return np.array(out)


def test_speaking_shots_are_lip_synced_by_s2v_jobs_on_their_own_lines(tmp_path: Path) -> None:
    make_dialogue_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    assert run_script(pipeline, "1.story.py", env=env_for(PIPELINE_ENGINE="offline")).returncode == 0
    story = tmp_path / "gen.audio" / "output" / "story.wav"
    lines = {x.line: x for x in read_line_timings(story.parent)}
    with start_fake_comfyui(tmp_path, job_seconds=0.02) as fake, \
            start_fake_llm(tmp_path, model=["text-model", "vision-model"], answers=ANSWERS) as llm:
        env = env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=fake.url, COMFYUI_QUEUE_DEPTH="1",
                      LM_STUDIO_BASE_URL=llm.base_url, LM_STUDIO_MODEL="text-model", IDENTITY_JUDGE_MODEL="vision-model",
                      IDENTITY_RETAKES="1", VIDEO_WORKFLOW="wan", VIDEO_WIDTH=str(W), VIDEO_HEIGHT=str(H),
                      FRAMES_PER_SECOND=str(FPS))
        result = run_script(pipeline, "3.animate.py", env=env, timeout=200)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "2 speaking shot(s) lip-synced by wan-s2v at 16 fps in 3 job(s)" in result.stdout

        talk = [p for p in fake.prompts() if _is_talk(p)]
        by_clip: dict[str, list[dict[str, Any]]] = {}
        for prompt in talk:
            (audio,) = _nodes(prompt, "LoadAudio")
            by_clip.setdefault(audio["inputs"]["audio"].split(" (")[0].removesuffix(".wav"), []).append(prompt)
        # Ada's 1.86 s line is one job; Silas's 5.96 s line two (4.75 s a job), and two again for his retake.
        assert {c: len(p) for c, p in by_clip.items()} == {"scene_1.1": 1, "scene_1.2": 4}
        data, rate, width = _pcm(story)
        for clip, prompts in by_clip.items():
            span = lines[1 if clip == "scene_1.1" else 2]
            want = data[round(span.start * rate) * width:round(span.end * rate) * width]
            total = 0
            for prompt in prompts:
                (audio,) = _nodes(prompt, "LoadAudio")
                got, got_rate, _ = _pcm(fake.input_dir / audio["inputs"]["audio"])
                assert got_rate == rate and got == want  # the speaker's span of story.wav, to the sample
                (s2v,) = _nodes(prompt, "WanSoundImageToVideo", "WanSoundImageToVideoExtend")
                length = s2v["inputs"]["length"]
                assert FrameRule(4).valid(length) and length <= 77
                assert _nodes(prompt, "CreateVideo") == [] or _nodes(prompt, "CreateVideo")[0]["inputs"]["fps"] == 16
                total += (length - 1) // 4 + 1
            takes = len(prompts) // (2 if clip == "scene_1.2" else 1)
            latent = total // takes
            assert (span.end - span.start) * 16 <= 4 * (latent - 1) + 1 < (span.end - span.start) * 16 + 4
        # The chained line: the second job extends the latent the first one saved, as downloaded.
        first, second = by_clip["scene_1.2"][:2]
        assert _nodes(first, "SaveLatent") and not _nodes(first, "SaveVideo")
        (loaded,) = _nodes(second, "LoadLatent")
        assert _nodes(second, "WanSoundImageToVideoExtend") and _nodes(second, "SaveVideo")
        assert (fake.input_dir / loaded["inputs"]["latent"]).read_bytes() == \
            (pipeline / "output" / "animation" / "segments" / "scene_1.2.1.latent").read_bytes()
        ordinary = [p for p in fake.prompts() if not _is_talk(p)]
        assert len(ordinary) == 3  # scene_1.3, 1.4 and 1.5 ("no lip sync"): Wan image-to-video

        doc = json.loads((pipeline / "output" / "identity.json").read_text(encoding="utf-8"))["clips"]
        assert set(doc) == {"scene_1.1", "scene_1.2", "scene_1.3", "scene_1.4", "scene_1.5"}
        assert (doc["scene_1.2"]["retakes"], doc["scene_1.2"]["kept"], doc["scene_1.2"]["flagged"]) == (1, 2, False)
        for shot in read_storyboard(pipeline).shots:
            clip = pipeline / "output" / "animation" / f"{shot.clip}.mp4"
            assert clips.decoded_frame_count(clip) == slot_frames(shot.start, shot.end, FPS)

        again = run_script(pipeline, "3.animate.py", env=env, timeout=120)
        assert again.returncode == 0 and len(fake.prompts()) == len(talk) + 3  # nothing made twice

    result = run_script(pipeline, "4.video.py", env=env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL="http://127.0.0.1:9",
                                                          VIDEO_WIDTH=str(W), VIDEO_HEIGHT=str(H),
                                                          FRAMES_PER_SECOND=str(FPS)), timeout=120)
    assert result.returncode == 0, result.stderr
    final = _mouth(pipeline / "output" / "final_sd.mp4")
    for clip, line in ((c, lines[n]) for n, c in ((1, "scene_1.1"), (2, "scene_1.2"))):
        at, count = round(line.start * FPS), round((line.end - line.start) * FPS)
        heard = _heard(story, at, count)
        lags = {lag: float(np.corrcoef(final[at + lag:at + lag + count], heard)[0, 1])
                for lag in range(-4, 5) if at + lag >= 0}
        best = max(lags, key=lags.get)
        assert abs(best) <= 1 and lags[best] > 0.8, (clip, lags)  # 16 fps frames on 24 fps film: a step curve
        assert lags[best] - lags[4] > 0.2  # and a copy four frames late does not match


def test_a_kill_in_a_chained_line_costs_only_the_job_in_flight(tmp_path: Path) -> None:
    make_dialogue_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    assert run_script(pipeline, "1.story.py", env=env_for(PIPELINE_ENGINE="offline")).returncode == 0
    state_file = pipeline / "output" / "tracking" / "3.animate.state.json"
    with start_fake_comfyui(tmp_path, job_seconds=0.3) as fake:
        env = env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=fake.url, COMFYUI_QUEUE_DEPTH="1",
                      LM_STUDIO_CMD="no-such-lms-command", IDENTITY_JUDGE="off", VIDEO_WORKFLOW="wan",
                      VIDEO_WIDTH=str(W), VIDEO_HEIGHT=str(H), FRAMES_PER_SECOND=str(FPS))
        proc = subprocess.Popen([sys.executable, "3.animate.py"], cwd=pipeline / "scripts", env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not any(
                _nodes(p, "WanSoundImageToVideoExtend") for p in fake.prompts()):
            time.sleep(0.02)
        assert proc.poll() is None, "3.animate.py ended before Silas's second chunk was queued"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        done = {k for k, v in json.loads(state_file.read_text())["items"].items() if v["status"] == "done"}
        assert {"scene_1.1", "scene_1.2#1"} <= done  # the chunk before the kill is kept as its latent
        before = len(fake.prompts())
        result = run_script(pipeline, "3.animate.py", env=env, timeout=150)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        again = [p for p in fake.prompts()[before:] if _is_talk(p)]
        # At most the chunk in flight is queued again (none if it had finished, or the server's finished job
        # with the same graph is taken over): never Silas's first chunk or Ada's line.
        assert len(again) <= (0 if "scene_1.2#2" in done else 1)
        assert all(_nodes(p, "WanSoundImageToVideoExtend") for p in again)
    clip = pipeline / "output" / "animation" / "scene_1.2.mp4"
    shot = next(s for s in read_storyboard(pipeline).shots if s.clip == "scene_1.2")
    assert clips.decoded_frame_count(clip) == slot_frames(shot.start, shot.end, FPS)
    assert not list((pipeline / "output" / "animation").rglob("talk-*"))  # no scratch folder left behind
