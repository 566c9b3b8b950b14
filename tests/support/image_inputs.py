"""Small gen.image inputs for the picture tests: two characters, two places, three scenes.

Each description carries a word no other one has (ALPHA, BRAVO, ...), so a test can tell from
a prompt the fake ComfyUI received which picture it was for.
"""
from __future__ import annotations

import contextlib
import io
import os
import runpy
import shutil
import signal
import sys
from pathlib import Path

from PIL import Image

from tests.support.project import copy_pipeline

CHARACTERS = {
    "male_doctor_watson": "ALPHA elderly man, white shirt, black trousers, brown loafers",
    "female_nervous_mother": "BRAVO pale woman, blue eyes, charcoal wool coat",
}
LOCATIONS = {
    "loc_1": "CHARLIE Victorian sitting room, orange brick fireplace #ff8c00, velvet sofa #e0b0ff",
    "loc_2": "DELTA foggy London street, gas lamps, wet cobbles",
}
SCENES = [
    "(scene_1.1) {{loc_1}}, {Weather/Season/Time: winter morning};((male_doctor_watson)){Facial Expression: calm}, "
    "{Body Posture: sitting},{Primary Action: reading ECHO};",
    "(scene_1.2) {{loc_2}}, {Weather/Season/Time: foggy dusk};((female_nervous_mother)){Facial Expression: worried}, "
    "{Primary Action: pleading FOXTROT};((male_doctor_watson)){Body Posture: standing},{Primary Action: listening};",
    "(scene_2.1) {{loc_1}}, {Weather/Season/Time: night};((female_nervous_mother)){Primary Action: waiting GOLF};",
]

# Small pictures keep the runs fast; sides are multiples of 16, as the models want.
SMALL = {"CHARACTER_WIDTH": "96", "CHARACTER_HEIGHT": "144", "IMAGE_WIDTH": "192", "IMAGE_HEIGHT": "112"}


def write_inputs(pipeline: Path) -> None:
    inputs = pipeline / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "2.character.txt").write_text("".join(f"(({k})): {v}\n\n" for k, v in CHARACTERS.items()), encoding="utf-8")
    (inputs / "2.location.txt").write_text("".join(f"{{{{{k}}}}} {v}\n" for k, v in LOCATIONS.items()), encoding="utf-8")
    (inputs / "3.scene.txt").write_text("\n".join(SCENES) + "\n", encoding="utf-8")


def image_pipeline(tmp_path: Path, *, fixtures: Path | None = None) -> Path:
    """A copy of gen.image with the small inputs, or with the seed system's own description files
    (`fixtures`: the seed-system fixture folder, from the `fixtures_dir` fixture)."""
    pipeline = copy_pipeline(tmp_path, "gen.image")
    if fixtures is not None:
        for name in ("1.story.txt", "2.character.txt", "3.character.txt", "2.location.txt", "3.location.txt", "3.scene.txt"):
            shutil.copy(fixtures / "gen.image" / "input" / name, pipeline / "input" / name)
    else:
        write_inputs(pipeline)
    return pipeline


def picture(path: Path, size: tuple[int, int], colour: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def run_inline(pipeline: Path, script: str, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run a numbered script in this process, as `python <script> <args>` in its folder would.

    The same code path as a subprocess (Script.run parses the flags and exits), without a new
    interpreter's start-up and imports for each of the many runs a resume test needs.
    Returns (exit code, stdout, stderr).
    """
    path = pipeline / "scripts" / script
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_term = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(path.parent)
        sys.argv = [str(path), *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(path), run_name="__main__")
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        signal.signal(signal.SIGTERM, saved_term)
    return code, out.getvalue(), err.getvalue()
