"""gen.image 1.story.py's work: the scene lines, then how every character and location looks.

Scene lines: the story's own, when it has them (they are the truth); else the text engine
writes one per utterance, in order, each checkpointed with what it was written from (the
utterance, its neighbours, the locations known so far, the previous picture's location),
so an edited line redoes its own scene and only the following ones whose context changed.

Descriptions: two items per character and per location, the attributes (2.*.txt) and the
prose written from them (3.*.txt), each checkpointed. An entry already in one of those files
that differs from what this step last wrote there is the user's (edited, or copied from the
seed system) and is kept as it is, unless --force or --force-start asks for fresh ones.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from common.state.atomic import atomic_write_text
from common.state.checkpoints import CheckpointStore, fingerprint
from common.run.errors import InputError
from common.formats._text import Layout
from common.formats.descriptions import Description, Descriptions, read_descriptions, write_descriptions
from common.formats.story import Scene, SceneList, Story, format_scene_line, parse_scene_line, write_scenes
from common.run.progress import Progress
from common.pictures.looks_text import LLMLooksText, OfflineLooksText
from common.pictures.story_visuals import bare_location, planned_scene_ids, scene_request

VERSION = 1
FILES = {
    ("character", "attributes"): "2.character.txt",
    ("character", "prose"): "3.character.txt",
    ("location", "attributes"): "2.location.txt",
    ("location", "prose"): "3.location.txt",
}


@dataclass(frozen=True)
class SceneLine:
    """One line of 3.scene.txt: its text, and its parse (None for a bypassed line that does not parse)."""

    text: str
    scene: Scene | None


def story_scene_lines(story: Story) -> list[SceneLine]:
    return [SceneLine(format_scene_line(s), s) for s in story.scenes()]


def _parsed(line: str) -> Scene | None:
    try:
        return parse_scene_line(line, source="scene line")
    except InputError:
        return None


def write_scene_lines(story: Story, engine: Any, store: CheckpointStore, *, check: bool,
                      say: Callable[[str], None]) -> list[SceneLine]:
    """One engine-written scene line per utterance, checkpointed one by one (each depends on the
    locations the earlier ones introduced, so they run in order). Only a line that parses is
    checkpointed, also with `check=False`: the engine asks again (bounded) until one does, or fails."""
    engine = engine.become(LLMLooksText, OfflineLooksText)
    ident = [VERSION, engine.identity(), engine.visuals_identity(), check]
    ids = planned_scene_ids(story)
    progress = Progress(len(ids), "scenes")
    known: dict[str, str] = {}
    previous_location: str | None = None
    lines: list[SceneLine] = []
    for index, scene_id in enumerate(ids):
        request = scene_request(story, index, scene_id, known, previous_location)
        fp = fingerprint(ident, request.identity())
        entry = store.lookup(scene_id, fp)
        if entry is not None and _parsed(str(entry.data.get("line", ""))) is None:
            entry = None  # a bypassed answer that does not parse was never really done: ask again
        if entry is None and engine.preview:  # a real LLM line is never replaced by an offline one
            real = store.real_entry(scene_id)
            entry = real if real is not None and _parsed(str(real.data.get("line", ""))) is not None else None
        if entry is not None:
            progress.done(scene_id, cached=True)
        else:
            progress.begin(scene_id)
            started = time.monotonic()
            text = engine.scene_line(request, check=check)
            entry = store.record(scene_id, fp, data={"line": text}, preview=engine.preview,
                                 took=time.monotonic() - started)
            progress.done(scene_id, entry.took)
        text = entry.data["line"]
        scene = _parsed(text)
        if scene is None:
            say(f"  {scene_id}: kept as written (--bypass-validation), but it is not a valid scene line: {text[:80]}")
        else:
            if scene.location_id is not None and not known.get(scene.location_id):
                known[scene.location_id] = scene.location_description or ""
            previous_location = scene.location_id or previous_location
        lines.append(SceneLine(text, scene))
    say(progress.summary())
    return lines


def save_scene_lines(path: Path, lines: Sequence[SceneLine]) -> Path:
    """3.scene.txt: locations bare (`{{loc_1}}`), their descriptions live in the location files (as in
    the seed); a bypassed line that does not parse is written exactly as the engine wrote it."""
    if all(line.scene is not None for line in lines):
        return write_scenes(path, SceneList(tuple(bare_location(line.scene) for line in lines if line.scene is not None)))
    return atomic_write_text(path, "".join(line.text + "\n" for line in lines))


# ---------------------------------------------------------------- descriptions

@dataclass(frozen=True)
class Described:
    key: str
    text: str
    kept: bool  # the user's entry, left as it was


def _existing(path: Path, kind: str) -> Descriptions | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    return read_descriptions(path, kind)


class Describer:
    """Runs the four description passes for 1.story.py over one engine and one checkpoint store."""

    def __init__(self, ctx: Any, engine: Any, *, keep_user_entries: bool) -> None:
        self.ctx = ctx
        self.engine = engine.become(LLMLooksText, OfflineLooksText)
        self.store: CheckpointStore = ctx.checkpoints()
        self.keep = keep_user_entries
        self.ident = [VERSION, self.engine.identity(), self.engine.visuals_identity()]
        self.keys: list[str] = []

    def _user_text(self, existing: Descriptions | None, key: str, item_key: str) -> str | None:
        if not self.keep or existing is None:
            return None
        text = existing.get(key)
        if text is None:
            return None
        entry = self.store.entries().get(item_key)
        return None if entry is not None and entry.data.get("text") == text else text

    def run(self, kind: str, part: str, briefs: Sequence[Any], key_of: Callable[[Any], str],
            make: Callable[[Any], str], inputs: Callable[[Any], list[object]]) -> list[Described]:
        """One pass: every brief's entry, from the user's file, the checkpoint or the engine."""
        path = self.ctx.input_dir / FILES[(kind, part)]
        existing = _existing(path, kind) if self.keep else None  # --force: not even read (it may be broken)
        prefix = f"{kind}_{part}:"
        kept = {key_of(b): text for b in briefs
                if (text := self._user_text(existing, key_of(b), prefix + key_of(b))) is not None}
        todo = [b for b in briefs if key_of(b) not in kept]
        entries = self.ctx.each(
            todo, label=f"{kind} {part}", key=lambda b: prefix + key_of(b),
            fingerprint=lambda b: fingerprint(self.ident, part, inputs(b)),
            work=lambda b: ((), {"text": " ".join(make(b).split())}), preview=self.engine.preview,
        ) if todo else {}
        self.keys.extend(prefix + key_of(b) for b in todo)
        out = []
        for brief in briefs:
            key = key_of(brief)
            if key in kept:
                out.append(Described(key, kept[key], True))
            else:
                out.append(Described(key, entries[prefix + key].data["text"], False))
        if kept:
            self.ctx.say(f"  {path.name}: kept your entries for {', '.join(sorted(kept))} (--force writes new ones)")
        self._write(path, kind, existing, out, blank_lines=(kind, part) == ("character", "attributes"))
        return out

    def describe(self, kind: str, briefs: Sequence[Any], key_of: Callable[[Any], str], words: tuple[int, int]) -> None:
        """The attributes, then the prose written from them."""
        attributes = self.run(kind, "attributes", briefs, key_of, getattr(self.engine, f"{kind}_attributes"),
                              lambda b: b.identity())
        by_key = {d.key: d.text for d in attributes}
        prose = getattr(self.engine, f"{kind}_prose")
        self.run(kind, "prose", briefs, key_of, lambda b: prose(b, by_key[key_of(b)], words=words),
                 lambda b: [b.identity(), by_key[key_of(b)], list(words)])

    def _write(self, path: Path, kind: str, existing: Descriptions | None, items: Sequence[Described],
               *, blank_lines: bool) -> None:
        """The seed's layout: 2.character.txt has a blank line between entries, the others none."""
        old = {e.key: e for e in existing.entries} if existing is not None else {}
        entries = tuple(old[i.key] if i.kept and i.key in old else Description(i.key, i.text) for i in items)
        extras = tuple((k, "") for k in range(1, len(entries))) if blank_lines else ()
        write_descriptions(path, Descriptions(kind, entries, layout=Layout(extras=extras)))


def read_summary(pipeline_dir: Path) -> str:
    """9.summary.txt (gen.audio's 1.character.py writes it): context for the LLM, if there is one."""
    for folder in (pipeline_dir / "input", pipeline_dir.parent / "gen.audio" / "input"):
        path = folder / "9.summary.txt"
        if path.is_file():
            return " ".join(path.read_text(encoding="utf-8", errors="replace").split())
    return ""

