"""Text wrapped and shrunk to fit a box, measured with the font, so nothing is ever clipped.

Two fitters, for two kinds of text: `fit_text` for the paragraphs of a storyboard card and the
name band (greedy lines, paragraph gaps, a word split only when no size avoids it), and
`fit_title` for a thumbnail's title (outlined letters, lines balanced to even widths). Both take
the largest size that fits, by bisection, and only text too long even at the smallest size
loses its tail to an ellipsis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from PIL import ImageDraw

from common.media.fonts import FontType, load_font

_ELLIPSIS = "\u2026"
_T = TypeVar("_T")


def _largest(low: int, high: int, attempt: Callable[[int], _T | None]) -> _T | None:
    """What `attempt` gives at the largest size in [low, high] where it gives anything (fitting is
    almost monotonic in size, so bisection finds it)."""
    best: _T | None = None
    while low <= high:
        size = (low + high) // 2
        fitted = attempt(size)
        if fitted is not None:
            best, low = fitted, size + 1
        else:
            high = size - 1
    return best


def _with_ellipsis(line: str, too_wide: Callable[[str], bool]) -> str:
    """The line cut so that it still fits with an ellipsis: whole words while there are several, then characters."""
    while line and too_wide(line.rstrip() + _ELLIPSIS):
        line = line.rsplit(" ", 1)[0] if " " in line.strip() else line[:-1]
    return line.rstrip() + _ELLIPSIS


# ---------------------------------------------------------------- paragraphs (cards, name bands)

@dataclass(frozen=True)
class FittedText:
    """Text wrapped to a box at the largest size that fits (or the smallest allowed, truncated)."""

    size: int
    bold: bool
    lines: tuple[str, ...]
    line_height: int
    paragraph_gap: int
    breaks: tuple[int, ...]  # indexes of lines that start a new paragraph (not the first)
    width: int
    height: int
    truncated: bool
    split_words: bool = False  # a word wider than the box was broken between characters

    @property
    def font(self) -> FontType:
        return load_font(self.size, self.bold)


def _break_word(word: str, font: FontType, width: float) -> list[str]:
    pieces, current = [], ""
    for char in word:
        if current and font.getlength(current + char) > width:
            pieces.append(current)
            current = char
        else:
            current += char
    if current:
        pieces.append(current)
    return pieces


def _wrap(text: str, font: FontType, width: float, max_lines: int | None) -> tuple[list[str], bool]:
    """Greedy word wrap by measured width, and whether a word wider than the box had to be split.

    Words are measured once and summed (fast for long descriptions); each finished line is
    then measured whole, and words that kerning pushes over go back to the next line. Stops
    after `max_lines` lines when given, since text that long will not fit anyway.
    """
    split = False
    space = font.getlength(" ")
    measured: dict[str, float] = {}
    lines: list[str] = []
    words: list[str] = []
    used = 0.0
    queue = list(reversed(text.split()))

    def finish() -> None:
        while len(words) > 1 and font.getlength(" ".join(words)) > width:
            queue.append(words.pop())
        lines.append(" ".join(words))

    while queue and (max_lines is None or len(lines) <= max_lines):
        word = queue.pop()
        size = measured.get(word)
        if size is None:
            size = measured[word] = font.getlength(word)
        if size > width and len(word) > 1:
            queue.extend(reversed(_break_word(word, font, width)))
            split = True
            continue
        # (A single character wider than the box stays on its own line; fit_text rejects it.)
        if words and used + space + size > width:
            queue.append(word)  # back on the stack first, so words finish() returns come before it
            finish()
            words, used = [], 0.0
            continue
        used = used + space + size if words else size
        words.append(word)
    if words and (max_lines is None or len(lines) <= max_lines):
        finish()
        if queue:  # kerning pushed words out of the last line
            rest, rest_split = _wrap(" ".join(reversed(queue)), font, width, max_lines)
            lines.extend(rest)
            split |= rest_split
    return lines, split


def _layout(paragraphs: Sequence[str], size: int, bold: bool, width: int, spacing: float,
            max_height: float | None = None) -> FittedText:
    """Wrap at one size; with `max_height`, stop early once the text is surely too tall."""
    font = load_font(size, bold)
    ascent, descent = font.getmetrics()
    line_height = max(1, round(size * spacing))
    gap = round(line_height * 0.45)
    budget = None if max_height is None else int(max_height // line_height) + 1
    lines: list[str] = []
    breaks: list[int] = []
    split_words = False
    for paragraph in paragraphs:
        room = None if budget is None else budget - len(lines)
        if room is not None and room < 0:
            break
        wrapped, split = _wrap(paragraph, font, width, room)
        split_words |= split
        if not wrapped:
            continue
        if lines:
            breaks.append(len(lines))
        lines.extend(wrapped)
    widest = max((font.getlength(line) for line in lines), default=0.0)
    height = 0 if not lines else (len(lines) - 1) * line_height + len(breaks) * gap + ascent + descent
    return FittedText(size, bold, tuple(lines), line_height, gap, tuple(breaks), math.ceil(widest), height, False,
                      split_words)


def _truncate(fitted: FittedText, width: int, height: int) -> FittedText:
    font = fitted.font
    ascent, descent = font.getmetrics()
    keep: list[str] = []
    used = ascent + descent
    for index, line in enumerate(fitted.lines):
        extra = 0 if index == 0 else fitted.line_height + (fitted.paragraph_gap if index in fitted.breaks else 0)
        if used + extra > height:
            break
        used += extra
        keep.append(line)
    if not keep or any(font.getlength(line) > width for line in keep):
        # Not even one line, or a box narrower than a single character: draw nothing rather than spill.
        return FittedText(fitted.size, fitted.bold, (), fitted.line_height, fitted.paragraph_gap, (), 0, 0, True)
    keep[-1] = _with_ellipsis(keep[-1], lambda line: font.getlength(line) > width)
    if font.getlength(keep[-1]) > width:  # not even the ellipsis fits
        keep.pop()
        if not keep:
            return FittedText(fitted.size, fitted.bold, (), fitted.line_height, fitted.paragraph_gap, (), 0, 0, True)
    breaks = tuple(b for b in fitted.breaks if b < len(keep))
    widest = max(font.getlength(line) for line in keep)
    return FittedText(fitted.size, fitted.bold, tuple(keep), fitted.line_height, fitted.paragraph_gap, breaks,
                      math.ceil(widest), used, True)


def fit_text(paragraphs: str | Sequence[str], width: int, height: int, *, max_size: int, min_size: int,
             bold: bool = False, spacing: float = 1.25) -> FittedText:
    """Wrap `paragraphs` into width x height at the largest font size that fits.

    Shrinks as far as `min_size` (the smallest size still legible on the card), preferring
    a smaller size to splitting a word; text that does not fit even then is cut at a line
    end with an ellipsis rather than drawn outside the box, and `truncated` says so.
    """
    if isinstance(paragraphs, str):
        paragraphs = [paragraphs]
    paragraphs = [p for p in (" ".join(str(p).split()) for p in paragraphs) if p]
    min_size = max(1, int(min_size))

    def fitting(size: int, allow_split: bool) -> FittedText | None:
        fitted = _layout(paragraphs, size, bold, width, spacing, height)
        fits = fitted.height <= height and fitted.width <= width and (allow_split or not fitted.split_words)
        return fitted if fits else None

    # First without splitting any word, and only if that fails, allowing splits.
    high = max(min_size, int(max_size))
    return (_largest(min_size, high, lambda size: fitting(size, False))
            or _largest(min_size, high, lambda size: fitting(size, True))
            or _truncate(_layout(paragraphs, min_size, bold, width, spacing, height), width, height))


def draw_fitted(draw: ImageDraw.ImageDraw, fitted: FittedText, x: int, y: int, fill: tuple[int, ...], *,
                align: str = "left", box_width: int = 0, stroke: int = 0,
                stroke_fill: tuple[int, ...] | None = None) -> list[tuple[int, int, int, int]]:
    """Draw the lines from (x, y), each centred in `box_width` with align="center"; returns where each went."""
    font = fitted.font
    boxes = []
    top = y
    for index, line in enumerate(fitted.lines):
        if index:
            top += fitted.line_height + (fitted.paragraph_gap if index in fitted.breaks else 0)
        left = x
        if align == "center":
            left = x + round((box_width - font.getlength(line)) / 2)
        draw.text((left, top), line, font=font, fill=fill, anchor="la", stroke_width=stroke, stroke_fill=stroke_fill)
        bbox = draw.textbbox((left, top), line, font=font, anchor="la")
        boxes.append(tuple(int(v) for v in bbox))
    return boxes  # type: ignore[return-value]


# ---------------------------------------------------------------- titles (thumbnails)

@dataclass(frozen=True)
class TitleFit:
    """The title at the size that fits: its lines, and the block they make (outline included)."""

    size: int
    lines: tuple[str, ...]
    stroke: int
    line_height: int
    width: int
    height: int
    truncated: bool = False

    @property
    def font(self) -> FontType:
        return load_font(self.size, bold=True)


def _stroke(size: int) -> int:
    return max(2, round(size / 14))


def _block_height(font: FontType, lines: int, line_height: int, stroke: int) -> int:
    if lines == 0:
        return 0
    ascent, descent = font.getmetrics()
    return (lines - 1) * line_height + ascent + descent + 2 * stroke


class _Measure:
    """Word widths at one font size, measured once: wrapping then costs additions, not font calls."""

    def __init__(self, size: int) -> None:
        self.font = load_font(size, bold=True)
        self.stroke = _stroke(size)
        self.line_height = round(size * 1.12)
        self.space = self.font.getlength(" ")
        self._widths: dict[str, float] = {}

    def word(self, word: str) -> float:
        width = self._widths.get(word)
        if width is None:
            width = self._widths[word] = self.font.getlength(word)
        return width

    def line(self, words: Sequence[str]) -> float:
        return sum(self.word(w) for w in words) + self.space * (len(words) - 1) + 2 * self.stroke

    def exact(self, line: str) -> float:
        return self.font.getlength(line) + 2 * self.stroke


def _greedy(words: Sequence[str], m: _Measure, width: float) -> list[list[str]] | None:
    """Word wrap by measured width; None when a single word is wider than the box."""
    lines: list[list[str]] = []
    used = 0.0
    for word in words:
        size = m.word(word)
        if size + 2 * m.stroke > width:
            return None
        if lines and used + m.space + size + 2 * m.stroke <= width:
            lines[-1].append(word)
            used += m.space + size
        else:
            lines.append([word])
            used = size
    return lines


def _balanced(words: Sequence[str], m: _Measure, width: float, count: int) -> list[list[str]]:
    """The same number of lines, but as even as they can be: the narrowest width that still needs `count`."""
    low, high = max(m.word(w) for w in words) + 2 * m.stroke, width
    best = _greedy(words, m, width) or []
    for _ in range(18):
        if high - low < 1:
            break
        middle = (low + high) / 2
        lines = _greedy(words, m, middle)
        if lines is not None and len(lines) <= count:
            best, high = lines, middle
        else:
            low = middle
    return best


def _fit_at(words: Sequence[str], size: int, max_width: int, max_height: int) -> TitleFit | None:
    m = _Measure(size)
    wrapped = _greedy(words, m, max_width)
    if wrapped is None or _block_height(m.font, len(wrapped), m.line_height, m.stroke) > max_height:
        return None
    if len(wrapped) > 1:
        wrapped = _balanced(words, m, max_width, len(wrapped))
    lines = [" ".join(line) for line in wrapped]
    widths = [m.exact(line) for line in lines]
    if max(widths, default=0.0) > max_width:  # kerning made a line wider than the sum of its words
        return None
    return TitleFit(size, tuple(lines), m.stroke, m.line_height, int(max(widths, default=0.0) + 0.999),
                    _block_height(m.font, len(lines), m.line_height, m.stroke))


def _split_wide_words(words: Sequence[str], m: _Measure, width: float) -> list[str]:
    """Words wider than the box broken between characters (summed widths, so a few calls per word)."""
    pieces: list[str] = []
    for word in words:
        if m.word(word) + 2 * m.stroke <= width:
            pieces.append(word)
            continue
        current, used = "", 2 * m.stroke
        for char in word:
            if current and used + m.word(char) > width:
                pieces.append(current)
                current, used = "", 2 * m.stroke
            current += char
            used += m.word(char)
        if current:
            pieces.append(current)
    # Kerning can make a piece a hair wider than its summed letters: cut it where it really fits.
    fixed: list[str] = []
    for piece in pieces:
        while len(piece) > 1 and m.exact(piece) > width:
            cut = len(piece) - 1
            while cut > 1 and m.exact(piece[:cut]) > width:
                cut -= 1
            fixed.append(piece[:cut])
            piece = piece[cut:]
        fixed.append(piece)
    return fixed


def fit_title(title: str, max_width: int, max_height: int, *, max_size: int, min_size: int) -> TitleFit:
    """The largest size (from max_size down to min_size) at which `title` fits the box, wrapped evenly
    (fitting is monotonic in size: bigger letters never need fewer lines)."""
    words = title.split()
    if not words:
        return TitleFit(min_size, (), _stroke(min_size), round(min_size * 1.12), 0, 0)
    best = _largest(min_size, max(min_size, max_size), lambda size: _fit_at(words, size, max_width, max_height))
    if best is not None:
        return best
    # Too long even at the smallest size: break over-wide words, keep the lines that fit, end on an ellipsis.
    m = _Measure(min_size)
    wrapped = _greedy(_split_wide_words(words, m, max_width), m, max_width) or []
    lines = [" ".join(line) for line in wrapped]
    room = 1
    while room < len(lines) and _block_height(m.font, room + 1, m.line_height, m.stroke) <= max_height:
        room += 1
    truncated = len(lines) > room
    lines = lines[:room]
    if truncated and lines:
        lines[-1] = _with_ellipsis(lines[-1], lambda line: m.exact(line) > max_width)
    widest = max((m.exact(line) for line in lines), default=0.0)
    return TitleFit(min_size, tuple(lines), m.stroke, m.line_height, int(widest + 0.999),
                    _block_height(m.font, len(lines), m.line_height, m.stroke), truncated)

