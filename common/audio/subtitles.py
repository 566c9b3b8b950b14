"""Timed words -> readable subtitle cues and a gap-free timeline (pure functions, no I/O).

Both transcription paths end here: Whisper gives words with their own timestamps, the
offline path gives each story line's span and `line_words` spreads the line's time over its
words by characters. Cues follow the usual readability rules: at most `max_chars` per row and
`max_lines` rows, at least `min_duration` on screen, never overlapping. A cue ends at a
sentence end unless that sentence is too short to read alone, takes whole clauses while they
fit, and splits a clause that is too long by words into balanced pieces. A cue never spans
two story lines (two speakers) or a long pause, except as the last resort for a cue that is
too short to read. All arithmetic is in whole milliseconds, so what SRT prints is what was
checked, and the timeline's durations add up to the audio's length exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

from common.formats.srt import Cue, Srt
from common.formats.timeline import Timeline, TimelineEntry

SENTENCE, CLAUSE, NONE = 2, 1, 0
_CLOSERS = "\"'”’»)]}"
_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:—–"
# A dot after these ends no sentence ("Mr. Holmes"); a wrong guess only costs a cue break.
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "prof.", "sr.", "jr.", "mt.", "capt.", "col.", "lt.", "rev."})
SILENT_TEXT = "..."


@dataclass(frozen=True)
class Word:
    """One spoken word; `line` is the story line it belongs to when that is known."""

    text: str
    start: float
    end: float
    line: int | None = None


@dataclass(frozen=True)
class CueRules:
    """Readability limits; `pause` is the silence that always ends a cue."""

    max_chars: int = 42
    max_lines: int = 2
    min_duration: float = 1.0
    pause: float = 0.6

    def __post_init__(self) -> None:
        if self.max_chars < 1 or self.max_lines < 1 or self.min_duration < 0 or self.pause <= 0:
            raise ValueError(f"impossible subtitle rules: {self}")


@dataclass(frozen=True)
class Subtitle:
    """One finished cue: times in seconds (whole milliseconds) and its rows of text."""

    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def duration(self) -> float:
        return round(self.end - self.start, 3)


# ------------------------------------------------------------------ words


def line_words(text: str, start: float, end: float, line: int | None = None) -> list[Word]:
    """A line's words with its span shared out by characters: long words take longer to say."""
    tokens = text.split()
    if not tokens:
        return []
    joined = " ".join(tokens)
    span = max(0.0, end - start)
    words: list[Word] = []
    at = 0
    for token in tokens:
        words.append(Word(token, start + span * at / len(joined), start + span * (at + len(token)) / len(joined), line))
        at += len(token) + 1
    return words


def words_from_timings(lines: Iterable[Mapping[str, Any]]) -> list[Word]:
    """Words of story.timings.json lines (`line`, `text`, `start`, `end`), each tagged with its line."""
    words: list[Word] = []
    for entry in lines:
        words += line_words(str(entry["text"]), float(entry["start"]), float(entry["end"]), int(entry["line"]))
    return words


def whisper_words(result: Mapping[str, Any]) -> list[Word]:
    """Words of a Whisper result (`transcribe(..., word_timestamps=True)`).

    A segment without word timestamps (Whisper drops them for some segments) falls back to
    sharing the segment's span over its text by characters.
    """
    words: list[Word] = []
    for segment in result.get("segments") or ():
        seg_words = segment.get("words") or ()
        if not seg_words:
            words += line_words(str(segment.get("text", "")), float(segment["start"]), float(segment["end"]))
            continue
        for raw in seg_words:
            text = str(raw.get("word", "")).strip()
            if text:
                start = float(raw["start"])
                words.append(Word(text, start, max(start, float(raw["end"]))))
    return words


# ------------------------------------------------------------------ layout


def wrap(text: str, max_chars: int, max_lines: int) -> tuple[str, ...] | None:
    """The fewest rows of at most `max_chars` holding `text`, rows as even as possible; None if it cannot fit."""
    tokens = tuple(text.split())
    if not tokens:
        return ("",)
    return _wrap(tokens, max_chars, max_lines)


