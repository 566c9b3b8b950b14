"""Issue 13, "never throw away or degrade finished GPU work": points 1, 5 and 6.

1. A preview never replaces a real output, and `auto` does not fall back to previews when a
   ComfyUI (or LLM server) is expected: installed, named, or already used by the checkpoints.
5. A scene line that does not parse is asked again and never checkpointed, even with
   --bypass-validation.
6. A picture made at reduced size after running out of memory is marked, listed and redoable.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from common.config.settings import load_settings
from common.engines.choice import choose_engines, engines_from_env
from common.engines.registry import get_engine
from common.run.errors import JobError, ServiceError
from common.run.runner import ScriptContext
from common.state.checkpoints import CheckpointStore, state_file
from tests.fakes import start_fake_comfyui
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.image_inputs import SMALL, image_pipeline
from tests.support.project import REPO, env_for, run_generate, run_script, spoken_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def _ctx(tmp_path: Path, *, force_start: bool = False, messages: list[str] | None = None, **settings: str) -> ScriptContext:
    args = argparse.Namespace(force_start=force_start, disable_resumable=False, auto_confirm=None)
    out = messages.append if messages is not None else (lambda m: None)
    return ScriptContext("t", tmp_path, args, load_settings(None, environ=settings), out=out)


def _items(pipeline: Path, script: str) -> dict[str, Any]:
    return json.loads(state_file(pipeline, script).read_text(encoding="utf-8"))["items"]


# ------------------------------------------------------------------ 1. previews never replace real work

def test_a_preview_never_replaces_a_real_output_unless_force_start(tmp_path: Path) -> None:
    out = tmp_path / "output" / "a.png"
    out.parent.mkdir(parents=True)

    def make(text: str):
        def work(item: str):
            out.write_text(text)
            return [out], {"made_by": text}
        return work

    _ctx(tmp_path).each(["a"], label="pictures", key=str, fingerprint=lambda i: "gpu", work=make("GPU"))
    said: list[str] = []
    entries = _ctx(tmp_path, messages=said).each(["a"], label="pictures", key=str, fingerprint=lambda i: "offline",
                                                 work=make("PREVIEW"), preview=True)
    assert out.read_text() == "GPU" and entries["a"].data == {"made_by": "GPU"} and not entries["a"].preview
    assert not _items(tmp_path, "t")["a"].get("preview")
    assert any("kept 1 real output(s) (a)" in m and "--force-start" in m for m in said)
    # A new item has nothing real to lose: the preview engine makes it.
    entries = _ctx(tmp_path).each(["a", "b"], label="pictures", key=str, fingerprint=lambda i: "offline",
                                  work=make("PREVIEW"), preview=True)
    assert entries["b"].preview and entries["a"].data == {"made_by": "GPU"}
    # --force-start says so: the preview replaces it.
    _ctx(tmp_path, force_start=True).each(["a"], label="pictures", key=str, fingerprint=lambda i: "offline",
                                          work=make("PREVIEW"), preview=True)
    assert out.read_text() == "PREVIEW" and _items(tmp_path, "t")["a"]["preview"] is True


def _settings(tmp_path: Path, **env: str):
    base = {"COMFYUI_DIR": str(tmp_path / "none"), "LM_STUDIO_CMD": "no-such-lms-command-xyz",
            "LM_STUDIO_BASE_URL": f"http://127.0.0.1:{S.free_port()}/v1"}
    base.update(env)
    settings = load_settings(tmp_path, environ=base)
    # The LLM URL above is only to keep the test off a real server on 1234: count it as the default.
    return settings if "LM_STUDIO_BASE_URL" in env else SimpleNamespace(
        **dict(settings.values), pipeline_dir=tmp_path,
        source_of=lambda name: "default" if name == "LM_STUDIO_BASE_URL" else settings.source_of(name))


def test_auto_stops_when_a_named_comfyui_is_down_instead_of_making_previews(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{S.free_port()}"
    settings = _settings(tmp_path, COMFYUI_BASE_URL=url)
    with pytest.raises(ServiceError) as caught:
        choose_engines(settings)
    sentence = str(caught.value)
    assert url in sentence and "PIPELINE_ENGINE=offline" in sentence and "start the ComfyUI server" in sentence
    assert sentence.endswith(".") and "\n" not in sentence
    # A script run alone: the media engine stops it, the (offline) text engine does not.
    alone = engines_from_env(settings, environ={})
    with pytest.raises(ServiceError, match="PIPELINE_ENGINE=offline"):
        get_engine("image", settings, REPO / "gen.image", alone)
    assert get_engine("text", settings, REPO / "gen.image", alone).preview
    # Previews asked for on purpose are made.
    assert choose_engines(_settings(tmp_path, COMFYUI_BASE_URL=url, PIPELINE_ENGINE="offline")).media == "offline"


def test_text_asked_offline_by_name_is_offline_text_not_a_stop(tmp_path: Path) -> None:
    """The stop's own advice (PIPELINE_TEXT_ENGINE=offline) must work for the orchestrator too."""
    url = f"http://127.0.0.1:{S.free_port()}/v1"
    with pytest.raises(ServiceError, match="PIPELINE_TEXT_ENGINE=offline"):
        choose_engines(_settings(tmp_path, LM_STUDIO_BASE_URL=url))
    choice = choose_engines(_settings(tmp_path, LM_STUDIO_BASE_URL=url, PIPELINE_TEXT_ENGINE="offline"))
    assert choice.text == "offline" and "PIPELINE_TEXT_ENGINE=offline" in choice.reason
    comfy = choose_engines(_settings(tmp_path, PIPELINE_ENGINE="comfyui", PIPELINE_TEXT_ENGINE="offline"))
    assert (comfy.media, comfy.text) == ("comfyui", "offline")


