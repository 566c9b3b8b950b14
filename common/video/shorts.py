"""Which passages of the story become Shorts: pure functions over line timings and subtitles.

A Short must make sense to someone who never saw the video, so it starts where the story
itself starts something: by default at a chapter start (12.chapters.txt gives where each
chapter ends, as a percentage of the story's text, so chapter k starts where k-1 ended).
When there are fewer chapters than Shorts wanted, the rest start at other line starts,
chosen to overlap the passages already taken as little as possible and preferring the
narrator's lines, which set scenes rather than answer someone.

A Short starts exactly at a line start (a line is one utterance of the story, so a new
speaker or a new paragraph) and ends at the last sentence end that fits the target length,
plus a short tail of the pause after it for the fade-out: never mid-word, never over the
target. Sentence ends are the ends of lines and the ends of subtitle cues whose text ends a
sentence (a line can hold several sentences; the transcript knows where they end).

`read_story_timing` gathers those inputs with their fallbacks; everything else is pure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from common.run.errors import InputError
from common.formats.chapters import Chapter, read_chapters
from common.formats.srt import Cue, read_srt
from common.audio.subtitles import SENTENCE, CueRules, break_after, build_cues, to_srt, words_from_timings

SENTENCE_TAIL = 0.4  # seconds of the pause after the last sentence kept for the fade-out
MIN_TAIL = 0.05  # the least room left after the last word, so the fade never eats into it
FADE_IN = 0.05  # seconds: enough to avoid a click, too short to soften the first syllable
MIN_SHARE = 0.5  # a passage shorter than this share of the target is a last resort
_EPS = 1e-6


@dataclass(frozen=True)
class Line:
    """A span of speech a Short may start at: a story line, or a sentence of the transcript."""

    number: int  # 1-based story line (or sentence) number
    start: float
    end: float
    text: str
    speaker: str = ""


@dataclass(frozen=True)
class Passage:
    """The cut of one Short in final.wav's time: `start` .. `end`, speech ending at `speech_end`."""

    first_line: int
    start: float
    speech_end: float
    end: float
    reason: str
    clean_end: str = "sentence"  # "sentence", "word" (no sentence end fitted), or "cut" (no word end either)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def fade_in(self) -> float:
        return min(FADE_IN, self.duration / 4)

    @property
    def fade_out(self) -> float:
        """The fade covers the kept pause, so it ends with the Short and starts after the last word."""
        return max(MIN_TAIL, min(SENTENCE_TAIL, self.end - self.speech_end, self.duration / 4))


# ------------------------------------------------------------------ inputs


def lines_from_timings(timings: Mapping[str, Any]) -> list[Line]:
    """The lines of output/story.timings.json (already checked by common.audio.transcribe.read_timings)."""
    lines = [Line(int(l["line"]), float(l["start"]), float(l["end"]), str(l["text"]), str(l.get("speaker", "")))
             for l in timings["lines"]]
    return sorted(lines, key=lambda l: (l.start, l.number))


def ends_sentence(text: str) -> bool:
    words = text.split()
    return bool(words) and break_after(words[-1]) == SENTENCE


def lines_from_cues(cues: Sequence[Cue]) -> list[Line]:
    """Sentences of the subtitles, for when the line timings are missing (a hand-made final.wav)."""
    lines: list[Line] = []
    group: list[Cue] = []
    for cue in sorted(cues, key=lambda c: c.start):
        if not cue.text.strip():
            continue
        group.append(cue)
        if ends_sentence(cue.text):
            lines.append(_sentence(len(lines) + 1, group))
            group = []
    if group:
        lines.append(_sentence(len(lines) + 1, group))
    return lines


def _sentence(number: int, cues: list[Cue]) -> Line:
    return Line(number, cues[0].start, cues[-1].end, " ".join(c.text.replace("\n", " ") for c in cues))


def sentence_ends(lines: Sequence[Line], cues: Sequence[Cue]) -> list[float]:
    """Times where a sentence ends: every line end, and every cue end whose text ends a sentence."""
    ends = {round(l.end, 3) for l in lines}
    ends |= {round(c.end, 3) for c in cues if ends_sentence(c.text)}
    return sorted(ends)


