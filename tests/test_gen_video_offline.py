"""gen.video offline: the storyboard, motion prompts, and the four scripts run for real in a tmp copy
(gen.image's and gen.audio's outputs made up where the scripts read them)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.video import clips
from common.media import ffmpeg as media
from common.video.animation import FrameRule, slot_frames
from common.video.clip_jobs import Look, build_jobs
from common.formats.descriptions import read_motions
from common.formats.story import parse_scene_line, read_story
from common.formats.timeline import parse_timeline_script, read_timeline_script
from common.video.motion import check_motion, clean_motion, clip_prompt, figure_of, offline_motion
from common.video.storyboard import build_storyboard, read_storyboard
from tests.support.project import copy_pipeline, env_for, run_generate, run_script
from tests.support.video_inputs import SCENES, make_inputs, scene_id

pytestmark = pytest.mark.timeout(120)
W, H, FPS = 320, 180, 24


def _env(**extra: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="offline", VIDEO_WIDTH=str(W), VIDEO_HEIGHT=str(H), **extra)


# ---------------------------------------------------------------- storyboard and prompts (no processes)

def test_storyboard_of_the_seed_timeline(fixtures_dir: Path) -> None:
    timeline = read_timeline_script(fixtures_dir / "gen.audio" / "input" / "2.timeline.script.txt")
    story = read_story(fixtures_dir / "gen.video" / "input" / "1.story.txt")
    board = build_storyboard(timeline, story=story)
    assert len(board.shots) == 79 and board.parts() == (1, 2, 3, 4, 5)
    # Slots tile the narration: each starts where the previous ended, the last ends at the total.
    assert board.shots[0].start == 0.0
    for before, after in zip(board.shots, board.shots[1:]):
        assert after.start == pytest.approx(before.end)
    assert board.shots[-1].end == pytest.approx(timeline.total())
    first, second = board.shots[0], board.shots[1]
    assert first.seconds == pytest.approx(3.6 + 4.55 + 2.64)  # three timeline lines of scene_1.1
    assert second.seconds == pytest.approx(5.17 + 1.6 + 5.22)  # a pause keeps the picture showing
    assert first.same_location_as_next and second.same_location_as_previous and first.first_in_part
    assert first.location.startswith("A British Victorian living room")  # the story's first mention
    assert "scene_4.4" in board.unshown  # in the story, never on screen
    assert len(board.continuity_runs()) >= 10


def test_a_scene_shown_twice_gets_a_clip_per_shot_and_a_leading_pause_is_the_first_shot() -> None:
    text = (
        "0.5 : ..\n"
        "2.0: scene_1.1 = {{loc_1, a hall}}, {Night}; ((male_bob)){Calm}, {Standing}{Waiting};, male_bob = One.\n"
        "1.5: scene_1.2 = {{loc_1}}, {Night}; ((female_amy)){Sad}, {Sitting}{Crying};, female_amy = Two.\n"
        "1.0: scene_1.1 = {{loc_1}}, {Night}; ((male_bob)){Calm}, {Standing}{Waiting};, male_bob = Three.\n"
    )
    board = build_storyboard(parse_timeline_script(text, source="t"))
    assert [s.clip for s in board.shots] == ["scene_1.1", "scene_1.2", "scene_1.1_2"]
    assert [(s.start, s.seconds) for s in board.shots] == [(0.0, 2.5), (2.5, 1.5), (4.0, 1.0)]
    assert board.scene_ids() == ("scene_1.1", "scene_1.2")
    assert all(s.location == "a hall" for s in board.shots)


def test_offline_motion_comes_from_the_scene_line_and_the_shots_place() -> None:
    text = "".join(f"{s:.2f}: {scene_id(l)} = {l[l.index(')') + 1:].strip()}, {sp} = x.\n" for sp, l, s in SCENES)
    board = build_storyboard(parse_timeline_script(text, source="t"))
    first, second = board.shots[0], board.shots[1]
    assert offline_motion(first) == ("A determined Keeper Niece Ada, standing in the rowing boat, keeps tying the rope "
                                     "to the ring. The camera slowly pulls back.")  # a new part opens wide
    assert offline_motion(second).endswith("The camera pans slowly to the right.")  # same place: pan
    for shot in board.shots:
        check_motion(offline_motion(shot))
    keyed = parse_scene_line("(scene_1.1) {{loc_1}}, {Weather/Season/Time: winter}; ((male_doctor_watson)){Facial Expression: "
                             "thoughtful}, {Relative Location: left side of sofa},{Body Posture: sitting},{Primary Action: reading};")
    figure = figure_of(keyed.characters[0])
    assert (figure.name, figure.expression, figure.pose, figure.action) == (
        "Doctor Watson", "thoughtful", "sitting, left side of sofa", "reading")
    prompt = clip_prompt(first, "Ada pulls the rope.", art_style="Anime")
    assert prompt.startswith("Anime style. Ada pulls the rope. Autumn evening, fog; Keeper Niece Ada: Determined")
    assert prompt.endswith("a stone lighthouse on a rocky point.")
    bare = clip_prompt(first, "Ada pulls the rope.", art_style="", enable_scene=False, enable_location=False)
    assert bare == "Ada pulls the rope."


@pytest.mark.parametrize("answer, problem", [
    ("Okay, let me look at the picture first.", "reasoning"),
    ("<think>hmm</think>", "reasoning"),
    ("She rows. The boat rocks. Gulls wheel. The camera pulls back.", "sentences"),
    ("- she rows\n- the camera pulls back", "one line"),
    ("Rows.", "too short"),
    ("word " * 90, "words"),
])
def test_motion_answers_that_are_not_a_prompt_are_refused(answer: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_motion(clean_motion(answer))


def test_good_motion_answers_pass_after_cleaning() -> None:
    text = clean_motion('Motion prompt: "Mrs. Hudson sets the tray down as steam curls from the pot. The camera slowly pushes in."')
    assert text.startswith("Mrs. Hudson") and text.endswith("pushes in.")
    check_motion(text)  # "Mrs." does not end a sentence


def test_jobs_follow_the_settings(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    board = build_storyboard(read_timeline_script(tmp_path / "gen.image" / "input" / "2.timeline.script.txt"))
    look = Look(W, H, FPS, 0, "Anime", True, True, True, True, 1.0, frozenset({"scene_2.2"}))
    motions = {"scene_1.1": "Ada ties the rope. The camera pans slowly to the left."}
    jobs, unprompted = build_jobs(board, motions, look, FrameRule(4, 5.0, "wan"), pipeline)
    by_id = {j.shot.clip: j for j in jobs}
    assert unprompted == ["scene_1.2", "scene_1.3", "scene_2.1", "scene_2.2"]
    assert by_id["scene_1.1"].camera == "pan_left" and "Ada ties the rope." in by_id["scene_1.1"].prompt
    assert by_id["scene_1.1"].end_image.name == "scene_1.2.png"  # same place next: ends on its picture
    assert by_id["scene_1.3"].end_image is None  # the next scene is elsewhere
    assert by_id["scene_2.1"].hold and by_id["scene_2.2"].hold  # too short / listed in HELD_SCENES
    assert len(by_id["scene_1.2"].plan.segments) == 3  # 12 s on a 5 s model
    assert by_id["scene_1.2"].plan.frames == slot_frames(3.6, 15.6, FPS) == 288
    assert by_id["scene_1.1"].plan.frames == slot_frames(0.0, 3.6, FPS)  # the pause keeps scene_1.1 showing


# ---------------------------------------------------------------- the scripts

def _frames(path: Path) -> int:
    return clips.decoded_frame_count(path)


def test_generate_offline_writes_motion_clips_and_final_video(tmp_path: Path) -> None:
    copy_pipeline(tmp_path, "gen.audio")
    pipeline = copy_pipeline(tmp_path, "gen.video")
    audio_seconds = make_inputs(tmp_path)  # after copy: our story replaces the sample one
    # gen.video's own four steps of the whole chain (the others have their own tests).
    result = run_generate(pipeline, "--from", "1.story", "--until", "3.animate", env=_env(), timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = run_generate(pipeline, "--only", "4.video", env=_env(), timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    motions = read_motions(pipeline / "input" / "2.motion.txt")
    assert motions.keys() == tuple(f"motion_{scene_id(l)[6:]}" for _, l, _ in SCENES)
    board = read_storyboard(pipeline)
    for shot in board.shots:
        clip = pipeline / "output" / "animation" / f"{shot.clip}.mp4"
        info = media.probe(clip)
        assert (info.video.codec, info.video.width, info.video.height) == ("h264", W, H)
        assert _frames(clip) == slot_frames(shot.start, shot.end, FPS), shot.clip

    final = pipeline / "output" / "final_sd.mp4"
    info = media.probe(final)
    assert info.video.codec == "h264" and info.video.pix_fmt == "yuv420p" and info.audio.codec == "aac"
    assert (info.video.width, info.video.height) == (1280, 720)  # published size, clips scaled up
    assert _frames(final) == round(audio_seconds * FPS)
    assert abs(info.duration - audio_seconds) <= 1.0 / FPS
    state = json.loads((pipeline / "output" / "tracking" / "3.animate.state.json").read_text())
    assert all(item["preview"] for item in state["items"].values())  # offline outputs are previews

    stamps = {p: p.stat().st_mtime_ns for p in (pipeline / "output").rglob("*.mp4")}
    again = run_generate(pipeline, "--from", "1.story", "--until", "3.animate", env=_env(), timeout=120)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing redone
    assert "0 made" in again.stdout


def test_existing_motion_lines_are_kept_unless_force_start(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    assert run_script(pipeline, "1.story.py", env=_env()).returncode == 0
    mine = "(motion_1.2) {Bram holds out the lantern as the fog rolls past, the camera still."
    (pipeline / "input" / "2.motion.txt").write_text(f"{mine}\n(motion_9.9) A scene cut from the story.\n", encoding="utf-8")
    result = run_script(pipeline, "2.motion.py", env=_env())
    assert result.returncode == 0, result.stderr
    lines = (pipeline / "input" / "2.motion.txt").read_text(encoding="utf-8").splitlines()
    assert lines[1] == mine and lines[-1] == "(motion_9.9) A scene cut from the story."
    assert len(lines) == len(SCENES) + 1
    assert "4 to write" in result.stdout
    forced = run_script(pipeline, "2.motion.py", "--force-start", env=_env())
    assert forced.returncode == 0, forced.stderr
    assert read_motions(pipeline / "input" / "2.motion.txt").get("motion_1.2").startswith("A gruff Fisherman Bram")


def test_missing_inputs_are_one_sentence(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path, "gen.video")
    result = run_script(pipeline, "1.story.py", env=_env())
    assert result.returncode == 3 and "run gen.image first" in result.stderr and "Traceback" not in result.stderr
    result = run_script(pipeline, "3.animate.py", env=_env())
    assert result.returncode == 3 and "run 1.story.py first" in result.stderr
    make_inputs(tmp_path)
    (tmp_path / "gen.image" / "output" / "scene" / "scene_1.3.png").unlink()
    (tmp_path / "gen.audio" / "output" / "final.wav").unlink()
    assert run_script(pipeline, "1.story.py", env=_env()).returncode == 0
    result = run_script(pipeline, "3.animate.py", env=_env())
    assert result.returncode == 3 and "scene_1.3.png" in result.stderr and "3.scene.py" in result.stderr
    result = run_script(pipeline, "4.video.py", env=_env())
    assert result.returncode == 3 and "final.wav" in result.stderr