@lru_cache(maxsize=4096)
def _wrap(tokens: tuple[str, ...], max_chars: int, max_lines: int) -> tuple[str, ...] | None:
    n = len(tokens)
    length = sum(map(len, tokens)) + n - 1
    if length <= max_chars:
        return (" ".join(tokens),)
    if max_lines < 2 or n < 2 or length > max_lines * (max_chars + 1) - 1:
        return None
    # best[k][i]: (longest row, breaks) for the first i tokens in k rows.
    width = [[0] * (n + 1) for _ in range(n + 1)]
    for i in range(n):
        length = -1
        for j in range(i, n):
            length += len(tokens[j]) + 1
            width[i][j + 1] = length
    inf = (max_chars + 1, ())
    best = [[inf] * (n + 1) for _ in range(max_lines + 1)]
    best[0][0] = (0, ())
    for k in range(1, max_lines + 1):
        for i in range(1, n + 1):
            for j in range(k - 1, i):
                prev = best[k - 1][j]
                if prev[0] > max_chars or width[j][i] > max_chars:
                    continue
                cand = (max(prev[0], width[j][i]), prev[1] + (j,))
                if cand[0] < best[k][i][0]:
                    best[k][i] = cand
        if best[k][n][0] <= max_chars:
            if k == 2:
                return _two_rows(tokens, width, max_chars)
            cuts = best[k][n][1][1:] + (n,)
            rows, at = [], 0
            for cut in cuts:
                rows.append(" ".join(tokens[at:cut]))
                at = cut
            return tuple(rows)
    return None


_PUNCT_BONUS = 8  # characters of imbalance worth accepting to break rows after a comma or full stop


def _two_rows(tokens: tuple[str, ...], width: list[list[int]], max_chars: int) -> tuple[str, ...]:
    """Two rows, as even as possible, but a row that ends at a punctuation mark reads better."""
    n = len(tokens)
    best: tuple[int, int] | None = None
    for cut in range(1, n):
        longest = max(width[0][cut], width[cut][n])
        if longest > max_chars:
            continue
        score = longest - (_PUNCT_BONUS if break_after(tokens[cut - 1]) else 0)
        if best is None or score < best[0]:
            best = (score, cut)
    assert best is not None  # the caller found a two-row layout
    return (" ".join(tokens[:best[1]]), " ".join(tokens[best[1]:]))


def _rows(words: Sequence["_W"], rules: CueRules) -> tuple[str, ...] | None:
    return _wrap(tuple(w.text for w in words), rules.max_chars, rules.max_lines)


def _fits(words: Sequence["_W"], rules: CueRules) -> bool:
    return _rows(words, rules) is not None


# ------------------------------------------------------------------ cue building (milliseconds)


@dataclass(frozen=True)
class _W:
    text: str
    start: int
    end: int
    line: int | None


@dataclass
class _Cue:
    words: list[_W]
    start: int
    end: int


def break_after(token: str) -> int:
    """How strongly a cue may end after this word: SENTENCE, CLAUSE or NONE."""
    core = token.rstrip(_CLOSERS)
    if not core:
        return NONE
    if core[-1] in _SENTENCE_END:
        if core.lower().lstrip(_CLOSERS + "(") in _ABBREVIATIONS:
            return NONE
        return SENTENCE
    if core[-1] in _CLAUSE_END or core.endswith("--"):
        return CLAUSE
    return NONE


def _to_ms(words: Sequence[Word], total_ms: int | None) -> list[_W]:
    out: list[_W] = []
    floor = 0
    for word in words:
        start = max(floor, round(word.start * 1000))
        end = max(start, round(word.end * 1000))
        if total_ms is not None:
            start, end = min(start, total_ms), min(end, total_ms)
        out.append(_W(word.text, start, end, word.line))
        floor = start  # Whisper's words may step back a little: keep them in order
    return out


def _groups(words: list[_W], rules: CueRules) -> list[list[_W]]:
    """Runs of words no cue may cross: a new story line or a long pause starts a new run."""
    pause = round(rules.pause * 1000)
    groups: list[list[_W]] = []
    for word in words:
        if groups and word.line == groups[-1][-1].line and word.start - groups[-1][-1].end < pause:
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups


