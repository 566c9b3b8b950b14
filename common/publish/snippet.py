"""What a video says about itself on YouTube, checked against YouTube's limits just before sending.

The rules themselves (title <= 100 characters without `<` `>`, description <= 5000 UTF-8
bytes without `<` `>`, tags <= 500 characters counted YouTube's way, the chapter rules) live
in `common.publish.metadata`, where 9.media.py writes by them. Step 12 checks again because the
files may have been edited by hand since: a request YouTube rejects at 3 a.m. costs a night,
so every failure here names the file to fix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from common.run.errors import ConfigError, InputError
from common.publish.metadata import (
    MAX_TAGS_CHARS, MAX_TITLE_CHARS, chapter_problems, description_problems, parse_description_chapters,
    parse_tags, tags_length, title_problem,
)

PRIVACY = ("private", "unlisted", "public")
SHORTS_HASHTAG = "#Shorts"


def validate_title(title: str, source: str) -> str:
    """The title, stripped, or InputError naming `source` and the rule it breaks."""
    problem = title_problem(title)
    if problem:
        raise InputError(f"the video title from {source} cannot be used: {problem}; fix it and run again.")
    return title.strip()


def validate_description(text: str, source: str) -> str:
    problems = description_problems(text)
    if problems:
        raise InputError(f"the description from {source} cannot be used: {'; '.join(problems)}; "
                         "shorten or fix it (or rerun 9.media.py --force) and run again.")
    return text


def validate_tags(tags: Sequence[str], source: str) -> list[str]:
    """Tags YouTube accepts; duplicates (ignoring case) are dropped since YouTube keeps one anyway."""
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        tag = " ".join(tag.split())
        if not tag or tag.casefold() in seen:
            continue
        if re.search(r"[<>\"]", tag):
            raise InputError(f"the tag {tag!r} in {source} contains < > or \", which YouTube rejects; remove them.")
        seen.add(tag.casefold())
        out.append(tag)
    length = tags_length(out)
    if length > MAX_TAGS_CHARS:
        raise InputError(
            f"the tags in {source} count {length} characters the way YouTube counts them (commas between tags, "
            f"+2 for a tag with a space), YouTube allows {MAX_TAGS_CHARS}; remove some tags."
        )
    return out


def _read(path: Path, what: str, hint: str) -> str:
    if not path.is_file():
        raise InputError(f"{what} {path} is missing; {hint}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{what} {path} is not UTF-8 text; save it as UTF-8.") from None


def read_title(path: Path) -> str:
    text = _read(path, "the title file", "run 1.character.py or 9.media.py, or write the title there.")
    return validate_title(text, str(path))


def read_description(path: Path) -> str:
    text = _read(path, "the description file", "run 9.media.py, or write the description there.").strip()
    return validate_description(text, str(path))


def read_tags(path: Path) -> list[str]:
    text = _read(path, "the tags file", "run 9.media.py, or write one tag per line there.")
    return validate_tags(parse_tags(text), str(path))


def chapters_note(description: str, duration: float) -> str:
    """What YouTube will make of the description's chapter list, for the log and the manifest.

    Not an error: a story too short for three 10-second chapters has none, by design.
    """
    marks = parse_description_chapters(description)
    if not marks:
        return "the description lists no chapters"
    problems = chapter_problems(marks, duration)
    if problems:
        return f"warning: YouTube will not show the description's chapters: {'; '.join(problems)} (rerun 9.media.py)"
    return f"the description lists {len(marks)} chapters"


def parse_publish_at(text: str, now: datetime | None = None) -> datetime:
    """`--publish-at` as an aware UTC time; a time without an offset is taken as local time."""
    now = now or datetime.now(timezone.utc)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--publish-at {text!r} is not an ISO time; write it like 2025-06-01T18:00:00+02:00 or 2025-06-01T16:00Z."
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # the machine's local zone
    when = when.astimezone(timezone.utc)
    if when <= now + timedelta(minutes=1):
        raise ConfigError(f"--publish-at {text} is not in the future; give a time to come, or leave it out.")
    return when


def short_title(main_title: str, number: int) -> str:
    """A Short's title: the main title, its part number and #Shorts, the title cut to fit 100 characters."""
    suffix = f" (Part {number}) {SHORTS_HASHTAG}"
    room = MAX_TITLE_CHARS - len(suffix)
    head = main_title if len(main_title) <= room else main_title[: room - 1].rstrip() + "\u2026"
    return head + suffix


def short_description(main_title: str, video_url: str) -> str:
    """A Short links the full video: that is what turns a Short's viewers into the video's."""
    return f"From \u201c{main_title}\u201d. Watch the full story: {video_url}\n\n{SHORTS_HASHTAG}"


def video_url(video_id: str) -> str:
    return f"https://youtu.be/{video_id}"


@dataclass(frozen=True)
class VideoMetadata:
    """Everything sent with videos.insert besides the file; `body()` is the request body."""

    title: str
    description: str
    tags: tuple[str, ...]
    category_id: str
    language: str
    privacy: str
    publish_at: datetime | None = None
    made_for_kids: bool = False
    synthetic_media: bool = True

    def __post_init__(self) -> None:
        if self.privacy not in PRIVACY:
            raise ConfigError(f"YOUTUBE_PRIVACY_STATUS is {self.privacy!r}; use one of {', '.join(PRIVACY)}.")
        if not str(self.category_id).isdigit():
            raise ConfigError(f"YOUTUBE_CATEGORY_ID is {self.category_id!r}; use a numeric YouTube category id such as 22.")
        if self.language and not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", self.language):
            raise ConfigError(f"YOUTUBE_DEFAULT_LANGUAGE is {self.language!r}; use a language code such as en or en-GB.")

    def body(self) -> dict[str, Any]:
        snippet: dict[str, Any] = {
            "title": self.title, "description": self.description, "tags": list(self.tags),
            "categoryId": str(self.category_id),
        }
        if self.language:
            snippet["defaultLanguage"] = self.language
            snippet["defaultAudioLanguage"] = self.language
        # YouTube publishes a scheduled video itself; until then it must be private.
        status: dict[str, Any] = {
            "privacyStatus": "private" if self.publish_at else self.privacy,
            "selfDeclaredMadeForKids": self.made_for_kids,
            "containsSyntheticMedia": self.synthetic_media,
        }
        if self.publish_at:
            status["publishAt"] = self.publish_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"snippet": snippet, "status": status}
