"""Speaking shots on a sound-to-video model: the chunk plan, its frame placement, each chunk's graph,
and the work list 3.animate.py checkpoints (chunks, then the join)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from common.engines.base import ClipRequest
from common.engines.comfy_talk import talk_workflow
from common.formats.timeline import read_timeline_script
from common.run.errors import InputError
from common.video.animation import FrameRule
from common.video.clip_jobs import Look, build_jobs, fingerprints, items_for
from common.video.speaking import S2V_FPS, TalkRule, cut_span, plan_talk, read_line_timings, s2v_rule, speaking_spans
from common.video.storyboard import build_storyboard
from tests.support.video_inputs import make_dialogue_inputs

TEMPLATE = Path(__file__).resolve().parents[1] / "gen.video" / "workflow" / "speak_wan.json"
S2V = TalkRule(FrameRule(4, 4.75, "wan-s2v"), 16, {"engine": "test-s2v"})


@pytest.mark.parametrize("seconds", [0.2, 0.31, 1.0, 4.7, 4.75, 4.8, 5.96, 9.5, 9.6, 14.0, 31.3])
def test_a_line_becomes_the_fewest_even_chunks_that_cover_it(seconds: float) -> None:
    plan = plan_talk(seconds, S2V)
    needed = max(5, math.ceil(seconds * 16 - 1e-6))
    assert all(S2V.rule.valid(length) and length <= 77 for length in plan.chunks)
    # A latent of T frames decodes to 4(T-1)+1: the whole covers the line, with less than one latent frame spare.
    assert plan.frames == 4 * (plan.latent - 1) + 1
    assert needed <= plan.frames < needed + 4
    assert len(plan.chunks) == math.ceil(plan.latent / 20)
    assert max(plan.chunks) - min(plan.chunks) <= 4  # even: at most one latent frame apart


def test_the_clip_shows_the_model_frame_of_each_instant_of_the_line() -> None:
    plan = plan_talk(2.0, S2V)  # 33 frames at 16 fps
    indices = plan.indices(60, lead=6, fps=24)
    assert indices[:7] == [0] * 7  # the first frame until the line starts (and at its first instant)
    for k in range(6, 60):
        assert abs((k - 6) / 24 - indices[k] / 16) <= 1 / 32 + 1e-9 or indices[k] == plan.frames - 1
    assert indices[-1] == plan.frames - 1 and indices == sorted(indices)


def test_the_rule_reads_its_limit_and_refuses_a_useless_one(tmp_path: Path) -> None:
    from common.run.errors import ConfigError

    rule = s2v_rule(TEMPLATE, {"ltx": 8.0})
    assert rule.fps == S2V_FPS == 16 and rule.rule.max_frames(16) == 77 and rule.identity["workflow"] == "speak_wan.json"
    assert s2v_rule(TEMPLATE, {"s2v": 2.0}).rule.max_frames(16) == 33
    with pytest.raises(ConfigError, match=r"MODEL_MAX_SECONDS\['s2v'\]"):
        s2v_rule(TEMPLATE, {"s2v": "soon"})


def _request(**extra) -> ClipRequest:
    return ClipRequest(scene_id="scene_1.2", image=Path("x.png"), prompt="Silas answers.", seconds=4.0, width=320,
                       height=176, fps=16, seed=42, frames=61, **extra)


def _one(prompt: dict, cls: str) -> tuple[str, dict]:
    found = [(k, v) for k, v in prompt.items() if v["class_type"] == cls]
    assert len(found) == 1, (cls, found)
    return found[0]


def test_the_first_chunk_is_the_template_with_the_picture_the_line_and_the_size() -> None:
    prompt = talk_workflow(TEMPLATE, _request(audio=Path("a.wav")), fps=16, image="pic.png", audio="line.wav",
                           latent=None).to_prompt()
    _, s2v = _one(prompt, "WanSoundImageToVideo")
    assert (s2v["inputs"]["width"], s2v["inputs"]["height"], s2v["inputs"]["length"]) == (320, 176, 61)
    assert _one(prompt, "LoadAudio")[1]["inputs"]["audio"] == "line.wav"
    assert _one(prompt, "LoadImage")[1]["inputs"]["image"] == "pic.png"
    assert _one(prompt, "KSampler")[1]["inputs"]["seed"] == 42
    create = _one(prompt, "CreateVideo")[1]["inputs"]
    assert create["fps"] == 16 and "audio" not in create  # a silent clip at the model's rate
    assert _one(prompt, "SaveVideo") and not [n for n in prompt.values() if "Latent" in n["class_type"]]


def test_a_middle_chunk_extends_the_saved_latent_and_saves_it_again() -> None:
    prompt = talk_workflow(TEMPLATE, _request(audio=Path("a.wav"), latent=Path("c.1.latent"), keep_latent=True),
                           fps=16, image="pic.png", audio="line.wav", latent="c.1.latent").to_prompt()
    ext_id, ext = _one(prompt, "WanSoundImageToVideoExtend")
    assert not {"width", "height", "batch_size"} & set(ext["inputs"]) and ext["inputs"]["length"] == 61
    load_id, load = _one(prompt, "LoadLatent")
    assert load["inputs"]["latent"] == "c.1.latent" and ext["inputs"]["video_latent"] == [load_id, 0]
    sampler_id, _ = _one(prompt, "KSampler")
    concat_id, concat = _one(prompt, "LatentConcat")
    assert concat["inputs"] == {"samples1": [load_id, 0], "samples2": [sampler_id, 0], "dim": "t"}
    assert _one(prompt, "SaveLatent")[1]["inputs"]["samples"] == [concat_id, 0]
    # Nothing is decoded before the last chunk: no decoder, no video.
    assert not [n for n in prompt.values() if n["class_type"] in ("VAEDecode", "CreateVideo", "SaveVideo")]


def test_the_last_chunk_decodes_the_whole_clip() -> None:
    prompt = talk_workflow(TEMPLATE, _request(audio=Path("a.wav"), latent=Path("c.2.latent")), fps=16,
                           image="pic.png", audio="line.wav", latent="c.2.latent").to_prompt()
    concat_id, _ = _one(prompt, "LatentConcat")
    assert _one(prompt, "VAEDecode")[1]["inputs"]["samples"] == [concat_id, 0]
    assert _one(prompt, "SaveVideo") and not [n for n in prompt.values() if n["class_type"] == "SaveLatent"]


def test_a_workflow_without_the_sound_node_is_named(tmp_path: Path) -> None:
    wan = Path(__file__).resolve().parents[1] / "gen.video" / "workflow" / "animate_wan.json"
    with pytest.raises(InputError, match=r"animate_wan.json has no WanSoundImageToVideo node.*SPEAKING_SHOTS"):
        talk_workflow(wan, _request(audio=Path("a.wav")), fps=16, image="p.png", audio="l.wav", latent=None)


def _jobs(root: Path, talk: TalkRule | None):
    make_dialogue_inputs(root)
    board = build_storyboard(read_timeline_script(root / "gen.image" / "input" / "2.timeline.script.txt"))
    spans = speaking_spans(board, read_line_timings(root / "gen.audio" / "output"), S2V.rule, S2V.fps)
    speech = {c: (s, cut_span(root / "gen.audio" / "output" / "story.wav", s, root / "speech" / f"{c}.wav"))
              for c, s in spans.items()}
    look = Look(320, 176, 24, 0, "", True, True, True, True, 1.0, frozenset())
    rule = FrameRule(4, 5.0, "wan")
    jobs, _ = build_jobs(board, {}, look, rule, root / "gen.video", speech, talk)
    return jobs, look, rule


def test_speaking_shots_are_chunks_then_a_join_and_a_changed_line_redoes_only_its_clip(tmp_path: Path) -> None:
    jobs, look, rule = _jobs(tmp_path, S2V)
    talking = {j.shot.clip: j for j in jobs if j.talk is not None}
    assert set(talking) == {"scene_1.1", "scene_1.2"}
    assert talking["scene_1.1"].end_image is None  # driven by its line, not towards the next picture
    # Silas speaks 5.96 s: two chunks on a 4.75 s model; Ada's 1.86 s line one.
    assert [len(talking[c].talk.chunks) for c in ("scene_1.1", "scene_1.2")] == [1, 2]
    items = items_for(jobs, rule)
    keys = [it.key for it in items if it.job.shot.clip == "scene_1.2"]
    assert keys == ["scene_1.2#1", "scene_1.2#2", "scene_1.2"]
    before = fingerprints(items, {"engine": "x"}, look, rule)

    speech = tmp_path / "speech" / "scene_1.2.wav"
    data = bytearray(speech.read_bytes())
    data[-2:] = b"\x00\x10"  # the line's last sample changed
    speech.write_bytes(bytes(data))
    after = fingerprints(items, {"engine": "x"}, look, rule)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"scene_1.2#1", "scene_1.2#2", "scene_1.2"}

    # Without a sound-to-video model the same shots are ordinary jobs that carry the audio (offline).
    plain, _, _ = _jobs(tmp_path / "plain", None)
    assert all(j.talk is None for j in plain) and sum(j.speech is not None for j in plain) == 2
