"""The story (`1.story.txt`) and its scene lines (`3.scene.txt`), as the seed system writes them.

A story is one utterance per line, `[speaker_tag] text`, optionally followed by the scene
line that illustrates it:

    [male_detective_holmes] Observe, Watson, our visitor has been most careless.
    (scene_1.2) {{loc_1}}, {Cold Winter Morning}; ((male_detective_holmes)){Keen}, {Standing near window};

Variants found in the seed's own files, all accepted: the text wrapped as `"...";`
(gen.image; the quotes and `;` are not spoken), no space after the tag (`[tag]text`), a tag
alone on its line with the text on the next line, scene attributes as `{Key: value}` or
free `{Cold Winter Morning}`, `{{loc_k, description}}` on first mention and bare
`{{loc_k}}` later. `[[name]]` names a recurring object of the asset library (gen.image's
input/assets.json): after a character it is theirs (`((ada)){Tense}[[lantern]]`), before any
character it belongs to the scene. Speaker tags are lowercase ASCII (`[a-z0-9_-]`): they name files and
voice-map keys, and `Holmes.png` / `holmes.png` collide on macOS and Windows, so an
upper-case tag is an error that names the lowercase spelling.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable

from common.run.errors import InputError
from common.formats._text import (
    Layout, Parsed, TextFile, check_one_line, check_tag, line_error, parse_lines, reader, render, reuse_raw,
    snippet, split_lines, tag_problem, writer,
)

SCENE_ID_RE = re.compile(r"scene_(\d+)\.(\d+)\Z")
LOCATION_ID_RE = re.compile(r"loc_[a-z0-9_]+\Z")
_SPEAKER_LINE_RE = re.compile(r"\s*\[([^\[\]]*)\](.*)\Z", re.S)
_SCENE_HEAD_RE = re.compile(r"\s*\(([^()]*)\)")
_ATTRIBUTE_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9 /_&'-]*?)\s*:\s*(.*?)\s*\Z", re.S)
_QUOTED_RE = re.compile(r'"(.*)"(;?)\Z', re.S)
# Between the tag and the words: whitespace (a line break when the words are on the next
# line), and a colon LLMs like to add (`[tag]: text`) when whitespace or the end follows it.
_GAP_RE = re.compile(r"(?::(?=\s|\Z))?\s*")
# The bracketed groups of a scene line: opener, closer and the token each makes.
_GROUPS = (("{{", "}}", "loc"), ("((", "))", "char"), ("[[", "]]", "obj"), ("{", "}", "attr"))
_SCENE_CLASH = "{key} is already used on line {line}; give each scene its own id."

# Words that name a gender when they appear as a token of a speaker tag. The seed's rule is
# the male_/female_ prefix; its own stories also use `unknown_male_shadow`, so any token counts
# and the first one found wins.
_MALE_WORDS = frozenset({"male", "man", "boy"})
_FEMALE_WORDS = frozenset({"female", "woman", "girl", "lady"})


def gender_of(tag: str) -> str | None:
    """'m' or 'f' from the first gender word among the tag's `_` tokens, else None.

    `male_doctor_watson` -> 'm', `female_lady_unknown` -> 'f', `unknown_male_shadow` -> 'm',
    `narrator` -> None (the caller decides, e.g. with `--auto-gender`).
    """
    for token in tag.lower().split("_"):
        if token in _MALE_WORDS:
            return "m"
        if token in _FEMALE_WORDS:
            return "f"
    return None


@dataclass(frozen=True)
class Attribute:
    """One `{...}` group: `{Body Posture: sitting}` has a key, `{Cold Winter Morning}` has none."""

    key: str | None
    value: str

    def __post_init__(self) -> None:
        for part in (self.key or "", self.value):
            check_one_line(part, "a scene attribute")
            if "{" in part or "}" in part:
                raise ValueError(f"a scene attribute cannot contain braces: {part!r}")

    @property
    def text(self) -> str:
        return f"{self.key}: {self.value}" if self.key else self.value


def _attribute(content: str) -> Attribute:
    match = _ATTRIBUTE_RE.match(content)
    if match:
        return Attribute(match.group(1), match.group(2))
    return Attribute(None, content.strip())


def _attributes_text(attributes: Iterable[Attribute]) -> str:
    return ", ".join(a.text for a in attributes if a.text)


@dataclass(frozen=True)
class SceneCharacter:
    """`((tag)){...}{...}`: who is in the picture and how they look, stand and act."""

    tag: str
    attributes: tuple[Attribute, ...] = ()
    objects: tuple[str, ...] = ()  # `[[name]]`s after the character: what they hold or use

    def __post_init__(self) -> None:
        check_tag(self.tag)
        for name in self.objects:
            check_tag(name)

    @property
    def text(self) -> str:
        """The attributes as prose for a prompt: `Facial Expression: calm, Sitting`."""
        return _attributes_text(self.attributes)

    def attribute(self, key: str) -> str | None:
        """The value of `{key: value}`, matched without regard to case."""
        for attribute in self.attributes:
            if attribute.key is not None and attribute.key.lower() == key.lower():
                return attribute.value
        return None


@dataclass(frozen=True)
class Scene(Parsed):
    """One scene line. `raw` keeps the user's spelling; `format_scene_line` reuses it while valid."""

    scene_id: str
    location_id: str | None = None
    location_description: str | None = None
    setting: tuple[Attribute, ...] = ()
    characters: tuple[SceneCharacter, ...] = ()
    objects: tuple[str, ...] = ()  # `[[name]]`s before any character: in the scene, nobody's

    def __post_init__(self) -> None:
        for name in self.objects:
            check_tag(name)
        if not SCENE_ID_RE.match(self.scene_id):
            raise ValueError(f"not a scene id (scene_<part>.<n>): {self.scene_id!r}")
        if self.location_id is not None and not LOCATION_ID_RE.match(self.location_id):
            raise ValueError(f"not a location id (loc_<n>): {self.location_id!r}")
        if self.location_description is not None:
            check_one_line(self.location_description, "a location description")
            if "}}" in self.location_description or "{{" in self.location_description:
                raise ValueError(f"a location description cannot contain braces: {self.location_description!r}")

    @property
    def part(self) -> int:
        """The chapter this scene belongs to: the 1 of `scene_1.7`."""
        return int(SCENE_ID_RE.match(self.scene_id).group(1))  # type: ignore[union-attr]

    @property
    def index(self) -> int:
        """The scene's number within its part: the 7 of `scene_1.7`."""
        return int(SCENE_ID_RE.match(self.scene_id).group(2))  # type: ignore[union-attr]

    @property
    def setting_text(self) -> str:
        return _attributes_text(self.setting)

    def character_tags(self) -> tuple[str, ...]:
        return tuple(c.tag for c in self.characters)

    def object_names(self) -> tuple[str, ...]:
        """Every `[[name]]` of the line, the scene's and the characters', each once, in line order."""
        return _first_seen([*self.objects, *(name for c in self.characters for name in c.objects)])


