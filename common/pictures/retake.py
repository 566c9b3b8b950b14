"""gen.image/retake.txt: the pictures a person wants made again, after looking at them
(review.html, or the dailies page of `generate.py --serve`, which writes this same file).

One id a line (`male_doctor_watson`, `loc_3`, `scene_1.7`, or one variation:
`scene_1.7.v2`); `#` starts a comment. A line is a request made once: the next run of
2.character.py, 2.location.py or 3.scene.py (on its own or from generate.py) redoes the ids of
its own kind with a new seed (the next take), and what was made from them follows through its
fingerprints. Once an id's pictures are made again its line is commented out, saying which take
answered it, so the run after does not redo it again; remove the `#` to ask for another take.
With --retake a script makes only the listed pictures and nothing else.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from common.run.errors import InputError
from common.state.atomic import atomic_write_text
from common.state.checkpoints import now_text
from common.formats.story import LOCATION_ID_RE, SCENE_ID_RE

RETAKE_FILE = "retake.txt"
_VARIATION = re.compile(r"\.v\d+\Z")


def kind_of(identifier: str) -> str:
    """'scene', 'location' or 'character', from the id's shape (a variation suffix is ignored)."""
    base = _VARIATION.sub("", identifier)
    if SCENE_ID_RE.match(base):
        return "scene"
    if LOCATION_ID_RE.match(base):
        return "location"
    return "character"


def read_retake(pipeline_dir: Path) -> list[tuple[int, str]]:
    """(line number, id) of every id in retake.txt, in order."""
    path = pipeline_dir / RETAKE_FILE
    if not path.is_file():
        raise InputError(f"--retake reads {path}, which is missing; write the ids to redo there, one a line "
                         "(e.g. male_doctor_watson, loc_2, scene_1.4).")
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if len(text.split()) > 1:
            raise InputError(f"{path} line {number} has several words ({text!r}); write one id a line.")
        found.append((number, text))
    return found


def retake_ids(pipeline_dir: Path, kind: str) -> dict[str, int]:
    """The ids of one kind in retake.txt -> their line number."""
    return {ident: number for number, ident in read_retake(pipeline_dir) if kind_of(ident) == kind}



def pending_retakes(pipeline_dir: Path, kind: str) -> dict[str, int]:
    """The ids of one kind still asked for in retake.txt; {} when there is no such file."""
    if not (pipeline_dir / RETAKE_FILE).is_file():
        return {}
    return retake_ids(pipeline_dir, kind)


def request_retake(pipeline_dir: Path, identifier: str) -> bool:
    """Add `identifier` to retake.txt as a person would, one line at the end; False if it is asked already."""
    path = pipeline_dir / RETAKE_FILE
    if path.is_file() and any(ident == identifier for _n, ident in read_retake(pipeline_dir)):
        return False
    text = path.read_bytes().decode("utf-8") if path.is_file() else ""
    newline = "\r\n" if "\r\n" in text else "\n"
    if text and not text.endswith(("\n", "\r")):
        text += newline
    atomic_write_text(path, text + identifier + newline)
    return True


def mark_retaken(pipeline_dir: Path, answered: Mapping[str, int]) -> None:
    """Comment out the lines of the ids whose new take is made (id -> that take); every other line,
    comment and line ending is kept. The file is read again just before, so a line added meanwhile
    (by hand or by the dailies page) stays."""
    path = pipeline_dir / RETAKE_FILE
    if not answered or not path.is_file():
        return
    raw = path.read_bytes().decode("utf-8")
    bom = "\ufeff" if raw.startswith("\ufeff") else ""
    out = []
    for line in raw.removeprefix(bom).splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ident = body.split("#", 1)[0].strip()
        if ident in answered:
            line = f"# {body.strip()}  (retaken: take {answered[ident]}, {now_text()})" + line[len(body):]
        out.append(line)
    atomic_write_text(path, bom + "".join(out), encoding="utf-8")
