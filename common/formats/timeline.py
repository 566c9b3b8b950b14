"""`<seconds>: <text>` files: 2.timeline.txt, 3.timing.txt, 4.sfx.txt and 2.timeline.script.txt.

Each line is one segment's *duration* (not its start), in order, so the segments add up
to the audio's length. The seed spells numbers differently per file (`2.920000` in
2.timeline.txt, `2.92` in 3.timing.txt) and writes pause lines of 2.timeline.script.txt as
`1.600000 : ..`; a parsed line keeps its spelling, and an edited one keeps the look of the
line it replaces (separator, at least as many decimals). New values are written with
`format_seconds` (3 decimals, millisecond precision).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from common.formats._text import (
    TAG_PATTERN, Parsed, TextFile, check_one_line, check_tag, check_time, line_error, parse_lines, reader, render,
    reuse_raw, snippet, writer,
)
from common.formats.story import SCENE_ID_RE, Scene, parse_scene_line

_LINE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)(\s*:\s*)(.*?)\s*\Z")
_SCRIPT_BODY_RE = re.compile(rf"(scene_\d+\.\d+) = (.*?), ({TAG_PATTERN}) = (.*)\Z")
_PAUSE_RE = re.compile(r"\.*\Z")
DEFAULT_PLACES = 3


class _HasSeconds(Protocol):
    @property
    def seconds(self) -> float: ...


def format_seconds(seconds: float, places: int = DEFAULT_PLACES) -> str:
    """A duration spelled the same way every time (`2.920`), for files we write."""
    check_time(seconds, "a duration")
    return f"{abs(seconds):.{places}f}"


def timeline_total(entries: Iterable[_HasSeconds]) -> float:
    """The summed durations: the length of the audio the timeline describes."""
    return math.fsum(entry.seconds for entry in entries)


def written_seconds(entry: TimelineEntry) -> str | None:
    """The duration as the file spells it (`2.920000`), None for an entry made in code."""
    match = _LINE_RE.match(entry.raw) if entry.raw is not None else None
    return match.group(1) if match else None


def written_places(number: str | None) -> int:
    """Decimal places of a spelled duration: `2.920000` -> 6."""
    return len(number) - number.index(".") - 1 if number and "." in number else 0


@dataclass(frozen=True)
class _Spelling:
    places: int
    separator: str


def _spelling(raw: str | None, default_separator: str = ": ") -> _Spelling:
    match = _LINE_RE.match(raw) if raw is not None else None
    if match is None:
        return _Spelling(DEFAULT_PLACES, default_separator)
    return _Spelling(max(DEFAULT_PLACES, written_places(match.group(1))), match.group(2))


def _split(line: str, source: str, line_no: int, expected: str) -> tuple[float, str]:
    match = _LINE_RE.match(line)
    if not match:
        raise line_error(source, line_no, f"expected {expected} but found {snippet(line)}; fix the line or remove it.")
    return float(match.group(1)), match.group(3)


def _line_format(kind: type, parse_line: Callable[[str, str, int], Any], spell: Callable[[Any], str]):
    """parse(text, *, source) and format(timeline) of a one-entry-per-line file: an entry whose raw
    line still says the same is written back as read, any other is `spell`ed anew."""
    def parse(text: str, *, source: str) -> Any:
        entries, layout = parse_lines(text, source, parse_line)
        return kind(entries, source=source, layout=layout)

    def line(entry: Any) -> str:
        kept = reuse_raw(entry.raw, lambda raw: parse_line(raw, "line", 1), entry)
        return kept if kept is not None else spell(entry)

    def format_(timeline: Any) -> str:
        return render([line(e) for e in timeline.entries], timeline.layout)
    return parse, format_


# ---------------------------------------------------------------- plain timelines

@dataclass(frozen=True)
class TimelineEntry(Parsed):
    """One segment: how long it lasts and what it is (a transcript piece, an SFX, "Silence")."""

    seconds: float
    text: str

    def __post_init__(self) -> None:
        check_time(self.seconds, "a duration")
        check_one_line(self.text, "a timeline entry's text")


class _Durations:
    entries: tuple[_HasSeconds, ...]

    def total(self) -> float:
        return timeline_total(self.entries)

    def starts(self) -> tuple[float, ...]:
        """Each entry's start time: the durations summed before it."""
        out: list[float] = []
        done: list[float] = []
        for entry in self.entries:
            out.append(math.fsum(done))
            done.append(entry.seconds)
        return tuple(out)