def test_auto_stops_when_comfyui_is_installed_but_remote_or_not_started(tmp_path: Path) -> None:
    comfy = S.make_comfyui_dir(tmp_path, crash="x")
    # Installed here, but the user points at another machine that is down: not ours to start.
    settings = _settings(tmp_path, COMFYUI_DIR=str(comfy), COMFYUI_BASE_URL="http://192.0.2.1:8188")
    with pytest.raises(ServiceError, match=r"ComfyUI is installed in .*PIPELINE_ENGINE=offline"):
        choose_engines(settings)
    # Installed and local, a script run alone: it says to run generate.py, which starts it.
    local = _settings(tmp_path, COMFYUI_DIR=str(comfy))
    alone = engines_from_env(local, environ={})
    with pytest.raises(ServiceError, match="run generate.py, which starts it"):
        get_engine("image", local, REPO / "gen.image", alone)


def test_auto_stops_when_the_checkpoints_hold_comfyui_work(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert choose_engines(settings).media == "offline"  # nothing configured, nothing made: previews
    wav = tmp_path / "output" / "story" / "1_5.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF")
    store = CheckpointStore(state_file(tmp_path, "2.story"), base_dir=tmp_path)
    store.record("1_5", "fp", files=[wav], preview=True)
    assert choose_engines(settings).media == "offline"  # previews only: still nothing real to protect
    store.record("1_5", "fp", files=[wav])
    with pytest.raises(ServiceError, match=r"checkpoints hold ComfyUI work \(.*2\.story\.state\.json 1_5\)"):
        choose_engines(settings)
    # Only when the run needs ComfyUI: an upload-only run goes on.
    steps = [SimpleNamespace(needs_comfyui=False, needs_llm=False, pipeline_dir=tmp_path)]
    assert choose_engines(settings, steps=steps).media == "offline"


def _flip_to_real(pipeline: Path, script: str) -> dict[str, Any]:
    """Make a script's checkpoints look as if ComfyUI had made them (another engine, not previews)."""
    path = state_file(pipeline, script)
    state = json.loads(path.read_text(encoding="utf-8"))
    for entry in state["items"].values():
        entry["fingerprint"] = "made-by-comfyui-" + entry["fingerprint"]
        entry.pop("preview", None)
    path.write_text(json.dumps(state), encoding="utf-8")
    return state["items"]


