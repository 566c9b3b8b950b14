"""`12.chapters.txt`: `NN%: Title` lines, each followed by `SHORT_SUMMARY : text`.

The percentage is where the chapter *ends* in the story (the seed writes 20%, 40%, ...
100%); it must grow from chapter to chapter, or the chapter times derived from it would
run backwards. A chapter without a summary line is accepted (summary None): a title is
enough for the video description's chapter list.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from common.formats._text import (
    Parsed, TextFile, check_one_line, line_error, reader, render, reuse_raw, snippet, split_lines, writer,
)

_TITLE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*:\s*(.*?)\s*\Z")
_SUMMARY_RE = re.compile(r"\s*SHORT_SUMMARY\s*:\s*(.*?)\s*\Z", re.I)
_EXPECTED = '"NN%: Title" followed by "SHORT_SUMMARY : text"'


@dataclass(frozen=True)
class Chapter(Parsed):
    percent: float
    title: str
    summary: str | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.percent) or not 0 <= self.percent <= 100:
            raise ValueError(f"a chapter percentage is between 0 and 100, not {self.percent!r}")
        if not self.title.strip():
            raise ValueError("a chapter needs a title")
        check_one_line(self.title, "a chapter title")
        if self.summary is not None:
            check_one_line(self.summary, "a chapter summary")


@dataclass(frozen=True)
class Chapters(TextFile):
    chapters: tuple[Chapter, ...]
    source: str = field(default="chapters", compare=False)


def _reparse(raw: str) -> Chapter:
    lines = raw.split("\n")
    title = _TITLE_RE.match(lines[0])
    summary = _SUMMARY_RE.match(lines[-1]) if len(lines) > 1 else None
    if not title or (len(lines) > 1 and not summary):
        raise ValueError(raw)
    return Chapter(float(title.group(1)), title.group(2), summary.group(1) if summary else None)


def _format_chapter(chapter: Chapter) -> str:
    kept = reuse_raw(chapter.raw, _reparse, chapter)
    if kept is not None:
        return kept
    title = f"{chapter.percent:g}%: {chapter.title}"
    return title if chapter.summary is None else f"{title}\nSHORT_SUMMARY : {chapter.summary}"


def parse_chapters(text: str, *, source: str) -> Chapters:
    lines, layout = split_lines(text)
    extras: list[tuple[int, str]] = []
    chapters: list[Chapter] = []
    pending: list[str] = []  # lines of the chapter being read: its title, then blanks
    pending_no = 0

    def close() -> None:
        if not pending:
            return
        title = _TITLE_RE.match(pending[0])
        assert title is not None
        percent = float(title.group(1))
        if not title.group(2):
            raise line_error(source, pending_no, f"the chapter at {title.group(1)}% has no title; write one after the colon.")
        if percent > 100:
            raise line_error(source, pending_no, f"{title.group(1)}% is more than 100%; a chapter ends at most at 100% of the story.")
        if chapters and percent <= chapters[-1].percent:
            raise line_error(
                source, pending_no,
                f"{title.group(1)}% does not come after the previous chapter's {chapters[-1].percent:g}%; "
                "list chapters in order, each ending later than the one before.",
            )
        # Blank lines after a title without a summary belong to the layout, not the chapter.
        trailing: list[str] = []
        while len(pending) > 1 and not pending[-1].strip():
            trailing.insert(0, pending.pop())
        extras.extend((len(chapters) + 1, blank) for blank in trailing)
        raw = "\n".join(pending)
        summary = _SUMMARY_RE.match(pending[-1]) if len(pending) > 1 else None
        chapters.append(Chapter(percent, title.group(2), summary.group(1) if summary else None, line_no=pending_no, raw=raw))
        pending.clear()

    for index, line in enumerate(lines):
        line_no = index + 1
        if not line.strip():
            if pending:
                pending.append(line)
            else:
                extras.append((len(chapters), line))
        elif _TITLE_RE.match(line):
            close()
            pending.append(line)
            pending_no = line_no
        elif _SUMMARY_RE.match(line):
            if not pending:
                raise line_error(source, line_no, f'a SHORT_SUMMARY line with no "NN%: Title" line before it; expected {_EXPECTED}.')
            pending.append(line)
            # A summary completes its chapter, so a second summary line is caught above.
            close()
        else:
            raise line_error(source, line_no, f"expected {_EXPECTED} but found {snippet(line)}; fix the line or remove it.")
    close()
    # Extras recorded inside close() came after chapters already appended; keep file order.
    return Chapters(tuple(chapters), source=source, layout=replace(layout, extras=tuple(sorted(extras, key=lambda e: e[0]))))


def format_chapters(chapters: Chapters) -> str:
    return render([_format_chapter(c) for c in chapters.chapters], chapters.layout)


read_chapters = reader(parse_chapters)
write_chapters = writer(format_chapters)