@dataclass(frozen=True)
class Utterance(Parsed):
    """One spoken line. `text` is what is said: the seed's `"...";` wrapping is removed."""

    speaker: str
    text: str
    scene: Scene | None = None

    def __post_init__(self) -> None:
        check_tag(self.speaker)
        check_one_line(self.text, "an utterance's text")
        if not self.text.strip():
            raise ValueError(f"utterance of {self.speaker} has no text")


def _first_seen(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _locations(scenes: Iterable[Scene]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for scene in scenes:
        if scene.location_id is None:
            continue
        if found.get(scene.location_id) is None:
            found[scene.location_id] = scene.location_description
    return found


@dataclass(frozen=True)
class Story(TextFile):
    """A parsed story. `source` names the file in later error messages."""

    utterances: tuple[Utterance, ...]
    source: str = field(default="story", compare=False)

    def speakers(self) -> tuple[str, ...]:
        """Speaker tags in the order they first speak (the order voices are assigned in)."""
        return _first_seen(u.speaker for u in self.utterances)

    def characters(self) -> tuple[str, ...]:
        """Speakers and characters only seen in scenes, in order of first appearance."""
        def tags() -> Iterable[str]:
            for u in self.utterances:
                yield u.speaker
                if u.scene is not None:
                    yield from u.scene.character_tags()
        return _first_seen(tags())

    def scenes(self) -> tuple[Scene, ...]:
        return tuple(u.scene for u in self.utterances if u.scene is not None)

    def parts(self) -> tuple[int, ...]:
        """The chapter numbers found in scene ids, ascending; () when the story has no scenes."""
        return tuple(sorted({s.part for s in self.scenes()}))

    def locations(self) -> dict[str, str | None]:
        """Location id -> its first description (None if it is only ever mentioned bare)."""
        return _locations(self.scenes())


@dataclass(frozen=True)
class SceneList(TextFile):
    """`3.scene.txt`: scene lines without the utterances."""

    scenes: tuple[Scene, ...]
    source: str = field(default="scenes", compare=False)

    def get(self, scene_id: str) -> Scene | None:
        return next((s for s in self.scenes if s.scene_id == scene_id), None)

    def parts(self) -> tuple[int, ...]:
        return tuple(sorted({s.part for s in self.scenes}))

    def locations(self) -> dict[str, str | None]:
        return _locations(self.scenes)


# ---------------------------------------------------------------- scene lines

def _scene_tokens(body: str, source: str, line_no: int, offset: int) -> list[tuple[str, str, int]]:
    """Split a scene line's body into ('loc'|'char'|'attr', content, column) tokens."""
    tokens: list[tuple[str, str, int]] = []
    i, n = 0, len(body)

    def fail(at: int, what: str, why: str = "") -> InputError:
        where = f"{what} at column {offset + at + 1} of the scene line"
        return line_error(source, line_no, f"{where}{': ' + why if why else ''}; fix the line or remove it.")

    while i < n:
        char = body[i]
        group = next((g for g in _GROUPS if body.startswith(g[0], i)), None)
        if char.isspace() or char in ",;":
            i += 1
        elif group is not None:
            opener, closer, kind = group
            end = body.find(closer, i + len(opener))
            content = body[i + len(opener):end] if end >= 0 else ""
            if end < 0 or opener[0] in content or closer[0] in content:
                raise fail(i, f'unbalanced "{opener}"', f'every "{opener}" needs its "{closer}"')
            tokens.append((kind, content, offset + i + 1))
            i = end + len(closer)
        elif char in "})]":
            raise fail(i, f'unbalanced "{char}"', "it has no opening bracket")
        elif char == "(":
            raise fail(i, f'unexpected "{char}"', 'characters are written "((speaker_tag))"')
        elif char == "[":
            raise fail(i, f'unexpected "{char}"', 'objects are written "[[name]]"')
        else:
            stray = re.match(r"[^{}()\[\];,]*", body[i:]).group(0)  # type: ignore[union-attr]
            raise fail(i, f"text {snippet(stray, 30)}",
                       "scene lines hold only {{loc_<n>}}, {...}, ((speaker_tag)) and [[object]] groups")
    return tokens


def parse_scene_line(line: str, *, source: str = "scene line", line_no: int = 1) -> Scene:
    """One `(scene_<part>.<n>) {{loc_k[, description]}}, {...}; ((tag)){...}...;` line."""
    head = _SCENE_HEAD_RE.match(line)
    if not head:
        raise line_error(source, line_no, f'expected a scene line "(scene_<part>.<n>) ..." but found {snippet(line)}; fix the line or remove it.')
    scene_id = head.group(1).strip()
    if not SCENE_ID_RE.match(scene_id):
        raise line_error(source, line_no, f'"({scene_id})" is not a scene id; write it as "(scene_<part>.<n>)", e.g. "(scene_1.2)".')
    tokens = _scene_tokens(line[head.end():], source, line_no, head.end())
    location_id: str | None = None
    location_description: str | None = None
    setting: list[Attribute] = []
    objects: list[str] = []
    characters: list[tuple[str, list[Attribute], list[str]]] = []
    for position, (kind, content, column) in enumerate(tokens):
        if kind == "loc":
            if position != 0:
                raise line_error(source, line_no, f'the location "{{{{{content}}}}}" at column {column} must come first, right after "({scene_id})".')
            ident, _, description = content.partition(",")
            location_id, location_description = ident.strip(), description.strip() or None
            if not LOCATION_ID_RE.match(location_id):
                raise line_error(source, line_no, f'"{{{{{ident.strip()}}}}}" at column {column} is not a location; write "{{{{loc_<n>}}}}" or "{{{{loc_<n>, description}}}}".')
        elif kind == "char":
            problem = tag_problem(content.strip())
            if problem:
                raise line_error(source, line_no, f"((...)) at column {column}: {problem}.")
            characters.append((content.strip(), [], []))
        elif kind == "obj":
            name = content.strip()
            problem = tag_problem(name)
            if problem:
                problem = problem.replace("speaker tag", "object name").replace("e.g. male_doctor_watson", "e.g. brass_lantern")
                raise line_error(source, line_no, f"[[...]] at column {column}: {problem}.")
            (characters[-1][2] if characters else objects).append(name)
        elif characters:
            characters[-1][1].append(_attribute(content))
        else:
            setting.append(_attribute(content))
    return Scene(
        scene_id=scene_id, location_id=location_id, location_description=location_description,
        setting=tuple(setting), objects=tuple(objects),
        characters=tuple(SceneCharacter(tag, tuple(attrs), tuple(things)) for tag, attrs, things in characters),
        line_no=line_no, raw=line,
    )


def format_scene_line(scene: Scene) -> str:
    """The scene's original line while it still says the same, else the canonical spelling."""
    kept = reuse_raw(scene.raw, parse_scene_line, scene)
    if kept is not None:
        return kept
    head: list[str] = []
    if scene.location_id is not None:
        described = f", {scene.location_description}" if scene.location_description else ""
        head.append(f"{{{{{scene.location_id}{described}}}}}")
    head.extend(f"{{{a.text}}}" for a in scene.setting)
    head.extend(f"[[{name}]]" for name in scene.objects)
    segments = [", ".join(head)] if head else []
    for character in scene.characters:
        segments.append(f"(({character.tag}))" + "".join(f"{{{a.text}}}" for a in character.attributes)
                        + "".join(f"[[{name}]]" for name in character.objects))
    if not segments:
        return f"({scene.scene_id})"
    return f"({scene.scene_id}) " + "; ".join(segments) + ";"


# ---------------------------------------------------------------- utterances

@dataclass(frozen=True)
class _Speech:
    gap: str
    text: str
    quoted: bool
    terminator: str


def _speech(rest: str) -> _Speech:
    """What follows `[tag]`: the gap before the words, the words, and the seed's `"...";` wrapper.

    `[tag]: text` is read as `[tag] text`; a colon that starts the words (`[tag]:-)`) stays.

    A leading `"` and trailing `"` are a wrapper when the line ends `";` (gen.image's form)
    or when no other `"` is inside; otherwise (`"Hi," he said, "bye."`) they are spoken text.
    """
    gap = _GAP_RE.match(rest).group(0)  # type: ignore[union-attr]
    words = rest[len(gap):].rstrip()
    quoted = _QUOTED_RE.match(words)
    if quoted and (quoted.group(2) or '"' not in quoted.group(1)):
        return _Speech(gap, quoted.group(1).strip(), True, quoted.group(2))
    return _Speech(gap, words, False, "")


def _reparse_utterance(raw: str) -> tuple[str, str]:
    match = _SPEAKER_LINE_RE.match(raw)
    if not match:
        raise ValueError(raw)
    return match.group(1), _speech(match.group(2)).text


def _format_utterance(utterance: Utterance) -> str:
    kept = reuse_raw(utterance.raw, _reparse_utterance, (utterance.speaker, utterance.text))
    if kept is not None:
        return kept
    # An edited line keeps the look of the line it replaces (gap, `"...";` wrapper).
    style = _Speech(" ", "", False, "")
    if utterance.raw is not None and (match := _SPEAKER_LINE_RE.match(utterance.raw)):
        style = _speech(match.group(2))
    gap = style.gap
    if style.quoted and (style.terminator or '"' not in utterance.text):
        return f'[{utterance.speaker}]{gap}"{utterance.text}"{style.terminator}'
    return f"[{utterance.speaker}]{gap}{utterance.text}"


def _no_text_error(source: str, line_no: int, tag: str) -> InputError:
    return line_error(source, line_no, f'"[{tag}]" has no text; write the words after the tag on the same line, or remove the line.')


def parse_story(text: str, *, source: str) -> Story:
    """Parse a story; any line that is not an utterance, a scene line or blank is an error."""
    lines, layout = split_lines(text)
    extras: list[tuple[int, str]] = []
    utterances: list[Utterance] = []
    scene_lines: dict[str, int] = {}
    items = 0
    pending: tuple[int, str, str] | None = None  # a "[tag]" line whose words are on the next line
    for index, line in enumerate(lines):
        line_no = index + 1
        stripped = line.strip()
        if pending is not None:
            pending_no, tag, tag_line = pending
            pending = None
            if not stripped or stripped.startswith(("[", "(")):
                raise _no_text_error(source, pending_no, tag)
            raw = f"{tag_line}\n{line}"
            speech = _speech(_SPEAKER_LINE_RE.match(raw).group(2))  # type: ignore[union-attr]
            utterances.append(Utterance(tag, speech.text, line_no=pending_no, raw=raw))
            items += 1
            continue
        if not stripped:
            extras.append((items, line))
        elif stripped.startswith("["):
            match = _SPEAKER_LINE_RE.match(line)
            if not match:
                raise line_error(source, line_no, f'expected "[speaker_tag] text" but found {snippet(line)} (unbalanced "["); fix the line or remove it.')
            tag = match.group(1)
            problem = tag_problem(tag)
            if problem:
                raise line_error(source, line_no, f"{problem}.")
            speech = _speech(match.group(2))
            if not speech.text:
                if speech.quoted:
                    raise _no_text_error(source, line_no, tag)
                pending = (line_no, tag, line)
                continue
            utterances.append(Utterance(tag, speech.text, line_no=line_no, raw=line))
            items += 1
        elif re.match(r"\(\s*scene", stripped):
            if not utterances:
                raise line_error(source, line_no, 'a scene line comes before any utterance; put each "(scene_<part>.<n>) ..." line right after the "[speaker_tag] text" line it illustrates.')
            last = utterances[-1]
            if last.scene is not None:
                raise line_error(source, line_no, f"a second scene line for the utterance on line {last.line_no}; each utterance has at most one, so merge or remove one.")
            scene = parse_scene_line(line, source=source, line_no=line_no)
            if scene.scene_id in scene_lines:
                clash = _SCENE_CLASH.format(key=scene.scene_id, line=scene_lines[scene.scene_id])
                raise line_error(source, line_no, clash)
            scene_lines[scene.scene_id] = line_no
            utterances[-1] = replace(last, scene=scene)
            items += 1
        elif stripped.startswith(("(", "{", "<")):
            raise line_error(source, line_no, f'unknown markup {snippet(line)}: expected "[speaker_tag] text" or a scene line "(scene_<part>.<n>) ..."; fix the line or remove it.')
        else:
            raise line_error(source, line_no, f'expected "[speaker_tag] text" but found {snippet(line)}; fix the line or remove it.')
    if pending is not None:
        raise _no_text_error(source, pending[0], pending[1])
    if not utterances:
        raise InputError(f'{source}: the story is empty (no "[speaker_tag] text" lines); write one utterance per line, e.g. "[male_narrator] It was a dark night.".')
    return Story(tuple(utterances), source=source, layout=replace(layout, extras=tuple(extras)))


def format_story(story: Story) -> str:
    """The story as text; a parsed, unchanged story comes back byte for byte."""
    chunks: list[str] = []
    starts: list[int] = []
    for utterance in story.utterances:
        starts.append(len(chunks))
        chunks.append(_format_utterance(utterance))
        if utterance.scene is not None:
            chunks.append(format_scene_line(utterance.scene))
    layout = story.layout
    if layout is None:
        # New stories with scenes get the seed's look: a blank line between blocks.
        spaced = any(u.scene is not None for u in story.utterances)
        layout = Layout(extras=tuple((k, "") for k in starts[1:]) if spaced else ())
    return render(chunks, layout)


read_story = reader(parse_story)
write_story = writer(format_story)


# ---------------------------------------------------------------- 3.scene.txt

def _scene_entry(line: str, source: str, line_no: int) -> Scene:
    if not line.lstrip().startswith("("):
        raise line_error(source, line_no, f'expected a scene line "(scene_<part>.<n>) ..." but found '
                                          f'{snippet(line)}; fix the line or remove it.')
    return parse_scene_line(line, source=source, line_no=line_no)


def parse_scenes(text: str, *, source: str) -> SceneList:
    """`3.scene.txt`: one scene line per line; blank lines are ignored."""
    scenes, layout = parse_lines(text, source, _scene_entry, key=lambda s: s.scene_id, clash=_SCENE_CLASH)
    return SceneList(scenes, source=source, layout=layout)


def format_scenes(scenes: SceneList) -> str:
    return render([format_scene_line(s) for s in scenes.scenes], scenes.layout)


read_scenes = reader(parse_scenes)
write_scenes = writer(format_scenes)