@dataclass(frozen=True)
class Timeline(_Durations, TextFile):
    entries: tuple[TimelineEntry, ...]
    source: str = field(default="timeline", compare=False)


def _spell_entry(entry: TimelineEntry) -> str:
    spelling = _spelling(entry.raw)
    return f"{format_seconds(entry.seconds, spelling.places)}{spelling.separator}{entry.text}"


def _entry(line: str, source: str, line_no: int) -> TimelineEntry:
    seconds, body = _split(line, source, line_no, '"<seconds>: <text>" (e.g. "2.92: Silence")')
    return TimelineEntry(seconds, body, line_no=line_no, raw=line)


parse_timeline, format_timeline = _line_format(Timeline, _entry, _spell_entry)
read_timeline = reader(parse_timeline)
write_timeline = writer(format_timeline)


# ---------------------------------------------------------------- 2.timeline.script.txt

@dataclass(frozen=True)
class ScriptEntry(Parsed):
    """Which scene shows while whom speaks, for how long; a pause has no scene or speaker.

    `description` is the scene line after its id (`{{loc_1}}, {...}; ((tag)){...};`).
    """

    seconds: float
    scene_id: str | None
    description: str | None
    speaker: str | None
    text: str

    def __post_init__(self) -> None:
        check_time(self.seconds, "a duration")
        check_one_line(self.text, "a timeline entry's text")
        if self.scene_id is None:
            if self.description is not None or self.speaker is not None:
                raise ValueError("a pause entry has no description or speaker")
            if not _PAUSE_RE.match(self.text):
                raise ValueError(f"a pause entry's text is dots only, not {self.text!r}")
        else:
            if not SCENE_ID_RE.match(self.scene_id):
                raise ValueError(f"not a scene id (scene_<part>.<n>): {self.scene_id!r}")
            if self.speaker is None or self.description is None:
                raise ValueError("a scene entry needs a description and a speaker")
            check_tag(self.speaker)
            check_one_line(self.description, "a scene description")

    @property
    def is_pause(self) -> bool:
        return self.scene_id is None

    def scene(self, *, source: str = "2.timeline.script.txt") -> Scene | None:
        """The description parsed as a scene line (None for a pause)."""
        if self.scene_id is None:
            return None
        return parse_scene_line(f"({self.scene_id}) {self.description}", source=source, line_no=self.line_no or 1)


@dataclass(frozen=True)
class ScriptTimeline(_Durations, TextFile):
    entries: tuple[ScriptEntry, ...]
    source: str = field(default="timeline script", compare=False)


_SCRIPT_EXPECTED = (
    '"<seconds>: <scene_id> = <scene description>, <speaker_tag> = <text>" '
    'or a pause "<seconds> : .."'
)


def _script_entry(line: str, source: str, line_no: int) -> ScriptEntry:
    seconds, body = _split(line, source, line_no, _SCRIPT_EXPECTED)
    if _PAUSE_RE.match(body):
        return ScriptEntry(seconds, None, None, None, body, line_no=line_no, raw=line)
    match = _SCRIPT_BODY_RE.match(body)
    if not match:
        raise line_error(source, line_no, f"expected {_SCRIPT_EXPECTED} but found {snippet(line)}; fix the line or remove it.")
    scene_id, description, speaker, text = match.groups()
    return ScriptEntry(seconds, scene_id, description, speaker, text, line_no=line_no, raw=line)


def _spell_script_entry(entry: ScriptEntry) -> str:
    spelling = _spelling(entry.raw, " : " if entry.is_pause else ": ")
    head = f"{format_seconds(entry.seconds, spelling.places)}{spelling.separator}"
    if entry.is_pause:
        return head + entry.text
    return f"{head}{entry.scene_id} = {entry.description}, {entry.speaker} = {entry.text}"


parse_timeline_script, format_timeline_script = _line_format(ScriptTimeline, _script_entry, _spell_script_entry)
read_timeline_script = reader(parse_timeline_script)
write_timeline_script = writer(format_timeline_script)