def test_real_speech_survives_an_offline_run_and_auto_with_comfyui_down(tmp_path: Path) -> None:
    pipeline = spoken_pipeline(tmp_path)
    _flip_to_real(pipeline, "2.story")
    chunks = sorted((pipeline / "output" / "story").glob("*.wav"))
    before = {p.name: p.read_bytes() for p in chunks}
    before_state = _items(pipeline, "2.story")
    # auto, ComfyUI named but down, through the orchestrator: exit 5, one sentence, nothing touched.
    url = f"http://127.0.0.1:{S.free_port()}"
    env = env_for(COMFYUI_BASE_URL=url, COMFYUI_DIR=str(tmp_path / "none"), LM_STUDIO_CMD="no-such-lms-command-xyz",
                  LM_STUDIO_BASE_URL=f"http://127.0.0.1:{S.free_port()}/v1", PIPELINE_TEXT_ENGINE="offline")
    result = run_generate(pipeline, "--only", "2", env=env, timeout=120)
    assert result.returncode == 5, result.stdout[-2000:] + result.stderr[-2000:]
    assert url in result.stderr and "PIPELINE_ENGINE=offline" in result.stderr and "Traceback" not in result.stderr
    assert _items(pipeline, "2.story") == before_state
    # Previews on purpose: the real chunks are kept, not remade.
    result = run_script(pipeline, "2.story.py", env=env_for(PIPELINE_ENGINE="offline"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in chunks} == before
    assert not any(e.get("preview") for k, e in _items(pipeline, "2.story").items() if k != "story.wav")
    assert "instead of replacing them with previews" in result.stdout


# ------------------------------------------------------------------ 5. a scene line that does not parse

CHATTY = "Sure! Here is the scene line for this utterance:"
GOOD = "{{loc_1}}, {Night}; ((female_keeper_niece_ada)){Worried}, {Standing};"


def _request():
    from common.pictures.story_visuals import SceneRequest

    return SceneRequest("scene_2.1", "female_keeper_niece_ada", "Uncle Silas never misses a night.", None, None,
                        ("female_keeper_niece_ada", "male_keeper_silas"), (("loc_1", "a lighthouse"),), "loc_1")


def test_bypassed_scene_line_that_does_not_parse_is_asked_again(tmp_path: Path) -> None:
    from common.pictures.looks_text import LLMLooksText
    from common.services.llm import LLMClient

    with start_fake_llm(tmp_path, answers=[{"contains": "THIS LINE", "answers": [CHATTY, GOOD]}]) as llm:
        engine = LLMLooksText(LLMClient(llm.base_url, "fake-model", timeout=10, max_retries=2), "fake-model")
        assert engine.scene_line(_request(), check=False) == "(scene_2.1) " + GOOD
        assert llm.chat_count() == 2


STORY = ("[narrator] The lighthouse on Gull Point had been dark for three nights.\n"
         "[female_keeper_niece_ada] Uncle Silas never misses a night.\n")


def test_a_scene_line_that_never_parses_is_never_checkpointed(tmp_path: Path) -> None:
    from common.formats.story import parse_story
    from common.pictures.descriptions import write_scene_lines
    from common.engines.text import LLMText
    from common.services.llm import LLMClient

    story = parse_story(STORY, source="story")
    store = CheckpointStore(tmp_path / "1.story.state.json", base_dir=tmp_path)
    good = "{{loc_1, a lighthouse}}, {Night}; "
    with start_fake_llm(tmp_path, answers=[{"contains": "said by [narrator]", "answer": good},
                                           {"contains": "THIS LINE", "answer": CHATTY}]) as llm:
        engine = LLMText(LLMClient(llm.base_url, "fake-model", timeout=10, max_retries=2), "fake-model")
        with pytest.raises(JobError):
            write_scene_lines(story, engine, store, check=False, say=lambda m: None)
        assert llm.chat_count() == 1 + 3  # the narrator's line, then the bad one asked three times
    assert [k for k, e in store.entries().items() if e.status == "done"] == ["scene_1.1"]


def test_an_unparsable_line_checkpointed_by_an_old_run_is_asked_again(tmp_path: Path) -> None:
    """An old run with --bypass-validation checkpointed "Sure! ..." lines: they are redone, not rewritten."""
    from common.formats.story import parse_story
    from common.pictures.descriptions import write_scene_lines
    from common.engines.text import LLMText
    from common.services.llm import LLMClient

    story = parse_story(STORY, source="story")
    store = CheckpointStore(tmp_path / "1.story.state.json", base_dir=tmp_path)
    answers = [{"contains": "said by [narrator]", "answer": "{{loc_1, a lighthouse}}, {Night}; "},
               {"contains": "THIS LINE", "answers": [CHATTY, GOOD]}]
    with start_fake_llm(tmp_path, answers=answers) as llm:
        engine = LLMText(LLMClient(llm.base_url, "fake-model", timeout=10, max_retries=2), "fake-model")
        # What the old code recorded: the chatty answer, as done.
        lines = write_scene_lines(story, engine, store, check=False, say=lambda m: None)
        assert all(line.scene is not None for line in lines)
        bad = store.entries()["scene_2.1"]
        store.record("scene_2.1", bad.fingerprint, data={"line": "(scene_2.1) " + CHATTY})
        count = llm.chat_count()
        lines = write_scene_lines(story, engine, store, check=False, say=lambda m: None)
        assert llm.chat_count() > count and all(line.scene is not None for line in lines)
        assert store.entries()["scene_2.1"].data["line"] == "(scene_2.1) " + GOOD


# ------------------------------------------------------------------ 6. pictures made at reduced size

def test_a_picture_made_smaller_after_out_of_memory_is_marked_listed_and_redone(tmp_path: Path) -> None:
    pipeline = image_pipeline(tmp_path)
    with start_fake_comfyui(tmp_path, job_seconds=0.02, fail_mode="oom", fail_jobs=1) as fake:
        env = env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=fake.url, LM_STUDIO_CMD="no-such-lms-command",
                      COMFYUI_QUEUE_DEPTH="1", **SMALL)
        result = run_script(pipeline, "2.character.py", env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        entries = _items(pipeline, "2.character")
        reduced = sorted(k for k, e in entries.items() if e.get("data", {}).get("reduced"))
        assert len(reduced) == 1 and len(entries) == 2
        status = run_generate(pipeline, "--status", env=env, timeout=60)
        assert status.returncode == 0, status.stderr
        assert "reduced: 2.character.py: 1 item(s) made at reduced size" in status.stdout
        assert reduced[0] in status.stdout and "REDO_REDUCED=1 python generate.py --from" in status.stdout
        # A plain rerun keeps it; REDO_REDUCED redoes exactly that one, at full size.
        prompts = len(fake.prompts())
        assert run_script(pipeline, "2.character.py", env=env).returncode == 0
        assert len(fake.prompts()) == prompts
        result = run_script(pipeline, "2.character.py", env={**env, "REDO_REDUCED": "1"})
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        redone = fake.prompts()[prompts:]
        word = next(w for tag, w in {"male_doctor_watson": "ALPHA", "female_nervous_mother": "BRAVO"}.items()
                    if tag in reduced[0])
        assert len(redone) == 1 and word in json.dumps(redone[0])  # that picture, and only that one
        (latent,) = [n for n in redone[0].values() if n["class_type"] == "EmptySD3LatentImage"]
        assert (latent["inputs"]["width"], latent["inputs"]["height"]) == (96, 144)
        assert not any(e.get("data", {}).get("reduced") for e in _items(pipeline, "2.character").values())


REDUCED_STEP = r'''
import json, sys
from pathlib import Path
tracking = Path(__file__).resolve().parent.parent / "output" / "tracking"
tracking.mkdir(parents=True, exist_ok=True)
items = {
    "scene_1.1": {"fingerprint": "a", "files": [], "status": "done", "finished_at": "2000-01-01 00:00:00",
                  "data": {"reduced": True}},
    "scene_1.2": {"fingerprint": "b", "files": [], "status": "done", "finished_at": "2000-01-01 00:00:00"},
}
(tracking / (Path(__file__).stem + ".state.json")).write_text(json.dumps({"version": 1, "items": items}))
'''


def test_the_morning_report_lists_reduced_items_and_how_to_redo_them(tmp_path: Path) -> None:
    pipe = S.make_pipeline(tmp_path, ["1.ok.py", "2.scenes.py"])
    (pipe / "scripts" / "2.scenes.py").write_text(REDUCED_STEP, encoding="utf-8")
    env = dict(S.service_env(tmp_path, engine="offline"), TEST_EVENTS=str(tmp_path / "events.jsonl"))
    result = subprocess.run([sys.executable, str(pipe / "generate.py")], env=env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    report = (pipe / "output" / "report.md").read_text(encoding="utf-8")
    assert "## Made at reduced size" in report
    assert "- reduced: 2.scenes.py: 1 item(s) made at reduced size after running out of GPU memory: scene_1.1" in report
    assert f"- redo them at full size: cd {pipe} && REDO_REDUCED=1 python generate.py --from 2" in report
