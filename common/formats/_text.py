"""Line plumbing shared by every story-file format: decoding, layout, errors, tag rules.

Every format keeps the lines that carry no value (blank lines, `#` comments), the line
ending, the final newline and a BOM in a `Layout`, so a file we parse and write back is
byte-for-byte the file we read. Each parsed line also keeps its original spelling (`raw`);
a writer reuses it only while it still parses to the same value, so an edited value is
written in the canonical spelling and an untouched one is left exactly as the user wrote it.
"""
from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from common.state.atomic import atomic_write_text
from common.run.errors import InputError

T = TypeVar("T")

# Speaker tags name output files (`output/characters/<tag>.png`) and voice-map keys, so
# they stay lowercase ASCII: upper case would collide on case-insensitive file systems.
TAG_PATTERN = r"[a-z0-9][a-z0-9_-]*"
_TAG_RE = re.compile(rf"{TAG_PATTERN}\Z")


@dataclass(frozen=True)
class Layout:
    """How a file was laid out around its values: enough to write it back unchanged.

    `extras` are the lines that carry no value, each with the index of the value line it
    came before (an index equal to the number of values means "at the end").
    """

    newline: str = "\n"
    final_newline: bool = True
    bom: bool = False
    extras: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class TextFile:
    """A file's values; `layout` (set when parsed) writes them back as the file that was read."""

    layout: Layout | None = field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class Parsed:
    """Where a value was read: its 1-based line and the text written there (`raw`), which a writer
    reuses while it still says the same. Neither takes part in comparing values."""

    line_no: int | None = field(default=None, compare=False, kw_only=True)
    raw: str | None = field(default=None, compare=False, repr=False, kw_only=True)


def split_lines(text: str) -> tuple[list[str], Layout]:
    """Split on '\\n' only (not str.splitlines, which also breaks on U+2028 and friends
    that are legal inside a line of text); a file whose every line ends in CRLF keeps CRLF.
    Mixed line endings are read fine but written back with '\\n'."""
    bom = text.startswith("\ufeff")
    if bom:
        text = text[1:]
    crlf, lf = text.count("\r\n"), text.count("\n")
    newline = "\r\n" if crlf and crlf == lf else "\n"
    lines = text.split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines, Layout(newline=newline, final_newline=final_newline, bom=bom)


def parse_lines(
    text: str, source: str, parse_line: Callable[[str, str, int], T], *,
    skip: Callable[[str], bool] = lambda line: not line.strip(),
    key: Callable[[T], str] | None = None, clash: str = "",
) -> tuple[tuple[T, ...], Layout]:
    """The one-value-per-line loop: `skip`ped lines go to the layout, a `key` seen twice is an
    error worded by `clash` (with {key} and {line}, the line it was first seen on)."""
    lines, layout = split_lines(text)
    extras: list[tuple[int, str]] = []
    items: list[T] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(lines, start=1):
        if skip(line):
            extras.append((len(items), line))
            continue
        item = parse_line(line, source, line_no)
        if key is not None:
            if key(item) in seen:
                raise line_error(source, line_no, clash.format(key=key(item), line=seen[key(item)]))
            seen[key(item)] = line_no
        items.append(item)
    return tuple(items), replace(layout, extras=tuple(extras))


def render(chunks: Sequence[str], layout: Layout | None, separator: Callable[[int], str | None] | None = None) -> str:
    """Join rendered values (a chunk may span lines, joined by '\\n') with the extra lines.

    `separator(k)`, when given, returns a line that must stand before chunk k if no extra
    line was recorded there (SRT needs a blank line between cues, even for added ones).
    """
    layout = layout or Layout()
    before: dict[int, list[str]] = defaultdict(list)
    for index, line in layout.extras:
        before[min(index, len(chunks))].append(line)
    out: list[str] = []
    for k, chunk in enumerate(chunks):
        if not before[k] and separator is not None:
            line = separator(k)
            if line is not None:
                out.append(line)
        out.extend(before[k])
        out.extend(chunk.split("\n"))
    out.extend(before[len(chunks)])
    if not out:
        return "\ufeff" if layout.bom else ""
    text = layout.newline.join(out) + (layout.newline if layout.final_newline else "")
    return ("\ufeff" if layout.bom else "") + text


def reuse_raw(raw: str | None, reparse: Callable[[str], T], value: T) -> str | None:
    """The original spelling of a value, if it still says exactly that value."""
    if raw is None:
        return None
    try:
        return raw if reparse(raw) == value else None
    except (InputError, ValueError):
        return None


def line_error(source: str, line_no: int, message: str) -> InputError:
    return InputError(f"{source} line {line_no}: {message}")


def snippet(text: str, limit: int = 50) -> str:
    """A quoted, shortened copy of offending input for an error message."""
    text = text.strip()
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f'"{text}"'


def tag_problem(tag: str) -> str | None:
    """Why `tag` is not a usable speaker tag, or None when it is."""
    if _TAG_RE.match(tag):
        return None
    if _TAG_RE.match(tag.lower()):
        return f'speaker tags are lowercase: write "{tag.lower()}" instead of "{tag}"'
    if not tag:
        return "the speaker tag is empty"
    return (
        f'"{tag}" is not a speaker tag; use lowercase letters, digits and "_" only, '
        "e.g. male_doctor_watson"
    )


def check_tag(tag: str) -> str:
    """For constructors: a bad tag built in code is our bug, not the user's."""
    problem = tag_problem(tag)
    if problem:
        raise ValueError(problem)
    return tag


def check_time(value: float, what: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, not {value!r}")


def check_one_line(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} must be a single line: {text!r}")
    return text


def read_text(path: str | os.PathLike[str]) -> str:
    """A file's text; a missing, unreadable or non-UTF-8 file is the user's to fix."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} not found; create it or check the path.") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file; point to the file inside it.") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}; check its permissions.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line_no = data.count(b"\n", 0, exc.start) + 1
        raise line_error(
            str(path), line_no,
            f"byte 0x{data[exc.start]:02x} at byte {exc.start - line_start + 1} of the line is not UTF-8; "
            "save the file as UTF-8 and run again.",
        ) from None


def reader(parse: Callable[..., T]) -> Callable[..., T]:
    """`read_x(path, **options)`: the file's text through `parse`, errors naming the file."""
    def read(path: str | os.PathLike[str], **options: Any) -> T:
        return parse(read_text(path), source=str(path), **options)
    return read


def writer(format_: Callable[..., str]) -> Callable[..., Path]:
    """`write_x(path, value, ...)`: `format_(value, ...)` written atomically."""
    def write(path: str | os.PathLike[str], value: Any, *args: Any, **options: Any) -> Path:
        return atomic_write_text(path, format_(value, *args, **options))
    return write
