"""The asset library, `gen.image/input/assets.json`: built from the story by 1.story.py, read by every later step.

Data model: common.formats.assets (`AssetLibrary` of `StyleAsset`, `CharacterAsset`, `LocationAsset`,
`PoseAsset`, `ObjectAsset`, keyed by name; `library.style` is the one style bible). Facts come from the
story (common.pictures.asset_facts); what they leave open (a character's identity, a place as a
background and its light at each time of day, an object's look, the style bible) is asked of the
text engine (common.pictures.assets_text), one checkpointed answer per entry, keyed
`asset:<kind>/<name>` in 1.story.py's checkpoints and fingerprinted by exactly what it is written from.

A user's edits are kept field by field: the file is merged three ways with what the story proposed
last time (the checkpoint `asset:proposed`). A field that differs from that proposal is the user's
and stays; a field the user left alone follows the story; an entry the user added stays; an entry
the story no longer has goes, unless the user edited it. So editing one character's
description changes only that entry, which changes only that character's sheet fingerprint
(common.pictures.sheets), which changes only the scene pictures that use the sheet.

API for later steps:
- `load_library(pipeline_dir)` -> AssetLibrary or None (no input/assets.json: the pictures are made
  as before the library existed)
- `check_scene_names(library, scenes, source)` (common.formats.assets): an unknown name is one sentence
- `scene_time(scene)` (common.pictures.asset_facts): the time of day a scene shows, for background plates
- `scene_sheet(pipeline_dir, settings, library, tag)`: the sheet a picture of `tag` is conditioned on
  (None: use the character's plain picture); `user_sheet`, `own_sheet`, `sheet_file`: where sheets are
- `build_library(...)`: 1.story.py's part
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from common.formats.assets import (
    ASSETS_FILE, ASSETS_VERSION, KINDS, NOTE, STYLE_KEY, AssetLibrary, CharacterAsset, check_scene_names, document_tables,
    entry_from_json, entry_to_json, library_from_json, load_json, read_assets, write_document,
)
from common.formats.descriptions import read_descriptions
from common.formats.speakers import read_voice_map
from common.formats.story import Scene
from common.formats._text import read_text
from common.pictures.asset_facts import character_facts, location_facts, pose_facts, recurring_objects, style_facts
from common.pictures.assets_text import LLMAssetsText, OfflineAssetsText
from common.pictures.story_visuals import CharacterBrief, LocationBrief
from common.run.errors import InputError
from common.state.checkpoints import fingerprint

VERSION = 1
PREFIX = "asset:"
PROPOSED_KEY = "asset:proposed"
SHEETS_FOLDER = "output/sheets"

__all__ = ["ASSETS_FILE", "AssetLibrary", "build_library", "check_scene_names", "library_path", "load_library",
           "own_sheet", "scene_sheet", "sheet_file", "user_sheet"]


def library_path(pipeline_dir: Path) -> Path:
    return Path(pipeline_dir) / "input" / ASSETS_FILE


def load_library(pipeline_dir: Path) -> AssetLibrary | None:
    """The library 1.story.py wrote (with the user's edits), or None when there is none."""
    path = library_path(pipeline_dir)
    return read_assets(path) if path.is_file() else None


def own_sheet(tag: str) -> str:
    """Where 2.character.py draws a character's sheet, relative to the pipeline folder."""
    return f"{SHEETS_FOLDER}/{tag}.png"


def sheet_file(pipeline_dir: Path, sheet: str) -> Path:
    """A `sheet` field as a path: relative ones are inside the pipeline folder (gen.image/)."""
    path = Path(sheet).expanduser()
    return path if path.is_absolute() else Path(pipeline_dir) / path


def _voices(pipeline_dir: Path) -> dict[str, str]:
    """gen.audio's voice map (1.story.speakers.txt): tag -> voice stem, {} before 1.character.py ran."""
    for folder in (pipeline_dir / "input", pipeline_dir.parent / "gen.audio" / "input"):
        path = folder / "1.story.speakers.txt"
        if path.is_file() and path.stat().st_size > 0:
            return read_voice_map(path).as_dict()
    return {}


def _descriptions(input_dir: Path, kind: str) -> dict[str, str]:
    path = input_dir / f"2.{kind}.txt"
    return read_descriptions(path, kind).as_dict() if path.is_file() and path.stat().st_size > 0 else {}


# ---------------------------------------------------------------- proposed entries

@dataclass
class _Plan:
    """What the story proposes for every entry: facts, and the question each asks of the engine."""

    fixed: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    asks: list[tuple[str, str, Any, Callable[[Any], Any], Callable[[Any], dict[str, Any]]]] = field(default_factory=list)

    def ask(self, kind: str, key: str, facts: Any, question: Callable[[Any], Any],
            fields: Callable[[Any], dict[str, Any]], **fixed: Any) -> None:
        self.fixed[kind][key] = fixed
        self.asks.append((kind, key, facts, question, fields))


def _plan(engine: Any, scenes: Sequence[Scene], characters: Sequence[CharacterBrief],
          locations: Sequence[LocationBrief], pipeline_dir: Path, art_style: str, summary: str) -> _Plan:
    input_dir = pipeline_dir / "input"
    designs = _descriptions(input_dir, "location")
    # Objects are the story's facts, so only its own place descriptions say what is furniture; the palette
    # also takes the colours of the 2.location.txt designs (the seed's, the user's or the LLM's).
    objects = recurring_objects(scenes, {b.location_id: b.description for b in locations}, [b.tag for b in characters])
    place_text = {b.location_id: " ".join(filter(None, (b.description, designs.get(b.location_id)))) for b in locations}
    plan = _Plan()
    for facts in character_facts(characters, _descriptions(input_dir, "character"), _voices(pipeline_dir), scenes, objects):
        plan.ask("characters", facts.tag, facts, engine.character_identity, lambda text: {"description": text},
                 name=facts.brief.display_name.rstrip(","), gender=facts.brief.gender_word, voice=facts.voice,
                 expressions=list(facts.expressions), poses=list(facts.poses), objects=list(facts.objects),
                 scenes=list(facts.scenes), sheet=own_sheet(facts.tag))
    for facts in location_facts(locations, designs, scenes):
        plan.ask("locations", facts.location_id, facts, engine.location_look,
                 lambda answer: {"name": answer["name"], "description": answer["description"], "lighting": answer["lighting"]},
                 times=list(facts.times), settings=[w for t in facts.times for w in facts.settings.get(t, ())],
                 characters=list(facts.brief.characters), scenes=list(facts.scenes))
    for pose in pose_facts(characters):
        plan.fixed["poses"][pose.key] = {"description": pose.description, "characters": list(pose.characters),
                                         "scenes": list(pose.scenes)}
    for thing in objects:
        plan.ask("objects", thing.name, thing, engine.object_look, lambda text: {"description": text},
                 characters=list(thing.characters), locations=list(thing.locations), scenes=list(thing.scenes))
    plan.ask("styles", STYLE_KEY, style_facts(art_style, scenes, place_text, summary), engine.style_bible, dict)
    return plan


# ---------------------------------------------------------------- merging with the user's file

def merge_entry(proposed: Mapping[str, Any], mine: Mapping[str, Any] | None,
                written: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """(the entry to write, the fields kept as the user wrote them)."""
    if mine is None:
        return dict(proposed), []
    out, kept = dict(proposed), []
    for name, value in mine.items():
        if written is None or name not in written or value != written[name]:
            if value != proposed.get(name):
                kept.append(name)
            out[name] = value
    return out, kept


def _existing(path: Path, keep: bool) -> dict[str, dict[str, Any]] | None:
    """The user's file as tables, checked entry by entry; None when there is none (or --force)."""
    if not keep or not path.is_file() or path.stat().st_size == 0:
        return None
    source = str(path)
    tables = document_tables(load_json(read_text(path), source), source)
    for kind, table in tables.items():
        for key, raw in table.items():
            entry_from_json(kind, key, raw, source)  # an edit that cannot be read is said now, naming it
    return tables


@dataclass(frozen=True)
class LibraryResult:
    library: AssetLibrary
    path: Path
    keys: tuple[str, ...]  # checkpoint keys this build owns (1.story.py retains them)
    kept: tuple[str, ...]  # "kind.key (fields)" of the user's edits that were kept
    written: bool


def build_library(ctx: Any, engine: Any, scenes: Sequence[Scene], characters: Sequence[CharacterBrief],
                  locations: Sequence[LocationBrief], summary: str, *, keep_user_entries: bool) -> LibraryResult:
    """Ask every entry's question (checkpointed), merge with the user's file, write input/assets.json."""
    engine = engine.become(LLMAssetsText, OfflineAssetsText)
    store = ctx.checkpoints()
    ident = [VERSION, engine.identity(), engine.assets_identity()]
    plan = _plan(engine, scenes, characters, locations, ctx.pipeline_dir, str(ctx.settings.ART_STYLE), summary)
    asks = {f"{PREFIX}{kind}/{key}": (kind, key, facts, question, fields)
            for kind, key, facts, question, fields in plan.asks}

    def work(item_key: str) -> tuple[tuple[()], dict[str, Any]]:
        kind, key, facts, question, _ = asks[item_key]
        return (), {"answer": question(facts)}

    answers = ctx.each(list(asks), label="assets", key=lambda k: k, preview=engine.preview, work=work,
                       fingerprint=lambda k: fingerprint(ident, asks[k][0], asks[k][2].identity()))
    proposed = {kind: {key: dict(values) for key, values in table.items()} for kind, table in plan.fixed.items()}
    for item_key, (kind, key, _, _, fields) in asks.items():
        proposed[kind][key].update(fields(answers[item_key].data["answer"]))
    for kind, table in proposed.items():  # every field present, in the file's order
        for key, values in table.items():
            table[key] = entry_to_json(entry_from_json(kind, key, values, "the story"))

    path = library_path(ctx.pipeline_dir)
    mine = _existing(path, keep_user_entries)
    last = store.entries().get(PROPOSED_KEY)
    base = last.data.get("proposed", {}) if last is not None and keep_user_entries else {}  # the merge's base
    doc: dict[str, Any] = {"version": ASSETS_VERSION, "note": NOTE}
    kept: list[str] = []
    for kind in KINDS:
        table: dict[str, Any] = {}
        theirs = (mine or {}).get(kind, {})
        before = base.get(kind, {})
        for key, values in proposed[kind].items():
            table[key], fields = merge_entry(values, theirs.get(key), before.get(key))
            if fields:
                kept.append(f"{kind}.{key} ({', '.join(fields)})")
        for key, values in theirs.items():
            if key in table:
                continue
            if values != before.get(key):  # the user's own entry, or one they edited: kept
                table[key] = entry_to_json(entry_from_json(kind, key, values, str(path)))
                kept.append(f"{kind}.{key} (your entry)")
        doc[kind] = table
    library = library_from_json(doc, str(path))
    changed = write_document(path, doc)
    store.record(PROPOSED_KEY, fingerprint(proposed), data={"proposed": proposed}, preview=engine.preview)
    return LibraryResult(library, path, (*asks, PROPOSED_KEY), tuple(kept), changed)


# ---------------------------------------------------------------- sheets

def user_sheet(pipeline_dir: Path, library: AssetLibrary, character: CharacterAsset) -> Path | None:
    """The user's own sheet when the entry points away from output/sheets/<tag>.png; it must exist."""
    if not character.sheet or character.sheet == own_sheet(character.key):
        return None
    path = sheet_file(pipeline_dir, character.sheet)
    if not path.is_file():
        raise InputError(f"{library.source}: characters.{character.key}.sheet is {character.sheet}, which does not exist; "
                         f"put the sheet there, or set it back to {own_sheet(character.key)} to have it drawn.")
    return path


def scene_sheet(pipeline_dir: Path, settings: Any, library: AssetLibrary | None, tag: str) -> Path | None:
    """The sheet a scene takes as `tag`'s reference picture, or None: no library, CHARACTER_SHEETS off
    or CHARACTER_REFERENCE picture. A sheet expected but not drawn yet is an InputError saying what to run."""
    if library is None or settings.CHARACTER_REFERENCE == "picture" or tag not in library.characters:
        return None
    character = library.characters[tag]
    own = user_sheet(pipeline_dir, library, character)
    if own is not None:
        return own
    if not settings.CHARACTER_SHEETS:
        return None
    path = sheet_file(pipeline_dir, own_sheet(tag))
    if not path.is_file():
        raise InputError(f"{path} (the character sheet of {tag}) is missing; run 2.character.py first, "
                         "or set CHARACTER_REFERENCE to picture.")
    return path
