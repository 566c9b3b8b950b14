"""Per-key prose files: characters, locations and motion prompts.

- `2.character.txt` / `3.character.txt`: `((tag)): attributes` / `((tag)): prose`
- `2.location.txt` / `3.location.txt`:   `{{loc_N}} attributes` / `{{loc_N}} prose`
- `2.motion.txt`:                        `(motion_X.Y) prompt` (one per scene_X.Y)

Only the key's brackets are markup: the text after them is free prose written by an LLM
and is taken as it is (the seed's own 2.motion.txt opens a prompt with an unclosed `{`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from common.formats._text import (
    Parsed, TextFile, check_one_line, line_error, parse_lines, read_text, render, reuse_raw, snippet, tag_problem,
    writer,
)
from common.formats.story import LOCATION_ID_RE, SCENE_ID_RE

MOTION_ID_RE = re.compile(r"motion_(\d+)\.(\d+)\Z")


@dataclass(frozen=True)
class _Kind:
    name: str
    line_re: re.Pattern[str]
    open: str
    close: str
    separator: str  # canonical text between the key and the prose
    expected: str
    key_problem: Callable[[str], str | None]


def _location_problem(key: str) -> str | None:
    if LOCATION_ID_RE.match(key):
        return None
    return f'"{key}" is not a location id; write "{{{{loc_<n>}}}}", e.g. "{{{{loc_1}}}}"'


def _motion_problem(key: str) -> str | None:
    if MOTION_ID_RE.match(key):
        return None
    return f'"{key}" is not a motion id; write "(motion_<part>.<n>)" to match scene_<part>.<n>'


KINDS = {
    "character": _Kind(
        "character", re.compile(r"\s*\(\(([^()]*)\)\)(\s*:?\s*)(.*?)\s*\Z"), "((", "))", ": ",
        '"((speaker_tag)): description"', tag_problem,
    ),
    "location": _Kind(
        "location", re.compile(r"\s*\{\{([^{}]*)\}\}(\s*:?\s*)(.*?)\s*\Z"), "{{", "}}", " ",
        '"{{loc_<n>}} description"', _location_problem,
    ),
    "motion": _Kind(
        "motion", re.compile(r"\s*\(([^()]*)\)(\s*:?\s*)(.*?)\s*\Z"), "(", ")", " ",
        '"(motion_<part>.<n>) prompt"', _motion_problem,
    ),
}


@dataclass(frozen=True)
class Description(Parsed):
    """One key (a speaker tag, `loc_3`, `motion_1.2`) and its text."""

    key: str
    text: str

    def __post_init__(self) -> None:
        check_one_line(self.key, "a description key")
        check_one_line(self.text, "a description")
        if not self.text.strip():
            raise ValueError(f"{self.key} has an empty description")


@dataclass(frozen=True)
class Descriptions(TextFile):
    """The entries of one description file; `kind` is 'character', 'location' or 'motion'."""

    kind: str
    entries: tuple[Description, ...]
    source: str = field(default="descriptions", compare=False)

    def __post_init__(self) -> None:
        spec = _kind(self.kind)
        for entry in self.entries:
            problem = spec.key_problem(entry.key)
            if problem:
                raise ValueError(problem)

    def get(self, key: str) -> str | None:
        return next((e.text for e in self.entries if e.key == key), None)

    def keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.entries)

    def as_dict(self) -> dict[str, str]:
        return {e.key: e.text for e in self.entries}


def motion_id_for(scene_id: str) -> str:
    """`scene_1.2` -> `motion_1.2`: 2.motion.txt holds one prompt per scene image."""
    match = SCENE_ID_RE.match(scene_id)
    if not match:
        raise ValueError(f"not a scene id: {scene_id!r}")
    return f"motion_{match.group(1)}.{match.group(2)}"


def scene_id_for(motion_id: str) -> str:
    match = MOTION_ID_RE.match(motion_id)
    if not match:
        raise ValueError(f"not a motion id: {motion_id!r}")
    return f"scene_{match.group(1)}.{match.group(2)}"


def _kind(name: str) -> _Kind:
    if name not in KINDS:
        raise ValueError(f"unknown description kind {name!r}; one of {sorted(KINDS)}")
    return KINDS[name]


def _entry(kind: _Kind, line: str, source: str, line_no: int) -> Description:
    match = kind.line_re.match(line)
    if not match:
        raise line_error(source, line_no, f"expected {kind.expected} but found {snippet(line)}; fix the line or remove it.")
    key, text = match.group(1).strip(), match.group(3)
    problem = kind.key_problem(key)
    if problem:
        raise line_error(source, line_no, f"{problem}.")
    if not text:
        raise line_error(source, line_no, f"{kind.open}{key}{kind.close} has no description; write it after the key or remove the line.")
    return Description(key, text, line_no=line_no, raw=line)


def _format_entry(kind: _Kind, entry: Description) -> str:
    kept = reuse_raw(entry.raw, lambda raw: _entry(kind, raw, "line", 1), entry)
    if kept is not None:
        return kept
    separator = kind.separator
    if entry.raw is not None and (match := kind.line_re.match(entry.raw)) and match.group(2):
        separator = match.group(2)  # an edited line keeps the file's `((tag)): ` / `{{loc}} ` look
    return f"{kind.open}{entry.key}{kind.close}{separator}{entry.text}"


def parse_descriptions(text: str, *, source: str, kind: str) -> Descriptions:
    spec = _kind(kind)
    entries, layout = parse_lines(
        text, source, partial(_entry, spec), key=lambda e: e.key,
        clash="{key} is already described on line {line}; keep one of the two lines.",
    )
    return Descriptions(kind, entries, source=source, layout=layout)


def read_descriptions(path: str | os.PathLike[str], kind: str) -> Descriptions:
    return parse_descriptions(read_text(path), source=str(path), kind=kind)


parse_characters = partial(parse_descriptions, kind="character")
parse_locations = partial(parse_descriptions, kind="location")
parse_motions = partial(parse_descriptions, kind="motion")
read_characters = partial(read_descriptions, kind="character")
read_locations = partial(read_descriptions, kind="location")
read_motions = partial(read_descriptions, kind="motion")


def format_descriptions(descriptions: Descriptions) -> str:
    spec = KINDS[descriptions.kind]
    return render([_format_entry(spec, e) for e in descriptions.entries], descriptions.layout)


write_descriptions = writer(format_descriptions)
