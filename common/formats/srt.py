"""SubRip subtitles (`2.story.srt`): cues of `index`, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text lines.

The seed's transcriber omits the index lines; that is read and written back as it was
(`Cue.index` is None). Files we create should number their cues: YouTube and most players
accept both, the standard asks for numbers. `.` instead of `,` before the milliseconds
and more than two hour digits are accepted on reading.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from common.formats._text import (
    Layout, Parsed, TextFile, check_time, line_error, reader, render, reuse_raw, snippet, split_lines, writer,
)

_TIME = r"(\d+):([0-5]\d):([0-5]\d)[,.](\d{3})"
_TIMING_RE = re.compile(rf"\s*{_TIME}\s*-->\s*{_TIME}(.*)\Z")
_INDEX_RE = re.compile(r"\s*(\d+)\s*\Z")


def srt_timestamp(seconds: float) -> str:
    """`HH:MM:SS,mmm`, rounded to the millisecond."""
    check_time(seconds, "a subtitle time")
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return (int(h) * 3600_000 + int(m) * 60_000 + int(s) * 1000 + int(ms)) / 1000


@dataclass(frozen=True)
class Cue(Parsed):
    """One subtitle; `text` may hold several lines joined by '\\n' but no blank line."""

    index: int | None
    start: float
    end: float
    text: str

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            check_time(value, "a subtitle time")
        if self.end < self.start:
            raise ValueError(f"cue ends ({self.end}) before it starts ({self.start})")
        if any(not line.strip() for line in self.text.split("\n")) and self.text:
            raise ValueError("a cue's text cannot contain a blank line (it would end the cue)")
        if "\r" in self.text:
            raise ValueError("a cue's text cannot contain '\\r'")


@dataclass(frozen=True)
class Srt(TextFile):
    cues: tuple[Cue, ...]
    source: str = field(default="subtitles", compare=False)


def _parse_block(block: list[str], source: str, first_line_no: int) -> Cue:
    index: int | None = None
    at = 0
    index_match = _INDEX_RE.match(block[0])
    if index_match and len(block) > 1:
        index, at = int(index_match.group(1)), 1
    timing = _TIMING_RE.match(block[at])
    if not timing:
        raise line_error(
            source, first_line_no + at,
            f'expected a subtitle timing "HH:MM:SS,mmm --> HH:MM:SS,mmm" but found {snippet(block[at])}; '
            "fix the line, or make sure cues are separated by one blank line.",
        )
    groups = timing.groups()
    start, end = _seconds(*groups[0:4]), _seconds(*groups[4:8])
    if end < start:
        raise line_error(source, first_line_no + at, f"the cue ends ({block[at].split('-->')[1].strip()}) before it starts; fix its times.")
    text = "\n".join(block[at + 1:])
    return Cue(index, start, end, text, line_no=first_line_no, raw="\n".join(block))


def parse_srt(text: str, *, source: str) -> Srt:
    lines, layout = split_lines(text)
    extras: list[tuple[int, str]] = []
    cues: list[Cue] = []
    block: list[str] = []
    block_start = 0
    for index, line in enumerate(lines + [""]):
        is_end = index == len(lines)
        if line.strip():
            if not block:
                block_start = index + 1
            block.append(line)
            continue
        if block:
            cues.append(_parse_block(block, source, block_start))
            block = []
        if not is_end:
            extras.append((len(cues), line))
    return Srt(tuple(cues), source=source, layout=replace(layout, extras=tuple(extras)))


def _format_cue(cue: Cue) -> str:
    kept = reuse_raw(cue.raw, lambda raw: _parse_block(raw.split("\n"), "cue", 1), cue)
    if kept is not None:
        return kept
    timing = f"{srt_timestamp(cue.start)} --> {srt_timestamp(cue.end)}"
    head = [str(cue.index)] if cue.index is not None else []
    return "\n".join(head + [timing] + ([cue.text] if cue.text else []))


def format_srt(srt: Srt) -> str:
    """Cues separated by a blank line; a new file also ends with one, as the seed's does."""
    layout = srt.layout or Layout(extras=((len(srt.cues), ""),) if srt.cues else ())
    return render([_format_cue(c) for c in srt.cues], layout, separator=lambda k: "" if k else None)


read_srt = reader(parse_srt)
write_srt = writer(format_srt)
