"""A series: the characters that recur across a channel's stories keep their voice and their look.

In channel mode the series folder (SERIES_DIR, relative to the stories folder; `DIR/series/` by
default) holds
- `voices.txt`: speaker tag -> voice stem, the format of `input/1.story.speakers.txt`. The first
  story that casts a speaker adds its line; a later story naming that speaker gets that voice
  instead of a new casting (its own voice map, if it has a line for the speaker, still wins).
  Edit the file to recast a character for the episodes still to come.
- `characters.json` + `characters/<tag>.png`: each character's look (the clean picture, before any
  name band), with the description it was drawn from and the story that drew it. A later story
  whose speaker tag is known reuses the picture instead of drawing it again, also when its
  description differs: a new look is made only for the tags listed in SERIES_NEW_LOOKS (e.g. in
  that story's `settings.toml`), and then replaces the old one for the episodes after it. A look
  made by the offline engine (a preview) is never reused by a real run, and a real one replaces it.

The check is the speaker tag, nothing fuzzier. Everything is written atomically; the functions
are idempotent, so a step killed between making an item and remembering it remembers it on the
rerun. `open_series` is the entry point, for the voice step, the picture steps and any asset
library that wants to know a character's established look (`Series.look`).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from common.config.paths import workspace_of
from common.formats.speakers import VoiceEntry, VoiceMap, read_voice_map, write_voice_map
from common.state.atomic import atomic_path, atomic_write_json
from common.state.checkpoints import now_text

DEFAULT_FOLDER = "series"
VOICES_FILE = "voices.txt"
LOOKS_FILE = "characters.json"
LOOKS_FOLDER = "characters"
VOICES_HEADER = (
    "Recurring speakers of this channel: speaker tag -> voice stem (as in input/1.story.speakers.txt).",
    "The first story that cast a speaker wrote its line; change a stem to recast that character from now on.",
)


def series_dir(settings: Any, pipeline_dir: Path) -> Path | None:
    """The series folder of the story whose data is in `pipeline_dir`; None outside channel mode (a single
    story in a pipeline folder has no episodes before or after it)."""
    workspace = workspace_of(Path(pipeline_dir))
    return channel_series_dir(settings, workspace.parent) if workspace is not None else None


def channel_series_dir(settings: Any, stories_folder: Path) -> Path:
    """The series folder of a channel's stories folder."""
    value = str(settings.get("SERIES_DIR", "") or "").strip()
    path = Path(os.path.expanduser(value)) if value else Path(DEFAULT_FOLDER)
    return path if path.is_absolute() else Path(stories_folder) / path


def open_series(settings: Any, pipeline_dir: Path) -> "Series | None":
    """The series this story belongs to, seen from it, or None (a single story outside a channel)."""
    root = series_dir(settings, pipeline_dir)
    workspace = workspace_of(Path(pipeline_dir))
    return Series(root, workspace.name) if root is not None and workspace is not None else None


@dataclass(frozen=True)
class Look:
    """A character's established picture and what it was drawn from."""

    tag: str
    description: str
    picture: Path
    story: str
    preview: bool
    since: str = ""


class Series:
    """One series folder, seen from one story (`story` is recorded with what it adds)."""

    def __init__(self, root: Path, story: str) -> None:
        self.root = Path(root)
        self.story = story

    # ------------------------------------------------------------------ voices

    @property
    def voices_file(self) -> Path:
        return self.root / VOICES_FILE

    def voices(self) -> dict[str, str]:
        """Every recurring speaker's voice stem, by tag."""
        if not self.voices_file.is_file():
            return {}
        return read_voice_map(self.voices_file).as_dict()

    def voices_for(self, speakers: Iterable[str]) -> dict[str, str]:
        """The known voices of these speakers: what casting must keep."""
        known = self.voices()
        return {tag: known[tag] for tag in speakers if tag in known}

    def remember_voices(self, voices: Mapping[str, str]) -> list[str]:
        """Add the speakers the series does not know yet; returns their tags. Known ones are never changed
        here: the series file is the user's to edit."""
        current = read_voice_map(self.voices_file) if self.voices_file.is_file() else VoiceMap(())
        known = set(current.speakers())
        new = [tag for tag in voices if tag not in known]
        if new:
            entries = current.entries + tuple(VoiceEntry(tag, voices[tag]) for tag in new)
            write_voice_map(self.voices_file, VoiceMap(entries, layout=current.layout), header=VOICES_HEADER)
        return new

    # ------------------------------------------------------------------ looks

    def _looks(self) -> dict[str, dict[str, Any]]:
        try:
            raw = json.loads((self.root / LOOKS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): v for k, v in raw.get("characters", {}).items() if isinstance(v, dict)} \
            if isinstance(raw, dict) else {}

    def look(self, tag: str) -> Look | None:
        """The character's established look, or None (unknown, or its picture is gone)."""
        raw = self._looks().get(tag)
        if raw is None:
            return None
        picture = self.root / str(raw.get("picture", ""))
        if not picture.is_file() or picture.stat().st_size == 0:
            return None
        return Look(tag, str(raw.get("description", "")), picture, str(raw.get("story", "")),
                    bool(raw.get("preview", True)), str(raw.get("since", "")))

    def look_for(self, tag: str, description: str, *, new_looks: Iterable[str], preview: bool) -> Look | None:
        """The look a story should reuse for `tag`: the established one, drawn by another story, unless the user
        asked for a new look (the tag in `new_looks`) and the description changed, or the established one is
        a preview and this run makes real pictures."""
        look = self.look(tag)
        if look is None or look.story == self.story or (look.preview and not preview):
            return None  # unknown, this story's own drawing, or a preview where a real picture is wanted
        if look.description != description and tag in set(new_looks):
            return None
        return look

    def remember_look(self, tag: str, description: str, picture: Path, *, preview: bool,
                      new_looks: Iterable[str] = ()) -> bool:
        """Record a picture this story drew as the character's look when it has none, when the established
        one is a preview and this is real, or when a new look was asked for; True when recorded."""
        looks = self._looks()
        old = self.look(tag)
        replace = old is None or (old.preview and not preview) or (
            tag in set(new_looks) and old.description != description)
        if not replace or not Path(picture).is_file():
            return False
        rel = Path(LOOKS_FOLDER) / f"{tag}{Path(picture).suffix or '.png'}"
        with atomic_path(self.root / rel) as tmp:
            shutil.copyfile(picture, tmp)
        look = Look(tag, description, self.root / rel, self.story, preview, now_text())
        looks[tag] = {**asdict(look), "picture": rel.as_posix()}
        atomic_write_json(self.root / LOOKS_FILE, {"characters": looks})
        return True
