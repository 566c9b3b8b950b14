"""gen.image/retake.txt: the pictures a person wants made again, after looking at review.html.

One id a line (`male_doctor_watson`, `loc_3`, `scene_1.7`, or one variation:
`scene_1.7.v2`); `#` starts a comment. Each of 2.character.py, 2.location.py and 3.scene.py,
run with --retake, redoes the ids of its own kind (a new seed each take) and nothing else; the
file is left as it is, so the same list can be retaken again or edited.
"""
from __future__ import annotations

import re
from pathlib import Path

from common.run.errors import InputError
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

