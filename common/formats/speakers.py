"""The voice map `1.story.speakers.txt`: `speaker_tag  voice_stem` per line, `#` comments.

The stem names `voices/**/<stem>.wav`; resolving it is common.audio.voices' job. Here the stem is
only checked to be a plain file-name stem (no folders, no leading dot), since it is joined
into a path. Columns are aligned with spaces for the reader; any run of whitespace
separates them, and a `#` after whitespace starts a comment.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from common.formats._text import (
    Layout, Parsed, TextFile, check_tag, line_error, parse_lines, reader, render, reuse_raw, snippet, tag_problem,
    writer,
)

_STEM_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_EXPECTED = '"<speaker_tag>  <voice_stem>" (e.g. "male_doctor_watson  alok_en") or a "#" comment'


def _stem_problem(stem: str) -> str | None:
    if _STEM_RE.match(stem) and ".." not in stem:
        return None
    return f'"{stem}" is not a voice file stem; write the .wav file name without folder or extension, e.g. alok_en'


@dataclass(frozen=True)
class VoiceEntry(Parsed):
    speaker: str
    voice: str

    def __post_init__(self) -> None:
        check_tag(self.speaker)
        problem = _stem_problem(self.voice)
        if problem:
            raise ValueError(problem)


@dataclass(frozen=True)
class VoiceMap(TextFile):
    entries: tuple[VoiceEntry, ...]
    source: str = field(default="voice map", compare=False)

    def voice_for(self, speaker: str) -> str | None:
        return next((e.voice for e in self.entries if e.speaker == speaker), None)

    def as_dict(self) -> dict[str, str]:
        return {e.speaker: e.voice for e in self.entries}

    def speakers(self) -> tuple[str, ...]:
        return tuple(e.speaker for e in self.entries)

    def comments(self) -> tuple[str, ...]:
        """The comment lines (without their `#`), e.g. to carry a header over to a new map."""
        if self.layout is None:
            return ()
        return tuple(line.lstrip()[1:].strip() for _, line in self.layout.extras if line.strip())


def _columns(line: str) -> list[str]:
    return re.split(r"\s+#", line, maxsplit=1)[0].split()


def _entry(line: str, source: str, line_no: int) -> VoiceEntry:
    columns = _columns(line)
    if len(columns) != 2:
        raise line_error(source, line_no, f"expected {_EXPECTED} but found {snippet(line)}; fix the line or remove it.")
    speaker, voice = columns
    problem = tag_problem(speaker) or _stem_problem(voice)
    if problem:
        raise line_error(source, line_no, f"{problem}.")
    return VoiceEntry(speaker, voice, line_no=line_no, raw=line)


def parse_voice_map(text: str, *, source: str) -> VoiceMap:
    entries, layout = parse_lines(
        text, source, _entry, skip=lambda line: not line.strip() or line.lstrip().startswith("#"),
        key=lambda e: e.speaker, clash="{key} already has a voice on line {line}; keep one of the two lines.",
    )
    return VoiceMap(entries, source=source, layout=layout)


def format_voice_map(voice_map: VoiceMap, header: Sequence[str] = ()) -> str:
    """Aligned columns; `header` lines become `# ` comments atop a map that has no layout yet."""
    width = max((len(e.speaker) for e in voice_map.entries), default=0) + 2
    lines = [
        reuse_raw(e.raw, lambda raw: _entry(raw, "line", 1), e) or f"{e.speaker.ljust(width)}{e.voice}"
        for e in voice_map.entries
    ]
    layout = voice_map.layout
    if layout is None:
        comments = tuple((0, f"# {h}".rstrip()) for h in header)
        layout = Layout(extras=comments + ((0, ""),) if comments else ())
    return render(lines, layout)


read_voice_map = reader(parse_voice_map)
write_voice_map = writer(format_voice_map)
