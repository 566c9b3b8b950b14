"""gen.video against the fake ComfyUI and LLM servers: what each animation job carries (picture,
motion prompt, size, length, frame rate, end picture), segments chained from the previous last
frame, SIGKILLs during 3.animate.py, and motion prompts from a vision model."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from common.video import clips
from common.media import ffmpeg as media
from common.video.animation import FrameRule, slot_frames
from common.formats.descriptions import read_motions
from common.video.storyboard import read_storyboard
from tests.fakes import start_fake_comfyui
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.project import copy_pipeline, env_for, run_script
from tests.support.video_inputs import SCENES, make_inputs, scene_id

pytestmark = pytest.mark.timeout(150)
W, H, FPS = 160, 96, 24  # small frames: the fake server's work grows with them


def _setup(tmp_path: Path) -> tuple[Path, float]:
    """A gen.video copy with made-up inputs, its storyboard, and one tagged motion line per scene."""
    audio_seconds = make_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    result = run_script(pipeline, "1.story.py", env=env_for(PIPELINE_ENGINE="offline"))
    assert result.returncode == 0, result.stderr
    lines = [f"(motion_{scene_id(l)[6:]}) MOTION-{scene_id(l)} moves gently. The camera slowly pushes in." for _, l, _ in SCENES]
    (pipeline / "input" / "2.motion.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return pipeline, audio_seconds


def _env(url: str, **extra: str) -> dict[str, str]:
    # One job at a time (COMFYUI_QUEUE_DEPTH=1): these tests read the jobs in the order of the clips.
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=url, LM_STUDIO_CMD="no-such-lms-command", COMFYUI_QUEUE_DEPTH="1",
                   VIDEO_WIDTH=str(W), VIDEO_HEIGHT=str(H), FRAMES_PER_SECOND=str(FPS), **extra)


def _nodes(prompt: dict[str, Any], cls: str) -> list[dict[str, Any]]:
    return [n for n in prompt.values() if n["class_type"] == cls]


def _loader(prompt: dict[str, Any], end: bool) -> dict[str, Any] | None:
    found = [n for n in _nodes(prompt, "LoadImage") if ("end" in n.get("_meta", {}).get("title", "")) == end]
    assert len(found) <= 1
    return found[0] if found else None


def _uploaded(fake, node: dict[str, Any]) -> bytes:
    return (fake.input_dir / node["inputs"]["image"]).read_bytes()


def _picture(tmp_path: Path, scene: str) -> bytes:
    return (tmp_path / "gen.image" / "output" / "scene" / f"{scene}.png").read_bytes()


def _positive_text(prompt: dict[str, Any]) -> str:
    return next(n["inputs"]["text"] for n in _nodes(prompt, "CLIPTextEncode") if "Positive" in n["_meta"]["title"])


def _last_decoded_frame(video: Path) -> np.ndarray:
    with av.open(str(video)) as container:
        *_, last = container.decode(container.streams.video[0])
        return last.to_ndarray(format="rgb24").astype(np.int16)


def test_wan_jobs_first_last_frame_and_chained_segments(tmp_path: Path) -> None:
    pipeline, audio_seconds = _setup(tmp_path)
    with start_fake_comfyui(tmp_path, job_seconds=0.05) as fake:
        env = _env(fake.url, VIDEO_WORKFLOW="wan", MODEL_MAX_SECONDS='{"wan": 5}', FIRST_LAST_FRAME="true")
        result = run_script(pipeline, "3.animate.py", env=env, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        jobs = fake.prompts()
        # scene_1.1, scene_1.2 in three segments (12 s on a 5 s model), scene_1.3, scene_2.2;
        # scene_2.1 (0.5 s) is a held frame, no job.
        assert len(jobs) == 6
        starts = [_uploaded(fake, _loader(job, end=False)) for job in jobs]
        ends = [_uploaded(fake, node) if (node := _loader(job, end=True)) else None for job in jobs]
        segments = pipeline / "output" / "animation" / "segments"
        assert starts == [_picture(tmp_path, "scene_1.1"), _picture(tmp_path, "scene_1.2"),
                          (segments / "scene_1.2.1.last.png").read_bytes(), (segments / "scene_1.2.2.last.png").read_bytes(),
                          _picture(tmp_path, "scene_1.3"), _picture(tmp_path, "scene_2.2")]
        # First-last-frame: a scene followed by one in the same place ends on that scene's picture.
        assert ends == [_picture(tmp_path, "scene_1.2"), None, None, _picture(tmp_path, "scene_1.3"), None, None]
        for job, scene in zip(jobs, ["scene_1.1", "scene_1.2", "scene_1.2", "scene_1.2", "scene_1.3", "scene_2.2"]):
            (wan,) = _nodes(job, "WanFirstLastFrameToVideo")
            assert (wan["inputs"]["width"], wan["inputs"]["height"]) == (W, H)
            assert FrameRule(4).valid(wan["inputs"]["length"]) and wan["inputs"]["length"] <= 121
            assert ("end_image" in wan["inputs"]) == (_loader(job, end=True) is not None)
            assert _nodes(job, "CreateVideo")[0]["inputs"]["fps"] == FPS
            text = _positive_text(job)
            assert f"MOTION-{scene} moves gently." in text and text.startswith("Ghibli Art style.")
        lengths = [_nodes(job, "WanFirstLastFrameToVideo")[0]["inputs"]["length"] for job in jobs]
        assert lengths[1:4] == [97, 97, 97]  # 288 frames = 97 + 96 + 95 after the shared frames, even segments
    # Each later segment started from the previous segment's real last frame.
    for k in (1, 2):
        png = np.asarray(Image.open(segments / f"scene_1.2.{k}.last.png").convert("RGB"), dtype=np.int16)
        assert np.abs(png - _last_decoded_frame(segments / f"scene_1.2.{k}.mp4")).mean() < 2.0
    board = read_storyboard(pipeline)
    for shot in board.shots:
        assert clips.decoded_frame_count(pipeline / "output" / "animation" / f"{shot.clip}.mp4") == \
            slot_frames(shot.start, shot.end, FPS)

    result = run_script(pipeline, "4.video.py", env=_env("http://127.0.0.1:9"), timeout=120)
    assert result.returncode == 0, result.stderr
    final = media.probe(pipeline / "output" / "final_sd.mp4")
    assert final.video.codec == "h264" and final.audio.codec == "aac"
    assert abs(final.duration - audio_seconds) <= 1.0 / FPS
    state = json.loads((pipeline / "output" / "tracking" / "4.video.state.json").read_text())
    assert not state["items"]["final_sd.mp4"].get("preview")  # made from real (fake-server) clips


def test_ltx_jobs_and_the_end_guide(tmp_path: Path) -> None:
    pipeline, _ = _setup(tmp_path)
    with start_fake_comfyui(tmp_path, job_seconds=0.05) as fake:
        env = _env(fake.url, MODEL_MAX_SECONDS='{"ltx": 20}', ART_STYLE="Anime", ENABLE_LOCATION="false")
        result = run_script(pipeline, "3.animate.py", env=env, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        jobs = fake.prompts()
        assert len(jobs) == 4  # one job per generated scene: nothing is longer than 20 s
        first = jobs[0]
        (latent,) = _nodes(first, "EmptyLTXVLatentVideo")
        assert (latent["inputs"]["width"], latent["inputs"]["height"], latent["inputs"]["length"]) == (W, H, 89)  # 86 -> 8n+1
        assert _nodes(first, "LTXVConditioning")[0]["inputs"]["frame_rate"] == FPS
        assert _nodes(first, "VHS_VideoCombine")[0]["inputs"]["frame_rate"] == FPS
        assert not _nodes(first, "SaveImage")  # no PNG of every frame to download
        text = _positive_text(first)
        assert text.startswith("Anime style. MOTION-scene_1.1") and "lighthouse" not in text
        guides = {n["inputs"]["frame_idx"]: n for n in _nodes(first, "LTXVAddGuide")}
        assert set(guides) == {0, -1}  # start at the first frame, end picture at the last
        end_pre = first[guides[-1]["inputs"]["image"][0]]
        assert _uploaded(fake, first[end_pre["inputs"]["image"][0]]) == _picture(tmp_path, "scene_1.2")
        assert _uploaded(fake, _loader(first, end=False)) == _picture(tmp_path, "scene_1.1")
        assert [len(_nodes(job, "LTXVAddGuide")) for job in jobs] == [1 + 1, 1 + 1, 1, 1]
        assert _nodes(jobs[1], "EmptyLTXVLatentVideo")[0]["inputs"]["length"] == 289  # 12 s = 288 -> 8n+1


def _job_key(name: str) -> str:
    """`scene_1.2.png` -> scene_1.2#1; `scene_1.2.2.last.png` -> scene_1.2#3 (the segment it starts)."""
    if name.endswith(".last.png"):
        scene, number = name[: -len(".last.png")].rsplit(".", 1)
        return f"{scene}#{int(number) + 1}"
    return f"{name[: -len('.png')]}#1"


