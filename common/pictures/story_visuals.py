"""What gen.image's pictures must show, gathered from the story's own markup.

gen.image's 1.story.py describes every character and location once, and writes one scene
line per utterance. The story's scene lines, when it has them, are the truth: who is in a
picture and where it is come from them, and a text engine only adds the looks. This module
turns the markup into briefs (what is known about a character, a location, an utterance
that needs a scene); the offline engine's wording (common.pictures.looks_text) only rearranges
what the briefs say.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from common.run.errors import InputError
from common.formats.story import Scene, SceneCharacter, Story, Utterance, gender_of, parse_scene_line
from common.formats.sections import chapter_sections

HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}\b")
_GENDER_WORDS = frozenset({"male", "female", "man", "woman", "boy", "girl"})
_MOST = 3  # how many expressions / poses / actions a description keeps


def is_narrator(tag: str) -> bool:
    """A voice over the pictures, not a person in them."""
    return "narrator" in tag.lower().split("_")


def location_sort_key(location_id: str) -> tuple[int, int, str]:
    """loc_2 before loc_10 (the seed sorts location files by id)."""
    tail = location_id.removeprefix("loc_")
    return (0, int(tail), "") if tail.isdigit() else (1, 0, tail)


# ---------------------------------------------------------------- characters

@dataclass(frozen=True)
class Appearance:
    """One scene a character is in: the scene's setting and their own attributes there."""

    scene_id: str
    location_id: str | None
    setting: str
    expression: tuple[str, ...] = ()
    pose: tuple[str, ...] = ()
    action: tuple[str, ...] = ()
    text: str = ""  # every attribute, for a prompt


def _classify(character: SceneCharacter) -> tuple[list[str], list[str], list[str]]:
    """(expressions, poses, actions) of one ((tag)){...}: by key when the line has keys
    (`{Facial Expression: calm}`), else by position, the seed's `{expression}, {pose}{action}`."""
    expression: list[str] = []
    pose: list[str] = []
    action: list[str] = []
    positional = 0
    for attribute in character.attributes:
        value = attribute.value.strip()
        if not value:
            continue
        if attribute.key is None:
            (expression if positional == 0 else pose if positional == 1 else action).append(value)
            positional += 1
            continue
        key = attribute.key.lower()
        if "expression" in key:
            expression.append(value)
        elif "posture" in key or key in ("pose", "body pose"):
            pose.append(value)
        elif "action" in key:
            action.append(value)
    return expression, pose, action


@dataclass(frozen=True)
class CharacterBrief:
    """What the story says about one character; `name` is the part of the tag the story uses
    as a proper name (Watson), `role` the rest (doctor)."""

    tag: str
    gender: str | None  # "m", "f" or None
    name: str | None
    role: str | None
    appearances: tuple[Appearance, ...]
    lines: tuple[str, ...]  # what they say, the first few utterances
    summary: str = ""  # the story's summary (9.summary.txt), for an LLM's context

    @property
    def display_name(self) -> str:
        """How prose names them: `Doctor Watson`, `Ada, the keeper niece,`, `Nervous Mother`."""
        if self.name and self.role:
            return f"{self.role.title()} {self.name}" if len(self.role.split()) == 1 else f"{self.name}, the {self.role},"
        if self.name:
            return self.name
        if self.role:
            return self.role.title()
        return self.tag.replace("_", " ").title()

    @property
    def gender_word(self) -> str | None:
        return {"m": "male", "f": "female"}.get(self.gender or "")

    def most(self, field: str, limit: int | None = _MOST) -> tuple[str, ...]:
        """The expressions, poses or actions seen most often, first-seen order breaking ties (all with limit None)."""
        counts: Counter[str] = Counter()
        first: dict[str, int] = {}
        for appearance in self.appearances:
            for value in getattr(appearance, field):
                low = value.lower()
                counts[low] += 1
                first.setdefault(low, len(first))
        return tuple(sorted(counts, key=lambda v: (-counts[v], first[v]))[:limit])

    def identity(self) -> list[object]:
        return [self.tag, self.gender, self.name, self.role, [a.text for a in self.appearances],
                [a.setting for a in self.appearances], list(self.lines), self.summary]