def word_ends(cues: Sequence[Cue]) -> list[float]:
    """Cue ends: a transcriber ends cues between words, so these are safe cuts when no sentence fits."""
    return sorted({round(c.end, 3) for c in cues})


def chapter_starts(lines: Sequence[Line], chapters: Sequence[Chapter]) -> list[tuple[int, str]]:
    """(index into `lines`, "chapter k: title") of each chapter's first line.

    Chapter k starts where chapter k-1 ends, at that share of the story's characters (as
    common.formats.sections measures it), so its first line is the one whose preceding text
    is closest to that share.
    """
    if not lines:
        return []
    before = [0]
    for line in lines:
        before.append(before[-1] + len(line.text))
    total = before[-1] or 1
    found: list[tuple[int, str]] = []
    seen: set[int] = set()
    previous = 0.0
    for number, chapter in enumerate(chapters, 1):
        wanted = total * previous / 100
        index = min(range(len(lines)), key=lambda i: (abs(before[i] - wanted), i))
        if index not in seen:
            seen.add(index)
            found.append((index, f"chapter {number}: {chapter.title}"))
        previous = chapter.percent
    return found


# ------------------------------------------------------------------ one passage


def _next_speech(after: float, lines: Sequence[Line], cues: Sequence[Cue], audio_end: float) -> float:
    starts = [l.start for l in lines if l.start > after + _EPS] + [c.start for c in cues if c.start > after + _EPS]
    return min(starts, default=audio_end)


def plan_passage(
    lines: Sequence[Line], index: int, *, sentence_times: Sequence[float], word_times: Sequence[float],
    cues: Sequence[Cue], target: float, audio_end: float, reason: str = "",
) -> Passage:
    """The longest passage from line `index` that ends cleanly within `target` seconds."""
    start = lines[index].start
    limit = min(start + target, audio_end)
    # Room for a fade after the last word, except at the very end of the sound (times are
    # rounded to the millisecond, so the last word may "end" a fraction of a sample late).
    latest = min(start + target - MIN_TAIL, audio_end + 0.001)
    clean = "sentence"
    fitting = [t for t in sentence_times if start + _EPS < t <= latest]
    if not fitting:
        clean = "word"
        fitting = [t for t in word_times if start + _EPS < t <= latest]
    if fitting:
        speech_end = min(max(fitting), audio_end)
    else:
        clean, speech_end = "cut", max(start, min(latest, audio_end))
    room = min(SENTENCE_TAIL, _next_speech(speech_end, lines, cues, audio_end) - speech_end, limit - speech_end)
    end = speech_end + max(0.0, room)
    return Passage(lines[index].number, start, speech_end, end, reason, clean)


# ------------------------------------------------------------------ choosing


def _overlap(a: Passage, b: Passage) -> float:
    return max(0.0, min(a.end, b.end) - max(a.start, b.start))


def _distance(a: Passage, b: Passage) -> float:
    return max(0.0, max(a.start, b.start) - min(a.end, b.end))


