"""The identity judge: candidates, scores per character against the sheets, bounded retakes, flags.

Offline, the judge really looks at the cards' pixels (each character's identity colour), so a
keyframe drawn without a character fails and is retaken; with the fake ComfyUI and the fake vision
model (tests/fakes/fake_llm.py, its answers scripted per scene), a scene that keeps failing is
retaken exactly IDENTITY_RETAKES times and flagged, and a clip of gen.video that drifted is made
again. Every candidate and every answer is a checkpoint: a kill costs at most the one in flight.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from common.offline import cards
from common.pictures.identity import CastMember, Policy, Subject, keep_best
from common.pictures.judges import CardJudge, judge_schema
from common.state.checkpoints import CheckpointStore
from tests.fakes import start_fake_comfyui
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.asset_inputs import MILL_STORY, OFFLINE, pipelines, run, state
from tests.support.image_inputs import SMALL, image_pipeline
from tests.support.project import copy_pipeline, env_for, run_script
from tests.support.video_inputs import SCENES as VIDEO_SCENES, make_inputs, scene_id

pytestmark = pytest.mark.timeout(180)
MILL_CAST = {"scene_1.1": ["female_baker_mira"], "scene_1.2": ["female_baker_mira"],
             "scene_2.1": ["male_miller_otto", "female_baker_mira"], "scene_2.2": ["female_baker_mira"],
             "scene_3.1": ["male_miller_otto", "female_baker_mira"], "scene_3.2": ["male_boy_pip", "female_baker_mira"],
             "scene_3.3": ["female_baker_mira"]}


def identity(pipeline: Path) -> dict[str, Any]:
    return json.loads((pipeline / "output" / "identity.json").read_text(encoding="utf-8"))


def verdict(**scores: float) -> dict[str, dict[str, Any]]:
    """A vision model's answer: each character's score and its one line."""
    return {tag: {"score": s, "reason": f"{tag} {'matches' if s >= 0.6 else 'does not match'} the sheet"}
            for tag, s in scores.items()}


def leftovers(pipeline: Path, script: str) -> list[str]:
    raw = json.loads((pipeline / "output" / "tracking" / f"{script}.state.json").read_text(encoding="utf-8"))["items"]
    return [k for k in raw if "#cand" in k or "#judge" in k]


# ---------------------------------------------------------------- offline: the cards' colours

def test_offline_run_scores_every_character_of_every_scene_across_three_places(tmp_path: Path) -> None:
    pipeline = pipelines(tmp_path, MILL_STORY)
    for script in ("1.story.py", "2.character.py", "2.location.py"):
        run(pipeline, script)
    out, _ = run(pipeline, "3.scene.py")
    assert "identity judge: offline" in out and "no retakes" in out  # cards do not change with the seed
    doc = identity(pipeline)
    assert doc["judge"] == "offline" and doc["flagged"] == [] and set(doc["scenes"]) == set(MILL_CAST)
    for scene, cast in MILL_CAST.items():
        record = doc["scenes"][scene]
        assert list(record["characters"]) == cast, scene  # every character of the scene line, in its order
        for tag in cast:
            assert record["characters"][tag]["score"] == 1.0 and "#" in record["characters"][tag]["reason"]
        assert (record["flagged"], record["retakes"], record["kept"], record["seed"]) == (False, 0, 1, 333555666)
    items = state(pipeline, "3.scene")
    assert items["scene_3.2"]["data"]["identity"] == doc["scenes"]["scene_3.2"]  # identity.json is the checkpoints' view
    assert leftovers(pipeline, "3.scene") == [] and not (pipeline / "output" / "scene" / "candidates").exists()
    page = (pipeline / "output" / "review.html").read_text(encoding="utf-8")
    assert page.count('class="badge ok identity"') == len(MILL_CAST)
    # A rerun asks nothing again; identity.json is rebuilt from the checkpoints if it is lost.
    (pipeline / "output" / "identity.json").unlink()
    out, _ = run(pipeline, "3.scene.py")
    assert "7 already done" in out and identity(pipeline)["scenes"] == doc["scenes"]
    # Settings a user can get wrong: one sentence each, exit 4.
    _, err = run(pipeline, "3.scene.py", {**OFFLINE, "IDENTITY_THRESHOLD": "1.5"}, code=4)
    assert "IDENTITY_THRESHOLD is 1.5; use a score from 0 to 1." in err and "Traceback" not in err
    _, err = run(pipeline, "3.scene.py", {**OFFLINE, "IDENTITY_JUDGE": "vision"}, code=4)
    assert "IDENTITY_JUDGE is vision but this run has no LLM server" in err


def _scene_maker(tmp_path: Path, missing: dict[int, str], made: list[int]):
    """make(seed, out) drawing the MILL scene_3.2 card, without the character `missing` names for that seed."""
    cast = [("male_boy_pip", "holding out coins"), ("female_baker_mira", "handing over the loaves")]

    def make(seed: int, out: Path) -> dict[str, Any]:
        made.append(seed)
        drawn = [c for c in cast if c[0] != missing.get(seed)]
        cards.scene_card("scene_3.2", "a busy market square with striped awnings", drawn, out, 640, 360)
        return {"drawn": [tag for tag, _ in drawn]}
    return make


def _subject() -> Subject:
    return Subject("scene_3.2", "scene_3.2", "noon; loc_3: a busy market square",
                   (CastMember("male_boy_pip", "Boy Pip"), CastMember("female_baker_mira", "Baker Mira")))


def test_offline_judge_fails_a_keyframe_missing_a_character_and_retakes_it(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state.json", base_dir=tmp_path)
    policy = Policy(candidates=1, threshold=0.6, retakes=2, mode="offline")
    first = Policy.seed(100, 0)
    made: list[int] = []
    kept = keep_best(_subject(), _scene_maker(tmp_path, {first: "male_boy_pip"}, made), base_seed=100, item_fp="fp",
                     judge=CardJudge(), policy=policy, store=store, folder=tmp_path / "candidates")
    assert made == [first, Policy.seed(100, 1)]  # the first drawn without Pip, so retaken once with a new seed
    record = kept.record
    first_try, second_try = record["candidates"]
    assert first_try["characters"]["male_boy_pip"]["score"] == 0.0
    assert "Boy Pip is not in the picture" in first_try["characters"]["male_boy_pip"]["reason"]
    assert first_try["characters"]["female_baker_mira"]["score"] == 1.0
    assert second_try["score"] == 1.0 and (record["kept"], record["retakes"], record["flagged"]) == (2, 1, False)
    assert kept.made == {"drawn": ["male_boy_pip", "female_baker_mira"]} and kept.seed == Policy.seed(100, 1)

    # Never drawn: retaken exactly IDENTITY_RETAKES times, then the best (the first of equals) kept, flagged.
    always = {Policy.seed(200, n): "female_baker_mira" for n in range(5)}
    made.clear()
    kept = keep_best(_subject(), _scene_maker(tmp_path, always, made), base_seed=200, item_fp="fp2", judge=CardJudge(),
                     policy=policy, store=store, folder=tmp_path / "candidates")
    assert len(made) == 3 and (kept.record["retakes"], kept.record["flagged"], kept.record["kept"]) == (2, True, 1)
    assert kept.record["score"] == 0.0 and kept.path.name == "scene_3.2.1.png"


def test_a_kill_between_candidates_redoes_neither_a_candidate_nor_an_answer(tmp_path: Path) -> None:
    """Each candidate and each judge's answer is checkpointed the moment it exists."""
    policy = Policy(candidates=2, threshold=0.6, retakes=1, mode="offline")
    asked: list[str] = []

    class CountingJudge(CardJudge):
        def judge(self, views, subject):  # type: ignore[no-untyped-def]
            asked.append(views[0].name)
            return super().judge(views, subject)

    made: list[int] = []
    missing = {Policy.seed(7, n): "male_boy_pip" for n in range(2)}  # the whole first take fails
    maker = _scene_maker(tmp_path, missing, made)

    def dies_on_the_fourth(seed: int, out: Path) -> dict[str, Any]:
        if len(made) == 3:
            raise KeyboardInterrupt  # the run is killed while the fourth candidate is being made
        return maker(seed, out)

    store = CheckpointStore(tmp_path / "state.json", base_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        keep_best(_subject(), dies_on_the_fourth, base_seed=7, item_fp="fp", judge=CountingJudge(), policy=policy,
                  store=store, folder=tmp_path / "candidates")
    assert len(made) == 3 and len(asked) == 3
    again = CheckpointStore(tmp_path / "state.json", base_dir=tmp_path)  # the next run reads what was recorded
    kept = keep_best(_subject(), maker, base_seed=7, item_fp="fp", judge=CountingJudge(), policy=policy, store=again,
                     folder=tmp_path / "candidates")
    assert made == [Policy.seed(7, n) for n in range(4)] and len(asked) == 4  # only the fourth was made and judged
    assert (kept.record["kept"], kept.record["retakes"], kept.record["flagged"]) == (3, 1, False)


# ---------------------------------------------------------------- the fake ComfyUI and the fake vision model

def _comfy_env(fake, llm, **settings: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=fake.url, COMFYUI_QUEUE_DEPTH="1",
                   LM_STUDIO_BASE_URL=llm.base_url, LM_STUDIO_MODEL="text-model", IDENTITY_JUDGE_MODEL="vision-model",
                   FIXED_SEED="500", **SMALL, **settings)


def _jobs_for(fake, word: str) -> list[dict[str, Any]]:
    return [p for p in fake.prompts() if any(word in str(n["inputs"].get("text", "")) for n in p.values())]


def _seed(prompt: dict[str, Any]) -> int:
    return next(n["inputs"]["seed"] for n in prompt.values() if n["class_type"] == "KSampler")


SCENE_ANSWERS = [
    {"contains": "Scene scene_1.2:", "answer": verdict(female_nervous_mother=0.2, male_doctor_watson=0.9)},
    {"contains": "Scene scene_2.1:", "answers": [verdict(female_nervous_mother=0.3), verdict(female_nervous_mother=0.8)]},
    {"contains": "Scene scene_1.1:", "answer": verdict(male_doctor_watson=0.95)},
]


def test_a_keyframe_failing_the_vision_judge_is_retaken_exactly_up_to_the_limit(tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    with start_fake_comfyui(tmp_path, job_seconds=0.02) as fake, \
            start_fake_llm(tmp_path, model=["text-model", "vision-model"], answers=SCENE_ANSWERS) as llm:
        env = _comfy_env(fake, llm, KEYFRAME_CANDIDATES="2", IDENTITY_RETAKES="2")
        for script in ("2.character.py", "2.location.py"):
            run(pipeline, script, env)
        before = len(fake.prompts())
        out, _ = run(pipeline, "3.scene.py", env)
        assert "identity judge: the vision model vision-model" in out
        assert "scene_1.2: identity 0.20 is under 0.6 (female_nervous_mother: female_nervous_mother does not match " \
               "the sheet); retake 2 of 2 with new seeds" in out
        # scene_1.2 never passes: 2 candidates a take, the take and 2 retakes; the others pass in their first take.
        failing = _jobs_for(fake, "FOXTROT")
        assert len(failing) == 6 and [_seed(p) for p in failing] == [Policy.seed(500, n) for n in range(6)]
        assert len(_jobs_for(fake, "ECHO")) == 2 and len(_jobs_for(fake, "GOLF")) == 2
        assert len(fake.prompts()) - before == 10
        chats = llm.chat_requests()
        asked = [c for c in chats if "Scene scene_1.2:" in c["last_user"]]
        assert len(chats) == 10 and len(asked) == 6 and {c["model"] for c in chats} == {"vision-model"}
        assert all(c["images"] == 3 for c in asked)  # the candidate and both characters' pictures
        assert "Image 2 is the character sheet of female_nervous_mother" in asked[0]["last_user"]

        doc = identity(pipeline)
        failed, chosen = doc["scenes"]["scene_1.2"], doc["scenes"]["scene_2.1"]
        assert doc["flagged"] == ["scene_1.2"] and failed["flagged"] and failed["retakes"] == 2
        assert [c["seed"] for c in failed["candidates"]] == [Policy.seed(500, n) for n in range(6)]
        assert failed["characters"]["female_nervous_mother"] == {"score": 0.2, "reason":
                                                                 "female_nervous_mother does not match the sheet"}
        assert failed["characters"]["male_doctor_watson"]["score"] == 0.9 and failed["kept"] == 1
        assert (chosen["kept"], chosen["retakes"], chosen["flagged"], chosen["score"]) == (2, 0, False, 0.8)
        items = state(pipeline, "3.scene")
        assert items["scene_2.1"]["data"]["seed"] == Policy.seed(500, 1)  # the kept candidate's own seed
        assert leftovers(pipeline, "3.scene") == []
        page = (pipeline / "output" / "review.html").read_text(encoding="utf-8")
        scenes = page[page.index('id="scenes"'):]
        assert scenes.index('id="scene_1.2"') < scenes.index('id="scene_1.1"')  # the flagged one first
        assert "flagged · identity 0.20" in scenes and "identity 0.80" in scenes

        # Finished: a rerun asks nothing; retake.txt still overrides the judge's choice, and is judged again.
        run(pipeline, "3.scene.py", env)
        assert len(fake.prompts()) - before == 10 and llm.chat_count() == 10
        (pipeline / "retake.txt").write_text("scene_1.1\n", encoding="utf-8")
        run(pipeline, "3.scene.py", env, "--retake")
        retaken = _jobs_for(fake, "ECHO")[2:]
        assert [_seed(p) for p in retaken] == [Policy.seed(500 + 7919, n) for n in range(2)]
        assert llm.chat_count() == 12 and identity(pipeline)["scenes"]["scene_1.1"]["seed"] == 500 + 7919


def test_a_kill_during_retakes_loses_at_most_the_job_in_flight(tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    (pipeline / "input" / "3.scene.txt").write_text(
        (pipeline / "input" / "3.scene.txt").read_text(encoding="utf-8").splitlines()[1] + "\n", encoding="utf-8")
    with start_fake_comfyui(tmp_path, job_seconds=0.3) as fake, \
            start_fake_llm(tmp_path, model=["text-model", "vision-model"], answers=SCENE_ANSWERS) as llm:
        env = _comfy_env(fake, llm, KEYFRAME_CANDIDATES="1", IDENTITY_RETAKES="4")
        for script in ("2.character.py", "2.location.py"):
            run(pipeline, script, env)
        before = len(fake.prompts())
        proc = subprocess.Popen([sys.executable, "3.scene.py"], cwd=pipeline / "scripts", env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while llm.chat_count() < 2 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)  # during the second retake's job or its question
        finally:
            proc.wait(timeout=10)
        jobs_then, asked_then = len(fake.prompts()) - before, llm.chat_count()
        assert jobs_then >= 2 and asked_then >= 2
        run(pipeline, "3.scene.py", env)
        jobs, asked = len(fake.prompts()) - before, llm.chat_count()
    assert identity(pipeline)["scenes"]["scene_1.2"]["retakes"] == 4
    # Five candidates and five answers were needed; the kill cost at most the one job or question in flight.
    assert 5 <= jobs <= 6 and 5 <= asked <= 6 and (jobs - 5) + (asked - 5) <= 1
    seeds = [_seed(p) for p in _jobs_for(fake, "FOXTROT")]
    assert sorted(set(seeds)) == sorted(Policy.seed(500, n) for n in range(5))


def test_a_clip_that_drifted_is_made_again_with_new_seeds(tmp_path: Path) -> None:
    make_inputs(tmp_path)
    pipeline = copy_pipeline(tmp_path, "gen.video")
    assert run_script(pipeline, "1.story.py", env=env_for(PIPELINE_ENGINE="offline")).returncode == 0
    lines = [f"(motion_{scene_id(l)[6:]}) MOTION-{scene_id(l)} moves gently. The camera slowly pushes in."
             for _, l, _ in VIDEO_SCENES]
    (pipeline / "input" / "2.motion.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    answers = [  # scene_1.2 (12 s: two LTX segments) drifts every time; scene_1.3 drifts once, then holds
        {"contains": "Scene scene_1.2:", "answer": verdict(male_fisherman_bram=0.1)},
        {"contains": "Scene scene_1.3:", "answers": [verdict(female_keeper_niece_ada=0.4),
                                                     verdict(female_keeper_niece_ada=0.9)]},
        {"contains": "Scene scene_1.1:", "answer": verdict(female_keeper_niece_ada=0.9)},
        {"contains": "Scene scene_2.2:", "answer": verdict(male_keeper_silas=0.7)},
    ]
    with start_fake_comfyui(tmp_path, job_seconds=0.02) as fake, \
            start_fake_llm(tmp_path, model=["text-model", "vision-model"], answers=answers) as llm:
        env = env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=fake.url, COMFYUI_QUEUE_DEPTH="1",
                      LM_STUDIO_BASE_URL=llm.base_url, LM_STUDIO_MODEL="text-model",
                      IDENTITY_JUDGE_MODEL="vision-model", IDENTITY_RETAKES="1", VIDEO_WIDTH="160",
                      VIDEO_HEIGHT="96", FRAMES_PER_SECOND="24")
        result = run_script(pipeline, "3.animate.py", env=env, timeout=150)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "scene_1.3: identity 0.40 is under 0.6" in result.stdout
        per_scene = {s: len(_jobs_for(fake, f"MOTION-{s} ")) for s in ("scene_1.1", "scene_1.2", "scene_1.3", "scene_2.2")}
        assert per_scene == {"scene_1.1": 1, "scene_1.2": 4, "scene_1.3": 2, "scene_2.2": 1}  # 2.1 is held: no job
        chats = llm.chat_requests()
        assert len(chats) == 6 and all(c["images"] == 3 for c in chats)  # first, middle and last frames
        assert "first, middle and last frames of one animated clip" in chats[0]["last_user"]
        doc = json.loads((pipeline / "output" / "identity.json").read_text(encoding="utf-8"))
        clips = doc["clips"]
        assert set(clips) == {"scene_1.1", "scene_1.2", "scene_1.3", "scene_2.2"} and doc["flagged"] == ["scene_1.2"]
        assert (clips["scene_1.2"]["retakes"], clips["scene_1.2"]["flagged"], clips["scene_1.2"]["kept"]) == (1, True, 1)
        assert (clips["scene_1.3"]["retakes"], clips["scene_1.3"]["flagged"], clips["scene_1.3"]["kept"]) == (1, False, 2)
        assert clips["scene_1.3"]["seed"] == Policy.seed(0, 1)
        assert leftovers(pipeline, "3.animate") == []
        assert not (pipeline / "output" / "animation" / "candidates").exists()
        again = run_script(pipeline, "3.animate.py", env=env, timeout=120)
        assert again.returncode == 0 and llm.chat_count() == 6 and sum(
            len(_jobs_for(fake, f"MOTION-{s} ")) for s in per_scene) == 8  # nothing redone


def test_the_judges_schema_gives_every_character_exactly_one_score() -> None:
    schema = judge_schema(["male_a", "female_b"])
    assert schema["required"] == ["male_a", "female_b"] and schema["additionalProperties"] is False
    assert schema["properties"]["male_a"]["properties"]["score"] == {"type": "number", "minimum": 0, "maximum": 1}


def test_a_picture_made_before_the_judge_is_judged_as_it_is_not_made_again(tmp_path: Path) -> None:
    """A project that had pictures before candidates existed: its finished work is adopted as candidate 1."""
    from common.pictures.identity import made_before

    store = CheckpointStore(tmp_path / "state.json", base_dir=tmp_path)
    picture = tmp_path / "scene" / "scene_1.1.png"
    cards.scene_card("scene_1.1", "a mill", [("female_baker_mira", "opening the door")], picture, 320, 180)
    store.record("scene_1.1", "picture-fp", files=[picture], data={"seed": 5, "prompt": "the mill"})
    out = tmp_path / "candidates" / "scene_1.1.1.png"
    assert made_before(store, "scene_1.1", "another-fp", picture, out) is None and not out.exists()
    assert made_before(store, "scene_1.1", "picture-fp", picture, out) == {"seed": 5, "prompt": "the mill"}
    assert out.read_bytes() == picture.read_bytes()
    made: list[int] = []
    policy = Policy(candidates=1, threshold=0.6, retakes=2, mode="offline")
    subject = Subject("scene_1.1", "scene_1.1", "dawn", (CastMember("female_baker_mira", "Baker Mira"),))

    def make(seed: int, path: Path) -> dict[str, Any]:
        before = made_before(store, "scene_1.1", "picture-fp", picture, path)
        if before is None:
            made.append(seed)
            cards.scene_card("scene_1.1", "a mill", [], path, 320, 180)
        return before or {}

    kept = keep_best(subject, make, base_seed=5, item_fp="judged-fp", judge=CardJudge(), policy=policy, store=store,
                     folder=tmp_path / "candidates")
    assert made == [] and kept.made["prompt"] == "the mill" and kept.record["score"] == 1.0
