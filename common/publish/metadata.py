"""YouTube metadata from the story, its chapters and the audio: title, description with chapters, tags.

YouTube enforces its rules silently or late: a chapter list that breaks one rule is ignored
without a word, tags over budget fail the upload with `invalidTags` at 3 a.m. So every rule
lives here, in one tested place, and 9.media.py writes only what passes; 12.youtube.py can
check the same way before it sends anything.

The rules (YouTube Data API `videos` resource and YouTube Help, checked 2026):
- title: at most 100 characters, no `<` or `>`;
- description: at most 5000 bytes of UTF-8, no `<` or `>`;
- tags: at most 500 characters in all, counted YouTube's way: each tag's characters, plus 2
  for a tag containing a space (the server treats it as quoted), plus 1 comma between tags
  ("Foo-Baz" counts 7, "Foo Baz" 9). The API documents no per-tag limit; we keep each tag to
  30 characters (MAX_TAG_CHARS) because long tags spend the shared budget and rarely match a
  search, and drop `"` and `,` from tags (they would change how the list is split or counted);
- chapters: the first at 0:00, at least three, each at least 10 seconds, in increasing order,
  one per line as `M:SS Title` (`H:MM:SS` past an hour).
"""
from __future__ import annotations

import hashlib
import json
from itertools import groupby
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from common.state.atomic import atomic_write_text
from common.state.checkpoints import CheckpointStore
from common.run.errors import InputError
from common.formats.chapters import Chapters
from common.formats.story import Story

MAX_TITLE_CHARS = 100
MAX_DESCRIPTION_BYTES = 5000
MAX_TAGS_CHARS = 500
MAX_TAG_CHARS = 30
MIN_TAG_CHARS = 2
MIN_CHAPTERS = 3
MIN_CHAPTER_SECONDS = 10
MAX_CHAPTER_TITLE_CHARS = 70  # what YouTube shows of a chapter title before cutting it
MAX_HOOK_CHARS = 300
BULLET = "\u2022 "
CHAPTERS_HEADING = "Chapters:"

_ANGLES = re.compile(r"[<>]")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+")


def _one_line(text: str) -> str:
    return " ".join(_ANGLES.sub("", text).split())


def first_sentences(text: str, count: int, max_chars: int) -> str:
    """The first `count` sentences of `text`, cut at a word (with an ellipsis) past `max_chars`."""
    sentences = [s for s in _SENTENCE_END.split(_one_line(text)) if s]
    out = " ".join(sentences[:count])
    return shorten(out, max_chars)


def shorten(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1].rsplit(" ", 1)[0] if " " in text[: max_chars - 1] else text[: max_chars - 1]
    return cut.rstrip(" ,;:.") + "\u2026"


# ---------------------------------------------------------------- title

def title_problem(title: str) -> str | None:
    """Why YouTube would refuse this title, or None when it is fine."""
    if not title.strip():
        return "it is empty"
    if "\n" in title.strip() or "\r" in title.strip():
        return "it has more than one line"
    if _ANGLES.search(title):
        return "it contains < or >, which YouTube does not allow"
    if len(title.strip()) > MAX_TITLE_CHARS:
        return f"it has {len(title.strip())} characters; YouTube allows {MAX_TITLE_CHARS}"
    return None


def read_title(path: Path) -> str | None:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8-sig").strip()
    return text or None


# ---------------------------------------------------------------- tags

def tag_cost(tag: str) -> int:
    """Characters a tag takes of the 500: its own, plus 2 quotes when it contains a space."""
    return len(tag) + (2 if " " in tag else 0)


def tags_length(tags: Sequence[str]) -> int:
    """The tag list's length as YouTube counts it (tag costs plus one comma between tags)."""
    return sum(tag_cost(t) for t in tags) + max(0, len(tags) - 1)


def clean_tag(text: str) -> str | None:
    """A tag YouTube takes as one tag, or None when nothing usable is left."""
    tag = re.sub(r"[<>\",\n\r\t]+", " ", text)
    tag = " ".join(tag.split()).strip(" #'.;:-")
    if len(tag) < MIN_TAG_CHARS or len(tag) > MAX_TAG_CHARS:
        return None
    return tag


def fit_tags(candidates: Iterable[str], limit: int = MAX_TAGS_CHARS) -> list[str]:
    """Clean, de-duplicate (ignoring case) and keep tags in order while the list fits `limit`.

    A tag that does not fit is skipped, not the rest: a shorter one later may still fit.
    """
    chosen: list[str] = []
    seen: set[str] = set()
    for candidate in candidates:
        tag = clean_tag(str(candidate))
        if tag is None or tag.casefold() in seen:
            continue
        if tags_length([*chosen, tag]) > limit:
            continue
        chosen.append(tag)
        seen.add(tag.casefold())
    return chosen