def _proper_words(story: Story) -> set[str]:
    """Capitalised words used inside sentences (not only at their start): names, places."""
    found: set[str] = set()
    for utterance in story.utterances:
        for match in re.finditer(r"(?<=[a-z,;’'] )([A-Z][a-z]+)", utterance.text):
            found.add(match.group(1))
    return found


def split_tag(tag: str, story: Story) -> tuple[str | None, str | None]:
    """(name, role) from a tag: `male_doctor_watson` -> ("Watson", "doctor").

    A tag word is part of the name when the story writes it capitalised inside a sentence;
    a title right before the name (Mrs Hudson) joins it when the story writes them together.
    """
    words = [w for w in tag.lower().split("_") if w and w not in _GENDER_WORDS]
    proper = _proper_words(story)
    is_name = [w.capitalize() in proper for w in words]
    text = " ".join(u.text for u in story.utterances)
    for index in range(len(words) - 2, -1, -1):
        if not is_name[index] and is_name[index + 1]:
            title, name = words[index].capitalize(), words[index + 1].capitalize()
            if re.search(rf"\b{re.escape(title)}\.? {re.escape(name)}\b", text):
                is_name[index] = True
    name = " ".join(w.capitalize() for w, n in zip(words, is_name) if n) or None
    role = " ".join(w for w, n in zip(words, is_name) if not n) or None
    return name, role


def _appearance(scene: Scene, character: SceneCharacter) -> Appearance:
    expression, pose, action = _classify(character)
    return Appearance(scene.scene_id, scene.location_id, scene.setting_text, tuple(expression), tuple(pose),
                      tuple(action), character.text)


def character_tags(story: Story, scenes: Sequence[Scene], *, speakers: bool = False) -> tuple[str, ...]:
    """Who appears in pictures: the ((tag))s of the scene lines, else every speaker but a narrator
    (`speakers`: both, the scene lines' first: every character of the story, for the asset library)."""
    tags = dict.fromkeys(tag for scene in scenes for tag in scene.character_tags())
    if tags and not speakers:
        return tuple(tags)
    return tuple(dict.fromkeys([*tags, *(tag for tag in story.speakers() if not is_narrator(tag))]))


def character_briefs(story: Story, scenes: Sequence[Scene], summary: str = "", max_lines: int = 6, *,
                     speakers: bool = False) -> list[CharacterBrief]:
    briefs: list[CharacterBrief] = []
    for tag in character_tags(story, scenes, speakers=speakers):
        appearances = tuple(_appearance(scene, c) for scene in scenes for c in scene.characters if c.tag == tag)
        lines = tuple(u.text[:240] for u in story.utterances if u.speaker == tag)[:max_lines]
        name, role = split_tag(tag, story)
        briefs.append(CharacterBrief(tag, gender_of(tag), name, role, appearances, lines, summary))
    return briefs


# ---------------------------------------------------------------- locations

@dataclass(frozen=True)
class LocationBrief:
    """A location: its first description (None if only ever named bare) and what happens there."""

    location_id: str
    description: str | None
    settings: tuple[str, ...]  # distinct times / weather of its scenes, first seen first
    characters: tuple[str, ...]
    scene_count: int
    summary: str = ""

    @property
    def colours(self) -> tuple[str, ...]:
        """Hex colours the story itself gave this place (`colours #5b6770 #d9d2c5`)."""
        return tuple(dict.fromkeys(c.lower() for c in HEX_COLOUR.findall(self.description or "")))

    def identity(self) -> list[object]:
        return [self.location_id, self.description, list(self.settings), list(self.characters), self.summary]


def location_briefs(scenes: Sequence[Scene], summary: str = "") -> list[LocationBrief]:
    """One brief per location id the scene lines use, sorted like the seed's files (loc_1, loc_2, ...)."""
    described: dict[str, str | None] = {}
    settings: dict[str, dict[str, None]] = {}
    people: dict[str, dict[str, None]] = {}
    counts: Counter[str] = Counter()
    for scene in scenes:
        loc = scene.location_id
        if loc is None:
            continue
        if described.get(loc) is None:
            described[loc] = scene.location_description
        counts[loc] += 1
        setting = " / ".join(a.value for a in scene.setting if a.value)
        if setting:
            settings.setdefault(loc, {})[setting] = None
        for tag in scene.character_tags():
            people.setdefault(loc, {})[tag] = None
    return [LocationBrief(loc, described[loc], tuple(settings.get(loc, {}))[:_MOST], tuple(people.get(loc, {})),
                          counts[loc], summary)
            for loc in sorted(described, key=location_sort_key)]


