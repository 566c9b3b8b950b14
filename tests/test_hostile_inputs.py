"""Proof suite: hostile inputs, each given to the step that reads it, as a user would run it.

Every refusal must be one sentence on stderr (a single line starting with "error: ", naming
the file and line where there is one), a non-zero exit (3 for input errors), no traceback, and
nothing half-written: no temp files left in the output folder and earlier outputs untouched.
Inputs that are odd but valid (10,000 lines, a 20,000-character line, right-to-left text and
emoji, a speaker tag without a gender word, a location never described) must simply work.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.fakes import start_fake_comfyui
from tests.support.project import copy_pipeline, env_for, run_script

OFFLINE = env_for(PIPELINE_ENGINE="offline")
PREVIOUS = b"RIFF a finished output from an earlier run"


def refused(result: subprocess.CompletedProcess[str], code: int = 3, *needles: str) -> str:
    """Assert the run stopped with one `error: ` line and `code`; return that line."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def with_previous_output(pipeline: Path) -> Path:
    """A finished output of an earlier run, which a refused run must leave as it was."""
    out = pipeline / "output"
    out.mkdir(exist_ok=True)
    (out / "story.wav").write_bytes(PREVIOUS)
    return pipeline


def nothing_half_written(pipeline: Path) -> None:
    out = pipeline / "output"
    leftovers = [p for p in pipeline.rglob("*") if p.is_file() and re.search(r"\.tmp|\.part", p.name)]
    assert leftovers == []
    assert (out / "story.wav").read_bytes() == PREVIOUS


def story_pipeline(tmp_path: Path, text: str | bytes) -> Path:
    pipeline = copy_pipeline(tmp_path, story="")
    target = pipeline / "input" / "1.story.txt"
    target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return with_previous_output(pipeline)


# ---------------------------------------------------------------- the story file

BAD_STORIES = {
    "empty": ("", "the story is empty"),
    "blank lines only": ("\n   \n\t\n\n", "the story is empty"),
    "unknown markup": ("[narrator] Fine.\n<scene id=1>dark</scene>\n", "line 2: unknown markup"),
    "unbalanced scene brackets": ("[narrator] Fine.\n(scene_1.1) {{loc_1, a hut}, {Night};\n", "line 2: unbalanced"),
    "unbalanced speaker bracket": ("[narrator] Fine.\n[female_ada Where?\n", "line 2:"),
    "non-UTF-8 bytes": (b"[narrator] Fine.\n[narrator] Caf\xe9 au lait.\n", "line 2: byte 0xe9"),
}


@pytest.mark.parametrize("case", list(BAD_STORIES))
def test_a_bad_story_is_one_sentence_naming_file_and_line(tmp_path: Path, case: str) -> None:
    text, expected = BAD_STORIES[case]
    pipeline = story_pipeline(tmp_path, text)
    for script in ("1.character.py", "2.story.py"):
        args = ("--mode", "voices") if script == "1.character.py" else ()
        line = refused(run_script(pipeline, script, *args, env=OFFLINE, timeout=60), 3, "1.story.txt", expected)
        assert len(line) < 400
    assert not (pipeline / "input" / "1.story.speakers.txt").exists()
    nothing_half_written(pipeline)