def format_tags(tags: Sequence[str]) -> str:
    """tags.txt: one tag per line (easy to edit; commas never appear inside a tag)."""
    return "".join(f"{t}\n" for t in tags)


def parse_tags(text: str) -> list[str]:
    """Tags from tags.txt, written one per line or comma-separated on one line."""
    parts = re.split(r"[,\n]", text.replace("\r", ""))
    return [p.strip() for p in parts if p.strip()]


def read_tags(path: Path) -> list[str]:
    return parse_tags(path.read_text(encoding="utf-8-sig"))


# ---------------------------------------------------------------- the audio's timeline

@dataclass(frozen=True)
class AudioTimeline:
    """How long the audio is and, when known, where each story line starts in it (seconds)."""

    duration: float
    line_starts: tuple[float, ...] = ()
    source: str = ""


def load_timeline(output_dir: Path) -> AudioTimeline:
    """The per-line timings 2.story.py wrote; the audio's length is final.wav's when it exists.

    final.wav (8.combine.py) is what the video carries, so its length decides whether the
    last chapter is long enough; story.wav's timings place the lines, as final.wav keeps them.
    """
    timings = output_dir / "story.timings.json"
    final = output_dir / "final.wav"
    duration: float | None = None
    starts: tuple[float, ...] = ()
    source = ""
    if timings.is_file():
        try:
            data = json.loads(timings.read_text(encoding="utf-8"))
            lines = sorted(data["lines"], key=lambda line: int(line["line"]))
            starts = tuple(float(line["start"]) for line in lines)
            duration = float(data["duration"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{timings} is not a timings file 2.story.py wrote ({exc}); run 2.story.py again to rewrite it."
            ) from None
        if not math.isfinite(duration) or duration <= 0 or any(not math.isfinite(s) or s < 0 for s in starts):
            raise InputError(f"{timings} holds impossible times; run 2.story.py again to rewrite it.")
        source = timings.name
    from common.media.ffmpeg import audio_duration  # numpy and PyAV load only when a timeline is read

    if final.is_file():
        duration, source = audio_duration(final), (f"{source} + {final.name}" if source else final.name)
    elif duration is None:
        story_wav = output_dir / "story.wav"
        if not story_wav.is_file():
            raise InputError(
                f"no audio timeline: {timings} is missing (2.story.py writes it with story.wav); run 2.story.py first."
            )
        duration, source = audio_duration(story_wav), story_wav.name
    return AudioTimeline(float(duration), starts, source)


# ---------------------------------------------------------------- chapters

@dataclass(frozen=True)
class ChapterMark:
    """A chapter as the description lists it: where it starts (whole seconds) and its title."""

    start: int
    title: str


@dataclass
class _Segment:
    start: int
    title: str
    origin: int  # which chapter of 12.chapters.txt it came from (split halves share it)


def format_timestamp(seconds: int) -> str:
    """`M:SS` under an hour, `H:MM:SS` from an hour on: the forms YouTube links as chapters."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def chapter_start_lines(story: Story, chapters: Chapters) -> list[int]:
    """Index of the story line that begins each chapter.

    A chapter's `NN%` is where it ends, as a share of the story's spoken text (the rule
    1.character.py writes them by); the next chapter begins at the line boundary nearest it.
    """
    lengths = [len(u.text) for u in story.utterances]
    total = sum(lengths) or 1
    cumulative = [0.0]
    for length in lengths:
        cumulative.append(cumulative[-1] + 100.0 * length / total)
    starts = [0]
    for chapter in chapters.chapters[:-1]:
        boundary = min(range(1, len(lengths) + 1), key=lambda i: (abs(cumulative[i] - chapter.percent), i))
        starts.append(boundary)
    return starts


def _segment_lengths(segments: Sequence[_Segment], end: int) -> list[int]:
    nexts = [s.start for s in segments[1:]] + [end]
    return [n - s.start for s, n in zip(segments, nexts)]


def _merge_short(segments: list[_Segment], end: int) -> None:
    """Fold every chapter shorter than the minimum into its shorter neighbour (the longer part names it)."""
    while len(segments) > 1:
        lengths = _segment_lengths(segments, end)
        short = [i for i, length in enumerate(lengths) if length < MIN_CHAPTER_SECONDS]
        if not short:
            return
        i = min(short, key=lambda k: (lengths[k], k))
        neighbours = [k for k in (i - 1, i + 1) if 0 <= k < len(segments)]
        j = min(neighbours, key=lambda k: (lengths[k], k))
        a, b = min(i, j), max(i, j)
        keeper = segments[a] if lengths[a] >= lengths[b] else segments[b]
        segments[a] = _Segment(segments[a].start, keeper.title, keeper.origin)
        del segments[b]


def _split_longest(segments: list[_Segment], end: int, line_starts: Sequence[int]) -> bool:
    """Split the longest chapter that can be split, at the line boundary nearest its middle."""
    lengths = _segment_lengths(segments, end)
    for i in sorted(range(len(segments)), key=lambda k: (-lengths[k], k)):
        low, high = segments[i].start, segments[i].start + lengths[i]
        middle = (low + high) / 2
        if line_starts:
            inside = [t for t in line_starts if low + MIN_CHAPTER_SECONDS <= t <= high - MIN_CHAPTER_SECONDS]
            if not inside:
                continue
            cut = min(inside, key=lambda t: (abs(t - middle), t))
        elif high - low >= 2 * MIN_CHAPTER_SECONDS:
            cut = int(middle)
        else:
            continue
        segments.insert(i + 1, _Segment(cut, segments[i].title, segments[i].origin))
        return True
    return False


def _name_parts(segments: Sequence[_Segment]) -> list[ChapterMark]:
    """Halves of a split chapter become "Title (part 1)", "Title (part 2)", ..."""
    marks: list[ChapterMark] = []
    for _, run in groupby(segments, key=lambda segment: segment.origin):
        parts = list(run)
        for number, segment in enumerate(parts, start=1):
            title = segment.title if len(parts) == 1 else f"{segment.title} (part {number})"
            marks.append(ChapterMark(segment.start, title))
    return marks


def plan_chapters(starts: Sequence[float], titles: Sequence[str], duration: float,
                  line_starts: Sequence[float] = ()) -> list[ChapterMark]:
    """Chapter marks YouTube accepts, from raw chapter starts (seconds), or [] when none can be.

    The first chapter is moved to 0:00; chapters shorter than 10 s are merged into a
    neighbour; with fewer than three, the longest is split at the story line nearest its
    middle (at its middle when line times are unknown). Audio under 30 s cannot hold three
    chapters: the result is then empty and the description has no chapter list.
    """
    end = int(math.floor(duration))
    segments: list[_Segment] = []
    for origin, (start, title) in enumerate(zip(starts, titles)):
        second = 0 if origin == 0 else min(end, max(0, int(math.floor(start))))
        clean = shorten(_one_line(title), MAX_CHAPTER_TITLE_CHARS) or f"Chapter {origin + 1}"
        segments.append(_Segment(second, clean, origin))
    if not segments:
        segments.append(_Segment(0, "Chapter 1", 0))
    segments.sort(key=lambda s: (s.start, s.origin))
    _merge_short(segments, end)
    cuts = sorted({int(math.floor(t)) for t in line_starts if 0 < t < duration})
    while len(segments) < MIN_CHAPTERS and _split_longest(segments, end, cuts):
        pass
    marks = _name_parts(segments)
    return marks if not chapter_problems(marks, duration) else []


def chapter_marks(story: Story, chapters: Chapters, timeline: AudioTimeline) -> tuple[list[ChapterMark], str]:
    """By line starts ('lines'); by percentage of the audio ('percent') when the timings are missing or do
    not match the story (edited since the audio was made)."""
    titles = [c.title for c in chapters.chapters]
    if timeline.line_starts and len(timeline.line_starts) == len(story.utterances):
        lines = chapter_start_lines(story, chapters)
        starts = [timeline.line_starts[i] if i < len(timeline.line_starts) else timeline.duration for i in lines]
        return plan_chapters(starts, titles, timeline.duration, timeline.line_starts), "lines"
    starts = [0.0] + [c.percent / 100.0 * timeline.duration for c in chapters.chapters[:-1]]
    return plan_chapters(starts, titles, timeline.duration), "percent"


def chapter_problems(marks: Sequence[ChapterMark], duration: float) -> list[str]:
    """Every YouTube chapter rule the marks break (empty when YouTube will show them)."""
    problems: list[str] = []
    if len(marks) < MIN_CHAPTERS:
        problems.append(f"{len(marks)} chapters; YouTube needs at least {MIN_CHAPTERS}")
    if marks and marks[0].start != 0:
        problems.append(f"the first chapter starts at {format_timestamp(marks[0].start)}, not 0:00")
    ends = [m.start for m in marks[1:]] + [int(math.floor(duration))]
    for mark, end in zip(marks, ends):
        if end - mark.start < MIN_CHAPTER_SECONDS:
            problems.append(f"chapter {mark.title!r} at {format_timestamp(mark.start)} lasts {end - mark.start} s; "
                            f"each needs {MIN_CHAPTER_SECONDS} s")
        if _ANGLES.search(mark.title) or not mark.title.strip():
            problems.append(f"chapter at {format_timestamp(mark.start)} has an unusable title")
    return problems


def parse_description_chapters(text: str) -> list[ChapterMark]:
    """The chapter lines of a description (`M:SS Title` / `H:MM:SS Title`), as YouTube reads them."""
    marks = []
    for line in text.splitlines():
        match = re.match(r"^(?:(\d+):)?(\d{1,2}):(\d{2})\s+(\S.*)$", line.strip())
        if match:
            hours, minutes, seconds = int(match.group(1) or 0), int(match.group(2)), int(match.group(3))
            marks.append(ChapterMark(hours * 3600 + minutes * 60 + seconds, match.group(4)))
    return marks


# ---------------------------------------------------------------- description

def _render(hook: str, bullets: Sequence[str], marks: Sequence[ChapterMark]) -> str:
    blocks = [hook] if hook else []
    if bullets:
        blocks.append("\n".join(BULLET + b for b in bullets))
    if marks:
        blocks.append("\n".join([CHAPTERS_HEADING, *(f"{format_timestamp(m.start)} {m.title}" for m in marks)]))
    return "\n\n".join(blocks) + "\n"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def compose_description(hook: str, bullets: Sequence[str], marks: Sequence[ChapterMark],
                        limit: int = MAX_DESCRIPTION_BYTES) -> str:
    """Hook, bullets, then the chapter list, within `limit` bytes of UTF-8.

    What gives way when it is too long: bullets from the last, then the hook's words; the
    chapters never (a list of chapters that alone passes 5000 bytes is not a real story).
    """
    hook = first_sentences(hook, 2, MAX_HOOK_CHARS)
    bullets = [b for b in (shorten(_one_line(b).lstrip("-*\u2022 "), 120) for b in bullets) if b]
    marks = [ChapterMark(m.start, shorten(_one_line(m.title), MAX_CHAPTER_TITLE_CHARS)) for m in marks]
    text = _render(hook, bullets, marks)
    while _size(text) > limit and bullets:
        bullets.pop()
        text = _render(hook, bullets, marks)
    while _size(text) > limit and hook:
        words = hook.rstrip("\u2026").split()
        hook = " ".join(words[: max(0, len(words) - max(1, len(words) // 4))])
        hook = hook + "\u2026" if hook else ""
        text = _render(hook, bullets, marks)
    if _size(text) > limit:
        raise InputError(
            f"the chapter list alone takes {_size(_render('', [], marks))} bytes, more than YouTube's {limit}; "
            "use fewer chapters in 12.chapters.txt."
        )
    return text


def description_problems(text: str) -> list[str]:
    problems = []
    if _size(text) > MAX_DESCRIPTION_BYTES:
        problems.append(f"{_size(text)} bytes; YouTube allows {MAX_DESCRIPTION_BYTES}")
    if _ANGLES.search(text):
        problems.append("it contains < or >, which YouTube does not allow")
    return problems


# ---------------------------------------------------------------- files a person may edit

def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def edited_since_written(path: Path, written_digest: str | None) -> bool:
    """True when `path` exists and differs from what this script last wrote there.

    Lets a rerun refresh its own outputs while keeping a hand edit (or a file that came
    with the project, when nothing was ever written: `written_digest` None).
    """
    if not path.is_file() or path.stat().st_size == 0:
        return False
    if written_digest is None:
        return True
    return text_digest(path.read_text(encoding="utf-8-sig")) != written_digest


def write_if_changed(path: Path, text: str) -> bool:
    """Write atomically unless the file already says exactly this (a rerun leaves mtimes alone)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return True


def hand_edited(store: CheckpointStore, path: Path, *, came_with_project: bool) -> bool:
    """Whether `path` is a person's version to keep: edited since we wrote it, or (for inputs) never ours."""
    record = store.entries().get(path.name)
    if record is None and not came_with_project:
        return False
    ours = [d for d in (record.data.get("sha256"), record.data.get("replacing")) if d] if record else []
    return all(edited_since_written(path, d) for d in ours) if ours else edited_since_written(path, None)


def write_owned(store: CheckpointStore, path: Path, text: str, *, preview: bool) -> bool:
    """Write a file a person may later edit, recording what we wrote; True if it changed.

    What is about to be written is recorded first: a kill between the write and the record must
    not leave our own file looking hand-made (and so kept for ever) on the next run."""
    digest, record = text_digest(text), store.entries().get(path.name)
    recorded = record is not None and record.fingerprint == "written" and record.data.get("sha256") == digest
    if not recorded:
        store.record(path.name, "writing", preview=preview,
                     data={"sha256": digest, "replacing": record.data.get("sha256") if record else None})
    changed = write_if_changed(path, text)
    if changed or not recorded:
        store.record(path.name, "written", files=[path], data={"sha256": digest}, preview=preview)
    return changed
