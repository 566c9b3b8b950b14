"""`input/assets.json`: gen.image's asset library, the one place every picture takes its identities from.

One JSON object with five tables, each entry keyed by its name (the seed's keyframe plan's
`assets.json`, with this project's names):

    {"version": 1, "note": "...",
     "styles":     {"main": {"art_style", "palette" [#hex...], "lens", "lighting", "mood"}},
     "characters": {"<speaker_tag>": {"name", "description", "gender", "voice", "expressions" [...],
                                      "poses" [pose keys], "objects" [object names], "scenes" [scene ids], "sheet"}},
     "locations":  {"loc_<n>": {"name", "description", "times" [dawn|morning|...], "lighting" {time: text},
                                "settings" [the story's own words], "characters" [...], "scenes" [...]}},
     "poses":      {"<pose_key>": {"description", "characters" [...], "scenes" [...]}},
     "objects":    {"<name>": {"description", "characters" [...], "locations" [...], "scenes" [...]}}}

`styles` holds exactly one style bible, `main`, for the whole video. A `sheet` is a path relative to
the pipeline folder (gen.image/): `output/sheets/<tag>.png` is made by 2.character.py, any other
path is the user's own sheet, used as it is. Scene lines name assets with the story's own markup:
`((tag))` a character, `{{loc_n}}` a location, `[[name]]` an object (common.formats.story);
`check_scene_names` turns a name the library lacks into one sentence naming the line.

Every field may be left out of a hand-written entry (its default: "", [], {} or null); an unknown
field, a wrong type or a bad key is an InputError naming the entry and what to write.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from common.formats._text import read_text, tag_problem
from common.formats.story import LOCATION_ID_RE, Scene
from common.run.errors import InputError
from common.state.atomic import atomic_write_text

ASSETS_FILE = "assets.json"
ASSETS_VERSION = 1
STYLE_KEY = "main"
KINDS = ("styles", "characters", "locations", "poses", "objects")
HEX_RE = re.compile(r"#[0-9a-fA-F]{6}\Z")
NOTE = ("Built by gen.image's 1.story.py from the story. Edit any field: your edits are kept on the next run, and only "
        "the pictures they feed are made again. Add an entry to add an asset; scene lines name them as ((tag)), "
        "{{loc_n}} and [[object]]. Delete the file (or run 1.story.py --force) to start afresh.")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a text (in double quotes)")
    return " ".join(value.split())


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value) or None


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError('a list of texts, e.g. ["calm", "worried"]')
    return tuple(dict.fromkeys(t for t in (" ".join(v.split()) for v in value) if t))


def _palette(value: Any) -> tuple[str, ...]:
    colours = _texts(value)
    bad = [c for c in colours if not HEX_RE.match(c)]
    if bad:
        raise TypeError(f'a list of #rrggbb colours ({bad[0]!r} is not one), e.g. ["#5b6770", "#d9d2c5"]')
    return tuple(c.lower() for c in colours)


def _text_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError('an object of texts, e.g. {"night": "moonlight through rain"}')
    return {str(k): " ".join(v.split()) for k, v in value.items()}


# kind -> field -> (reader, default)
FIELDS: dict[str, dict[str, tuple[Callable[[Any], Any], Any]]] = {
    "styles": {"art_style": (_text, ""), "palette": (_palette, ()), "lens": (_text, ""), "lighting": (_text, ""),
               "mood": (_text, "")},
    "characters": {"name": (_text, ""), "description": (_text, ""), "gender": (_optional_text, None),
                   "voice": (_optional_text, None), "expressions": (_texts, ()), "poses": (_texts, ()),
                   "objects": (_texts, ()), "scenes": (_texts, ()), "sheet": (_optional_text, None)},
    "locations": {"name": (_text, ""), "description": (_text, ""), "times": (_texts, ()), "lighting": (_text_map, {}),
                  "settings": (_texts, ()), "characters": (_texts, ()), "scenes": (_texts, ())},
    "poses": {"description": (_text, ""), "characters": (_texts, ()), "scenes": (_texts, ())},
    "objects": {"description": (_text, ""), "characters": (_texts, ()), "locations": (_texts, ()), "scenes": (_texts, ())},
}


@dataclass(frozen=True)
class StyleAsset:
    """The style bible: every picture of the video follows it."""

    key: str
    art_style: str = ""
    palette: tuple[str, ...] = ()
    lens: str = ""
    lighting: str = ""
    mood: str = ""

    def prompt_text(self) -> str:
        """The bible as one sentence for an image prompt."""
        parts = [f"art style {self.art_style}" if self.art_style else "",
                 f"palette {', '.join(self.palette)}" if self.palette else "",
                 f"lens {self.lens}" if self.lens else "", f"lighting {self.lighting}" if self.lighting else "",
                 f"mood {self.mood}" if self.mood else ""]
        return "; ".join(p for p in parts if p)


@dataclass(frozen=True)
class CharacterAsset:
    key: str  # the speaker tag
    name: str = ""
    description: str = ""  # identity: what every picture of them must keep
    gender: str | None = None
    voice: str | None = None  # gen.audio's voice stem (1.story.speakers.txt), for reference
    expressions: tuple[str, ...] = ()  # the ones the story uses, most frequent first: the sheet's panels
    poses: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()
    sheet: str | None = None  # pipeline-relative (or absolute) path of the character sheet


@dataclass(frozen=True)
class LocationAsset:
    key: str  # loc_<n>
    name: str = ""
    description: str = ""  # the place as a background, without people
    times: tuple[str, ...] = ()  # times of day the story shows it at (common.pictures.asset_facts.TIMES)
    lighting: Mapping[str, str] = field(default_factory=dict)  # time of day -> how it looks then
    settings: tuple[str, ...] = ()  # the scene lines' own time/weather words
    characters: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoseAsset:
    key: str
    description: str = ""
    characters: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectAsset:
    key: str
    description: str = ""
    characters: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    scenes: tuple[str, ...] = ()


CLASSES = {"styles": StyleAsset, "characters": CharacterAsset, "locations": LocationAsset, "poses": PoseAsset,
           "objects": ObjectAsset}


@dataclass(frozen=True)
class AssetLibrary:
    """The parsed library; `source` names the file in error messages."""

    styles: Mapping[str, StyleAsset]
    characters: Mapping[str, CharacterAsset]
    locations: Mapping[str, LocationAsset]
    poses: Mapping[str, PoseAsset]
    objects: Mapping[str, ObjectAsset]
    source: str = field(default=ASSETS_FILE, compare=False)

    @property
    def style(self) -> StyleAsset:
        return self.styles.get(STYLE_KEY) or StyleAsset(STYLE_KEY)

    def table(self, kind: str) -> Mapping[str, Any]:
        return getattr(self, kind)


# ---------------------------------------------------------------- reading

def _key_problem(kind: str, key: str) -> str | None:
    if kind == "styles":
        return None if key == STYLE_KEY else f'styles holds one style bible, "{STYLE_KEY}"; rename "{key}" to it or remove it'
    if kind == "locations":
        return None if LOCATION_ID_RE.match(key) else f'"{key}" is not a location id; write loc_<n>, e.g. loc_1'
    problem = tag_problem(key)
    return problem.replace("speaker tag", "name") if problem else None


def entry_from_json(kind: str, key: str, raw: Any, source: str) -> Any:
    """One entry from its JSON object, defaults filled in; InputError naming it when it is malformed."""
    where = f"{source}: {kind}.{key}"
    problem = _key_problem(kind, key)
    if problem:
        raise InputError(f"{where}: {problem}.")
    if not isinstance(raw, dict):
        raise InputError(f"{where} is not an object; write it as {{\"description\": \"...\"}} or remove it.")
    fields = FIELDS[kind]
    unknown = [name for name in raw if name not in fields]
    if unknown:
        raise InputError(f"{where} has an unknown field \"{unknown[0]}\"; the fields of {kind} are "
                         f"{', '.join(fields)}: rename or remove it.")
    values: dict[str, Any] = {}
    for name, (read, default) in fields.items():
        if name not in raw:
            values[name] = default
            continue
        try:
            values[name] = read(raw[name])
        except TypeError as exc:
            raise InputError(f"{where}.{name} must be {exc}; fix it, or remove the field to have it made again.") from None
    return CLASSES[kind](key, **values)


def entry_to_json(entry: Any) -> dict[str, Any]:
    kind = next(k for k, c in CLASSES.items() if isinstance(entry, c))
    out: dict[str, Any] = {}
    for name in FIELDS[kind]:
        value = getattr(entry, name)
        out[name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value
    return out


def document_tables(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """The five tables of a parsed JSON document, each checked to be an object of objects."""
    if not isinstance(raw, dict):
        raise InputError(f"{source} is not a JSON object; delete it to have it made again.")
    unknown = [k for k in raw if k not in (*KINDS, "version", "note")]
    if unknown:
        raise InputError(f"{source} has an unknown table \"{unknown[0]}\"; the tables are {', '.join(KINDS)}.")
    tables: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        table = raw.get(kind, {})
        if not isinstance(table, dict):
            raise InputError(f"{source}: {kind} must be an object keyed by name, e.g. {{\"lantern\": {{...}}}}.")
        tables[kind] = table
    return tables


def library_from_json(raw: Any, source: str) -> AssetLibrary:
    tables = document_tables(raw, source)
    parsed = {kind: {key: entry_from_json(kind, key, value, source) for key, value in tables[kind].items()}
              for kind in KINDS}
    return AssetLibrary(**parsed, source=source)


def load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source} line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                         "fix it, or delete the file to have it made again.") from None


def parse_assets(text: str, *, source: str) -> AssetLibrary:
    return library_from_json(load_json(text, source), source)


def read_assets(path: str | Path) -> AssetLibrary:
    return parse_assets(read_text(path), source=str(path))


# ---------------------------------------------------------------- writing

def document(library: AssetLibrary) -> dict[str, Any]:
    """The library as the JSON document written to assets.json."""
    doc: dict[str, Any] = {"version": ASSETS_VERSION, "note": NOTE}
    for kind in KINDS:
        doc[kind] = {key: entry_to_json(entry) for key, entry in library.table(kind).items()}
    return doc


def _dump(value: Any, depth: int) -> str:
    """JSON with objects one field a line and lists of texts on one line, so an entry reads (and diffs) at a glance."""
    if isinstance(value, Mapping) and value:
        pad = "  " * (depth + 1)
        rows = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_dump(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(rows) + "\n" + "  " * depth + "}"
    return json.dumps(value, ensure_ascii=False)


def format_document(doc: Mapping[str, Any]) -> str:
    return _dump(doc, 0) + "\n"


def write_document(path: Path, doc: Mapping[str, Any]) -> bool:
    """Write atomically, only when the text changes (an untouched file keeps its time); True when written."""
    text = format_document(doc)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
    return True


# ---------------------------------------------------------------- scene lines

def _missing(names: Iterable[str], table: Mapping[str, Any]) -> str | None:
    return next((name for name in names if name not in table), None)


def check_scene_names(library: AssetLibrary, scenes: Sequence[Scene], source: str | Path) -> None:
    """Every ((tag)), {{loc_n}} and [[object]] of the scene lines must be in the library."""
    for scene in scenes:
        where = f"{source} line {scene.line_no}" if scene.line_no else f"{source} ({scene.scene_id})"
        checks = ((scene.character_tags(), library.characters, "characters", "((", "))"),
                  ((scene.location_id,) if scene.location_id else (), library.locations, "locations", "{{", "}}"),
                  (scene.object_names(), library.objects, "objects", "[[", "]]"))
        for names, table, kind, opener, closer in checks:
            name = _missing(names, table)
            if name is not None:
                known = ", ".join(list(table)[:8]) + (", ..." if len(table) > 8 else "") or "none"
                raise InputError(f"{where}: {opener}{name}{closer} is not in {library.source}'s {kind} ({known}); "
                                 f"add it there, or fix the line.")