def _clauses(group: list[_W]) -> list[tuple[list[_W], int]]:
    """The group cut after every clause or sentence mark, with the strength of each cut."""
    out: list[tuple[list[_W], int]] = []
    current: list[_W] = []
    for word in group:
        current.append(word)
        strength = break_after(word.text)
        if strength:
            out.append((current, strength))
            current = []
    if current:
        out.append((current, SENTENCE))
    return out


def _split_long(words: list[_W], rules: CueRules) -> list[list[_W]]:
    """A clause too long for one cue, cut by words into the fewest pieces that fit, as even as possible."""
    n = len(words)
    prefix = [0]
    for word in words:
        prefix.append(prefix[-1] + len(word.text) + 1)
    cap = rules.max_lines * (rules.max_chars + 1) - 1
    known: dict[tuple[int, int], bool] = {}

    def size(i: int, j: int) -> int:
        return prefix[j] - prefix[i] - 1

    def fits(i: int, j: int) -> bool:
        if j - i == 1:
            return True  # a lone word too long for a row still stands alone: words are never cut
        if (i, j) not in known:
            known[(i, j)] = size(i, j) <= cap and _fits(words[i:j], rules)
        return known[(i, j)]

    def greedy(limit: int) -> list[tuple[int, int]]:
        """Pieces filled in order up to `limit` characters; the fewest possible for that limit."""
        out, at = [], 0
        while at < n:
            j = at + 1
            while j < n and size(at, j + 1) <= limit and fits(at, j + 1):
                j += 1
            out.append((at, j))
            at = j
        return out

    # Fitting is monotone (a part of a piece that fits also fits), so greedy filling gives the
    # fewest pieces; the smallest limit that still needs no more pieces evens them out.
    count = len(greedy(cap))
    low, high = 0, cap
    while low < high:
        middle = (low + high) // 2
        if len(greedy(middle)) <= count:
            high = middle
        else:
            low = middle + 1
    return [words[i:j] for i, j in greedy(low)]


def _pack(group: list[_W], rules: CueRules) -> list[_Cue]:
    """Whole clauses into cues while they fit; a sentence end closes a cue unless it is too short."""
    min_ms = round(rules.min_duration * 1000)
    units: list[tuple[list[_W], int]] = []
    for clause, strength in _clauses(group):
        if _fits(clause, rules):
            units.append((clause, strength))
        else:
            pieces = _split_long(clause, rules)
            units += [(piece, NONE) for piece in pieces[:-1]] + [(pieces[-1], strength)]
    cues: list[_Cue] = []
    current: list[_W] = []
    strength_before = NONE
    for unit, strength in units:
        if current:
            short = current[-1].end - current[0].start < min_ms
            if (strength_before < SENTENCE or short) and _fits(current + unit, rules):
                current = current + unit
                strength_before = strength
                continue
            cues.append(_Cue(current, current[0].start, current[-1].end))
        current, strength_before = list(unit), strength
    if current:
        cues.append(_Cue(current, current[0].start, current[-1].end))
    return cues


def _no_overlap(cues: list[_Cue]) -> None:
    for prev, cue in zip(cues, cues[1:]):
        if cue.start < prev.end:
            cue.start = prev.end
            cue.end = max(cue.end, cue.start)


def _lengthen(cues: list[_Cue], rules: CueRules) -> list[_Cue]:
    """Give every cue at least min_duration, disturbing the speech sync as little as possible.

    In order of preference: linger into the silence after it, start earlier into the
    silence before it, join a neighbour (when the joined text still fits), take time from a
    neighbour that can spare it. The last cue never runs past the end of speech.
    """
    need = round(rules.min_duration * 1000)
    i = 0
    while i < len(cues):
        cue = cues[i]
        prev = cues[i - 1] if i else None
        nxt = cues[i + 1] if i + 1 < len(cues) else None
        if cue.end - cue.start >= need:
            i += 1
            continue
        if nxt is not None:
            cue.end = max(cue.end, min(nxt.start, cue.start + need))
        if cue.end - cue.start < need:
            cue.start = min(cue.start, max(prev.end if prev else 0, cue.end - need))
        if cue.end - cue.start >= need:
            i += 1
            continue
        partner = _join_partner(cues, i, rules)
        if partner is not None:
            a, b = sorted((i, partner))
            cues[a:b + 1] = [_Cue(cues[a].words + cues[b].words, cues[a].start, cues[b].end)]
            i = max(0, a - 1)  # the joined cue and its left neighbour are looked at again
            continue
        short = need - (cue.end - cue.start)
        if nxt is not None and nxt.end - nxt.start - short >= need:
            cue.end += short
            nxt.start = cue.end
        elif prev is not None and prev.end - prev.start - short >= need:
            cue.start -= short
            prev.end = cue.start
        i += 1
    return cues