def test_sigkill_during_animation_never_redoes_a_finished_clip_or_segment(tmp_path: Path) -> None:
    pipeline, _ = _setup(tmp_path)
    state_file = pipeline / "output" / "tracking" / "3.animate.state.json"
    with start_fake_comfyui(tmp_path, job_seconds=0.5) as fake:
        env = _env(fake.url, MODEL_MAX_SECONDS='{"ltx": 5}', FIRST_LAST_FRAME="false")
        kills = 0
        for kill in (True, True, True, True, False):
            done_before = set()
            if state_file.exists():
                done_before = {k for k, v in json.loads(state_file.read_text())["items"].items() if v["status"] == "done"}
            queued_before = len(fake.prompts())
            proc = subprocess.Popen([sys.executable, "3.animate.py"], cwd=pipeline / "scripts", env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if kill:
                # Kill as this run's second job is queued (in flight for the fake's 0.5 s): its first one is
                # finished and recorded.
                deadline = time.monotonic() + 60
                while proc.poll() is None and len(fake.prompts()) < queued_before + 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            code = proc.wait(timeout=120)
            assert kill or code == 0
            if state_file.exists():
                json.loads(state_file.read_text())  # never torn
            queued = [_job_key(_loader(p, end=False)["inputs"]["image"]) for p in fake.prompts()[queued_before:]]
            assert not set(queued) & done_before, (queued, done_before)
        keys = [_job_key(_loader(p, end=False)["inputs"]["image"]) for p in fake.prompts()]
    assert kills >= 3
    assert sorted(set(keys)) == ["scene_1.1#1", "scene_1.2#1", "scene_1.2#2", "scene_1.2#3", "scene_1.3#1", "scene_2.2#1"]
    assert len(keys) <= 6 + kills  # at most the one job in flight per kill is queued again
    for shot in read_storyboard(pipeline).shots:
        clip = pipeline / "output" / "animation" / f"{shot.clip}.mp4"
        assert clips.decoded_frame_count(clip) == slot_frames(shot.start, shot.end, FPS)
    assert not list((pipeline / "output" / "animation").rglob(".*.tmp*"))  # no half-written file left


def test_motion_prompts_from_a_vision_model(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    assert run_script(pipeline, "1.story.py", env=env_for(PIPELINE_ENGINE="offline")).returncode == 0
    good = "Ada pulls the rope tight as the boat rocks on the swell. The camera slowly pulls back."
    answers = [
        {"contains": "scene_1.1 of", "answers": ["Okay, let me look at the picture first.", good]},
        {"contains": "This picture is",
         "answer": "The figures shift gently while fog drifts past. The camera pans slowly to the left."},
    ]
    with start_fake_llm(tmp_path, model=["text-model", "vision-model"], answers=answers) as llm:
        env = env_for(PIPELINE_ENGINE="offline", PIPELINE_TEXT_ENGINE="llm", LM_STUDIO_BASE_URL=llm.base_url,
                      LM_STUDIO_MODEL="text-model", MODEL_MOTION_GENERATION="vision-model")
        result = run_script(pipeline, "2.motion.py", env=env)
        assert result.returncode == 0, result.stderr
        chats = llm.chat_requests()
        assert len(chats) == len(SCENES) + 1  # one retry: the reasoning answer was refused
        assert {c["model"] for c in chats} == {"vision-model"} and all(c["images"] == 1 for c in chats)
        grounding = "What happens in it: a determined Keeper Niece Ada, standing in the rowing boat"
        assert grounding in chats[0]["last_user"]  # the question carries the scene line's action
        motions = read_motions(pipeline / "input" / "2.motion.txt")
        assert motions.get("motion_1.1") == good
        assert motions.get("motion_1.2").startswith("The figures shift gently")
        again = run_script(pipeline, "2.motion.py", "--force-start", env=env)
        assert again.returncode == 0 and llm.chat_count() == 2 * len(SCENES) + 1  # redone: 1.1 now answers at once



def test_the_vision_engine_needs_the_picture() -> None:
    from common.video.motion_text import LLMMotionText as LLMTextEngine
    from common.run.errors import InputError
    from common.video.motion import MotionBrief

    brief = MotionBrief("scene_1.3", "Ada looks up", "Night", "a tower", "zoom_in", "Ada looks up. The camera slowly pushes in.")
    with pytest.raises(InputError, match="scene_1.3 has no picture.*3.scene.py"):
        LLMTextEngine(client=None, model="vision-model").motion_prompt(brief, None)