def choose_passages(
    lines: Sequence[Line], cues: Sequence[Cue], *, count: int, target: float, audio_end: float,
    chapters: Sequence[Chapter] = (),
) -> list[Passage]:
    """Up to `count` passages, chapter starts first (in order), then the least overlapping others.

    Fewer come back only when the story has fewer lines than `count`. A passage much shorter
    than the target is skipped while longer ones exist, unless it is a chapter that runs to
    the end of the story (the last chapter, complete).
    """
    if count < 1 or not lines:
        return []
    if not math.isfinite(target) or target <= 0:
        raise ValueError(f"the target length must be a positive number of seconds, not {target!r}")
    sentence_times = sentence_ends(lines, cues)
    word_times = word_ends(cues)
    plans = [plan_passage(lines, i, sentence_times=sentence_times, word_times=word_times, cues=cues,
                          target=target, audio_end=audio_end) for i in range(len(lines))]
    usable = [i for i, p in enumerate(plans) if p.duration > _EPS]
    if not usable:
        return []
    best = max(plans[i].duration for i in usable)
    min_length = MIN_SHARE * min(target, best)
    # Cuts that end at a sentence beat those that do not; the others are used only when needed.
    rank = {"sentence": 0, "word": 1, "cut": 2}
    pool = [i for i in usable if plans[i].duration >= min_length - _EPS]

    last_word = max(l.end for l in lines)
    chosen: list[Passage] = []
    taken: set[int] = set()
    for index, reason in chapter_starts(lines, chapters):
        if len(chosen) == count:
            break
        plan = plans[index]
        # A short last chapter is still a whole story of its own: it is taken as it is.
        whole_rest = plan.speech_end >= min(last_word, audio_end) - 0.001
        if index in usable and plan.clean_end == "sentence" and (index in pool or whole_rest):
            chosen.append(replace(plans[index], reason=reason))
            taken.add(index)

    while len(chosen) < count:
        left = [i for i in pool if i not in taken]
        if not left:
            break

        def score(i: int) -> tuple[Any, ...]:
            p = plans[i]
            overlap = sum(_overlap(p, c) for c in chosen)
            nearest = min((_distance(p, c) for c in chosen), default=target)
            narrator = lines[i].speaker.lower() == "narrator"
            return (rank[p.clean_end], round(overlap, 1), -min(nearest, target), not narrator, -round(p.duration, 1), p.start)

        pick = min(left, key=score)
        reason = "narrator line" if lines[pick].speaker.lower() == "narrator" else "line start"
        chosen.append(replace(plans[pick], reason=reason))
        taken.add(pick)
    return chosen


def captions_in(cues: Iterable[Cue], start: float, end: float) -> list[Cue]:
    """The cues shown during `start`..`end`, clipped to it and shifted so the passage starts at 0."""
    out: list[Cue] = []
    for cue in cues:
        a, b = max(cue.start, start), min(cue.end, end)
        if b - a > 0.04 and cue.text.strip():  # less than a frame is not worth showing
            out.append(Cue(len(out) + 1, round(a - start, 3), round(b - start, 3), cue.text))
    return out


# ------------------------------------------------------------------ reading the inputs


@dataclass(frozen=True)
class StoryTiming:
    """What the Shorts are cut from, and where each piece came from (for the log)."""

    lines: tuple[Line, ...]
    cues: tuple[Cue, ...]
    chapters: tuple[Chapter, ...]
    notes: tuple[str, ...]


def read_story_timing(input_dir: Path, output_dir: Path) -> StoryTiming:
    """Line timings, subtitles and chapters, each with its fallback.

    The line timings (2.story.py) give line starts; without them the subtitles' sentences
    stand in. The subtitles (3.transcribe.py) give captions and sentence ends; without them
    captions are spread over each line's words from the timings. Without chapters the
    Shorts start at the least overlapping line starts.
    """
    from common.audio.transcribe import read_timings

    notes: list[str] = []
    srt_path, timings_path, chapters_path = input_dir / "2.story.srt", output_dir / "story.timings.json", input_dir / "12.chapters.txt"
    timings = read_timings(timings_path) if timings_path.is_file() else None
    if srt_path.is_file():
        cues = tuple(read_srt(srt_path).cues)
    elif timings is not None:
        cues = to_srt(build_cues(words_from_timings(timings["lines"]), CueRules())).cues
        notes.append(f"no {srt_path.name} (3.transcribe.py writes it): captions spread over the line timings")
    else:
        cues = ()
    if timings is not None:
        lines = lines_from_timings(timings)
    elif cues:
        lines = lines_from_cues(cues)
        notes.append(f"no {timings_path.name} (2.story.py writes it): Shorts start at the subtitles' sentences")
    else:
        raise InputError(f"neither {timings_path} nor {srt_path} exists, so there is nothing to cut Shorts at; "
                         "run 2.story.py and 3.transcribe.py first.")
    chapters: tuple[Chapter, ...] = ()
    if chapters_path.is_file():
        chapters = read_chapters(chapters_path).chapters
    else:
        notes.append(f"no {chapters_path.name} (1.character.py writes it): Shorts start at spread-out lines")
    return StoryTiming(tuple(lines), tuple(cues), chapters, tuple(notes))