def _join_partner(cues: list[_Cue], i: int, rules: CueRules) -> int | None:
    """The neighbour a too-short cue joins: the nearer one in time whose joined text fits."""
    options = []
    for j in (i - 1, i + 1):
        if 0 <= j < len(cues):
            a, b = sorted((i, j))
            if _fits(cues[a].words + cues[b].words, rules):
                options.append((cues[b].start - cues[a].end, j))
    return min(options)[1] if options else None


def build_cues(words: Sequence[Word], rules: CueRules = CueRules(), *, total: float | None = None) -> list[Subtitle]:
    """Timed words -> subtitle cues, in order, non-overlapping; the last ends with the last word.

    `total` (the audio's length) caps every time. A single word longer than `max_chars`
    gets a row of its own (a word is never cut); a cue can be shorter than `min_duration`
    only when the speech around it leaves no time to give it.
    """
    total_ms = round(total * 1000) if total is not None else None
    ms_words = _to_ms(words, total_ms)
    cues: list[_Cue] = []
    for group in _groups(ms_words, rules):
        cues += _pack(group, rules)
    _no_overlap(cues)
    cues = _lengthen(cues, rules)
    out: list[Subtitle] = []
    for cue in cues:
        rows = _rows(cue.words, rules) or tuple(w.text for w in cue.words)
        out.append(Subtitle(cue.start / 1000, cue.end / 1000, rows))
    return out


# ------------------------------------------------------------------ outputs


def to_srt(cues: Sequence[Subtitle]) -> Srt:
    """Numbered SRT cues (the seed left the numbers out; the standard and players want them)."""
    return Srt(tuple(Cue(n, cue.start, cue.end, "\n".join(cue.lines)) for n, cue in enumerate(cues, 1)))


def to_timeline(cues: Sequence[Subtitle], total: float) -> Timeline:
    """One `<seconds>: <text>` segment per cue, gaps folded in, summing to `total` to the millisecond.

    Segment k runs from cue k's start to cue k+1's start (the pause after a cue belongs to
    it); the first starts at 0 and the last runs to the end of the audio, as the seed's did.
    """
    total_ms = round(total * 1000)
    if not cues:
        return Timeline((TimelineEntry(total_ms / 1000, SILENT_TEXT),))
    starts = [0] + [min(total_ms, round(c.start * 1000)) for c in cues[1:]] + [total_ms]
    entries = []
    for k, cue in enumerate(cues):
        duration = starts[k + 1] - starts[k]
        if duration < 0:
            raise ValueError(f"cue {k + 1} starts before cue {k}: cues must be in order")
        entries.append(TimelineEntry(duration / 1000, cue.text))
    return Timeline(tuple(entries))


def one_paragraph(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def plain_text(cues: Sequence[Subtitle]) -> str:
    """The transcript as running text, one paragraph, as the seed's 2.story.str.txt."""
    return one_paragraph(" ".join(c.text for c in cues))


def check_cues(cues: Sequence[Subtitle], rules: CueRules) -> list[str]:
    """Every broken readability rule, in words (empty when all hold); used by tests and the step's summary."""
    problems: list[str] = []
    for n, cue in enumerate(cues, 1):
        if len(cue.lines) > rules.max_lines:
            problems.append(f"cue {n} has {len(cue.lines)} rows")
        for row in cue.lines:
            if len(row) > rules.max_chars and " " in row:
                problems.append(f"cue {n} has a row of {len(row)} characters")
        if cue.end - cue.start < rules.min_duration - 1e-9:
            problems.append(f"cue {n} lasts {cue.duration:.3f} s")
        if n > 1 and cue.start < cues[n - 2].end - 1e-9:
            problems.append(f"cue {n} starts before cue {n - 1} ends")
    return problems