_DESCRIBED_LOCATION = re.compile(r"\{\{\s*(loc_[a-z0-9_]+)\s*,[^{}]*\}\}")


def bare_location(scene: Scene) -> Scene:
    """The scene with `{{loc_k, description}}` reduced to `{{loc_k}}` (as the seed's 3.scene.txt and
    2.timeline.script.txt have them), the rest of the line kept as written when possible."""
    bare = replace(scene, location_description=None, raw=None)
    if scene.raw is not None:
        raw = _DESCRIBED_LOCATION.sub(r"{{\1}}", scene.raw, count=1)
        try:
            if parse_scene_line(raw) == bare:
                return replace(bare, raw=raw)
        except InputError:
            pass
    return bare


# ---------------------------------------------------------------- scene lines for a story without them

@dataclass(frozen=True)
class SceneRequest:
    """One utterance that needs a scene line, with what a writer needs to place it."""

    scene_id: str
    speaker: str
    text: str
    previous_text: str | None
    next_text: str | None
    characters: tuple[str, ...]  # the tags a picture may show
    locations: tuple[tuple[str, str], ...]  # known (id, description), in order of introduction
    previous_location: str | None

    @property
    def narrator(self) -> bool:
        return is_narrator(self.speaker)

    def next_location_id(self) -> str:
        numbers = [int(loc[4:]) for loc, _ in self.locations if loc[4:].isdigit()]
        return f"loc_{max(numbers, default=0) + 1}"

    def identity(self) -> list[object]:
        return [self.scene_id, self.speaker, self.text, self.previous_text, self.next_text, list(self.characters),
                [list(pair) for pair in self.locations], self.previous_location]


def planned_scene_ids(story: Story) -> list[str]:
    """`scene_<part>.<n>` for every utterance: parts are the chapters 1.character.py writes
    (common.formats.sections), so scene parts and chapters agree."""
    ids: list[str] = []
    for section in chapter_sections(story):
        ids.extend(f"scene_{section.index}.{n}" for n in range(1, len(section.utterances) + 1))
    return ids


def scene_request(story: Story, index: int, scene_id: str, known: Mapping[str, str],
                  previous_location: str | None) -> SceneRequest:
    utterances: Sequence[Utterance] = story.utterances
    here = utterances[index]
    return SceneRequest(
        scene_id=scene_id, speaker=here.speaker, text=here.text,
        previous_text=utterances[index - 1].text if index > 0 else None,
        next_text=utterances[index + 1].text if index + 1 < len(utterances) else None,
        characters=character_tags(story, ()), locations=tuple(known.items()), previous_location=previous_location,
    )


# ---------------------------------------------------------------- offline wording (facts only)

def clean_value(value: str) -> str:
    """A value inside `Key: (...)` / `[...]` markup: no brackets, colons or commas of its own."""
    return " ".join(re.sub(r"[()\[\]{}:,;]", " ", value).split())


def _title(key: str) -> str:
    return " ".join(word.capitalize() for word in key.split("_"))


def format_attributes(value: Mapping[str, Any]) -> str:
    """`{"face": {"head_shape": "oval"}}` -> `Face: (Head Shape: oval)`; lists of objects become `[(...), (...)]`."""
    parts: list[str] = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            inner = format_attributes(item)
            if inner:
                parts.append(f"{_title(key)}: ({inner})")
        elif isinstance(item, list):
            rendered = [f"({format_attributes(v)})" if isinstance(v, Mapping) else clean_value(str(v)) for v in item]
            rendered = [r for r in rendered if r and r != "()"]
            if rendered:
                parts.append(f"{_title(key)}: [{', '.join(rendered)}]")
        elif item is not None and clean_value(str(item)):
            parts.append(f"{_title(key)}: {clean_value(str(item))}")
    return ", ".join(parts)


def offline_scene_line(request: SceneRequest) -> str:
    """Only what the markup says: who speaks. A narrator's line shows nobody in particular."""
    if request.narrator or request.speaker not in request.characters:
        return f"({request.scene_id}) {{Narration}};"
    return f"({request.scene_id}) (({request.speaker})){{Primary Action: speaking}};"