def test_ten_thousand_lines_parse_and_get_voices(tmp_path: Path) -> None:
    speakers = ["narrator", "female_ada", "male_bram", "captain_flint"]
    text = "".join(f"[{speakers[i % 4]}] Line number {i} of a very long story.\n" for i in range(10_000))
    pipeline = story_pipeline(tmp_path, text)
    result = run_script(pipeline, "1.character.py", "--mode", "voices", "--auto-gender", "m", env=OFFLINE, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "10000 lines, 4 speakers" in result.stdout
    voice_map = (pipeline / "input" / "1.story.speakers.txt").read_text(encoding="utf-8")
    assert all(f"{tag}" in voice_map for tag in speakers)
    nothing_half_written(pipeline)


def test_a_twenty_thousand_character_line_is_spoken(tmp_path: Path) -> None:
    long_line = " ".join(f"word{i % 97}" for i in range(3000))[:20_000].rstrip() + "."
    assert len(long_line) > 15_000
    pipeline = copy_pipeline(tmp_path, story=f"[narrator] {long_line}\n[female_ada] Short.\n")
    assert run_script(pipeline, "1.character.py", "--mode", "voices", env=OFFLINE, timeout=60).returncode == 0
    result = run_script(pipeline, "2.story.py", env=OFFLINE, timeout=120)
    assert result.returncode == 0, result.stderr
    timings = json.loads((pipeline / "output" / "story.timings.json").read_text(encoding="utf-8"))
    assert [line["text"] for line in timings["lines"]] == [long_line, "Short."]
    assert timings["lines"][0]["end"] > timings["lines"][0]["start"]


def test_right_to_left_and_emoji_text_is_spoken(tmp_path: Path) -> None:
    lines = ["مرحبا بكم في المنارة 🌊", "שלום! ‏מה שלומך? 🕯️", "Mixed العربية and English 👩‍👧 done."]
    story = "".join(f"[{tag}] {text}\n" for tag, text in zip(("narrator", "female_ada", "male_bram"), lines))
    pipeline = copy_pipeline(tmp_path, story=story)
    assert run_script(pipeline, "1.character.py", "--mode", "voices", env=OFFLINE, timeout=60).returncode == 0
    result = run_script(pipeline, "2.story.py", env=OFFLINE, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    timings = json.loads((pipeline / "output" / "story.timings.json").read_text(encoding="utf-8"))
    assert [line["text"] for line in timings["lines"]] == lines
    assert (pipeline / "output" / "story.wav").stat().st_size > 44


def test_a_tag_without_gender_word_is_named_and_auto_gender_settles_it(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path, story="[narrator] Dawn.\n[captain_flint] Hoist the sails.\n")
    pipeline = with_previous_output(pipeline)
    line = refused(run_script(pipeline, "1.character.py", "--mode", "voices", env=OFFLINE, timeout=60), 3,
                   "[captain_flint]", "--auto-gender")
    assert len(line) < 300
    assert not (pipeline / "input" / "1.story.speakers.txt").exists()
    nothing_half_written(pipeline)
    done = run_script(pipeline, "1.character.py", "--mode", "voices", "--auto-gender", "f", env=OFFLINE, timeout=60)
    assert done.returncode == 0, done.stderr
    voice_map = (pipeline / "input" / "1.story.speakers.txt").read_text(encoding="utf-8")
    assert re.search(r"^captain_flint\s*[:=]?\s*\S+", voice_map, re.M), voice_map


def test_a_location_never_described_gets_a_described_fallback(tmp_path: Path) -> None:
    """A bare `{{loc_9}}` is how the seed's stories mention a place after its first description;
    with no first description the text engine describes it from what the scenes show there."""
    story = ("[narrator] It was night.\n(scene_1.1) {{loc_9}}, {Night, heavy rain}; ((narrator)){Calm};\n"
             "[female_ada] Where are we?\n(scene_1.2) {{loc_9}}, {Night, heavy rain}; ((female_ada)){Lost};\n")
    pipeline = copy_pipeline(tmp_path, "gen.image", story=story)
    result = run_script(pipeline, "1.story.py", env=OFFLINE, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("2.location.txt", "3.location.txt"):
        text = (pipeline / "input" / name).read_text(encoding="utf-8")
        entry = next(line for line in text.splitlines() if line.startswith("{{loc_9}}"))
        assert "rain" in entry.lower() and len(entry) > len("{{loc_9}}") + 10
    assert "{{loc_9}}" in (pipeline / "input" / "3.scene.txt").read_text(encoding="utf-8")


def test_a_bad_scene_line_in_gen_image_names_file_and_line(tmp_path: Path) -> None:
    story = "[narrator] It was night.\n(scene_1.1) {{loc_1, a hut}}, {Night}; ((narrator){Calm};\n"
    pipeline = copy_pipeline(tmp_path, "gen.image", story=story)
    refused(run_script(pipeline, "1.story.py", env=OFFLINE, timeout=60), 3, "1.story.txt line 2", "unbalanced")
    assert not (pipeline / "input" / "3.scene.txt").exists()


# ---------------------------------------------------------------- workflows

@pytest.fixture
def comfy(tmp_path: Path):
    with start_fake_comfyui(tmp_path / "server", job_seconds=0.02) as fake:
        yield fake


def comfy_env(url: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=url, LM_STUDIO_CMD="no-such-lms-command")


def voiced_pipeline(tmp_path: Path) -> Path:
    pipeline = copy_pipeline(tmp_path, story="[narrator] One.\n[female_ada] Two.\n")
    assert run_script(pipeline, "1.character.py", "--mode", "voices", env=OFFLINE, timeout=60).returncode == 0
    return with_previous_output(pipeline)


def ui_format(api: dict) -> dict:
    """What ComfyUI's plain "Save"/"Export" writes: the editor's graph, not the API prompt."""
    nodes = [{"id": int(k) if k.isdigit() else i, "type": n["class_type"], "inputs": [], "outputs": [],
              "widgets_values": []} for i, (k, n) in enumerate(api.items())]
    return {"last_node_id": len(nodes), "last_link_id": 0, "nodes": nodes, "links": [], "version": 0.4}


def test_a_ui_format_workflow_says_how_to_export_the_api_format(tmp_path: Path, comfy) -> None:
    pipeline = voiced_pipeline(tmp_path)
    workflow = pipeline / "workflow" / "story.json"
    workflow.write_text(json.dumps(ui_format(json.loads(workflow.read_text(encoding="utf-8")))), encoding="utf-8")
    line = refused(run_script(pipeline, "2.story.py", env=comfy_env(comfy.url), timeout=60), 3, "story.json")
    assert "UI-format" in line and "Export (API)" in line
    assert comfy.prompts() == []
    nothing_half_written(pipeline)


def test_a_story_workflow_without_the_tts_node_is_named(tmp_path: Path, comfy) -> None:
    pipeline = voiced_pipeline(tmp_path)
    workflow = pipeline / "workflow" / "story.json"
    nodes = json.loads(workflow.read_text(encoding="utf-8"))
    kept = {k: n for k, n in nodes.items() if "TTS" not in n["class_type"]}
    assert len(kept) < len(nodes)
    workflow.write_text(json.dumps(kept), encoding="utf-8")
    line = refused(run_script(pipeline, "2.story.py", env=comfy_env(comfy.url), timeout=60), 3, "story.json")
    assert "TTS" in line or "speech" in line.lower()
    assert comfy.prompts() == []
    nothing_half_written(pipeline)


def test_an_sfx_workflow_without_empty_latent_audio_is_named(tmp_path: Path, comfy) -> None:
    import numpy as np

    from common.media.ffmpeg import write_wav

    pipeline = copy_pipeline(tmp_path, story="[narrator] One.\n")
    out = pipeline / "output"
    out.mkdir()
    write_wav(out / "story.wav", np.zeros(44100 * 6, dtype=np.int16), 44100)
    story_before = (out / "story.wav").read_bytes()
    (pipeline / "input" / "4.sfx.txt").write_text("3.000: Waves breaking on the shore\n3.000: Silence\n", encoding="utf-8")
    workflow = pipeline / "workflow" / "sfx.json"
    nodes = json.loads(workflow.read_text(encoding="utf-8"))
    kept = {k: n for k, n in nodes.items() if n["class_type"] != "EmptyLatentAudio"}
    assert len(kept) < len(nodes)
    workflow.write_text(json.dumps(kept), encoding="utf-8")
    line = refused(run_script(pipeline, "7.sfx.py", "--auto-confirm", "y", env=comfy_env(comfy.url), timeout=60),
                   3, "sfx.json")
    assert "EmptyLatentAudio" in line
    assert comfy.prompts() == []
    assert (out / "story.wav").read_bytes() == story_before
    assert not (out / "sfx.wav").exists()
    assert [p for p in pipeline.rglob("*") if ".tmp" in p.name] == []
