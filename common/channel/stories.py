"""The stories of a channel folder, in the order they run, and the workspace each one gets.

`DIR/*.txt` are the stories (name order), or those `DIR/queue.txt` lists, in its order. Story
`DIR/<name>.txt` works in `DIR/<name>/`: its `workspace.json` says which story it is and where the
pipelines' code is (common.config.paths reads it), and `gen.audio/input/1.story.txt` is a copy of
the story, refreshed whenever `DIR/<name>.txt` changes (edit that file, not the copy: an edited line
redoes only the work that line feeds, as in a pipeline folder).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from common.config.paths import WORKSPACE_ENV, WORKSPACE_MARK, read_mark
from common.run.errors import ConfigError, InputError
from common.state.atomic import atomic_write_bytes, atomic_write_json

QUEUE_FILE = "queue.txt"
STORY_COPY = Path("gen.audio") / "input" / "1.story.txt"


@dataclass(frozen=True)
class Story:
    name: str  # the file's stem, also its workspace's name
    source: Path  # DIR/<name>.txt
    workspace: Path  # DIR/<name>


@dataclass
class StoryList:
    """The stories to run, in order, and what the queue file said that could not be followed."""

    stories: list[Story]
    notes: list[str]


def _story(folder: Path, name: str) -> Story:
    return Story(name, folder / f"{name}.txt", folder / name)


def _queue_names(folder: Path, found: dict[str, Story]) -> tuple[list[str], list[str]]:
    """The names queue.txt lists (one a line, `.txt` optional, `#` comments), and notes on the rest."""
    names: list[str] = []
    notes: list[str] = []
    path = folder / QUEUE_FILE
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text; write one story name a line.") from None
    for number, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if name.endswith(".txt"):
            name = name[:-4]
        if not name:
            continue
        if name not in found:
            notes.append(f"{QUEUE_FILE} line {number} names {name}, but there is no {folder / (name + '.txt')}: skipped")
        elif name in names:
            notes.append(f"{QUEUE_FILE} line {number} names {name} a second time: it runs once")
        else:
            names.append(name)
    left_out = sorted(set(found) - set(names))
    if left_out:
        notes.append(f"not in {QUEUE_FILE}, so not run: {', '.join(left_out[:10])}{' ...' if len(left_out) > 10 else ''}")
    return names, notes


def find_stories(folder: Path, reserved: set[Path] = frozenset()) -> StoryList:
    """Every story of `folder` in queue order. `reserved`: folders a story's workspace must not be (the
    series folder): such a story is left out with a note saying to rename it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"the stories folder {folder} does not exist; create it and put one story per .txt file in it.")
    found: dict[str, Story] = {}
    notes: list[str] = []
    for path in sorted(folder.glob("*.txt")):
        if path.name == QUEUE_FILE or not path.is_file():
            continue
        story = _story(folder, path.stem)
        if story.workspace.resolve() in {Path(r).resolve() for r in reserved}:
            notes.append(f"{path.name} is not run: its workspace {story.workspace} is the series folder; rename the story")
            continue
        found[story.name] = story
    if (folder / QUEUE_FILE).is_file():
        names, queue_notes = _queue_names(folder, found)
        notes += queue_notes
    else:
        names = sorted(found)
    if not found:
        raise InputError(f"{folder} holds no story: put each story in its own .txt file there "
                         "(one '[speaker_tag] text' line per utterance).")
    return StoryList([found[n] for n in names], notes)


def prepare_workspace(story: Story, code_root: Path) -> bool:
    """Make or refresh the story's workspace; True when its story copy was (re)written. Writes nothing
    when nothing changed, so a finished story's run stamp stays valid."""
    mark = {"story": story.source.name, "code_root": str(Path(code_root).resolve())}
    if read_mark(story.workspace) != mark:
        atomic_write_json(story.workspace / WORKSPACE_MARK, mark)
    try:
        text = story.source.read_bytes()
    except OSError as exc:
        raise InputError(f"the story {story.source} cannot be read ({exc.strerror}); check the file.") from None
    copy = story.workspace / STORY_COPY
    try:
        if copy.read_bytes() == text:
            return False
    except OSError:
        pass
    atomic_write_bytes(copy, text)
    return True


def refresh_workspace(workspace: Path, code_root: Path) -> bool:
    """For a story run alone in its workspace (PIPELINE_WORKSPACE): refresh its copy of the story from
    the stories folder, as the queue would; True when the copy was rewritten."""
    mark = read_mark(workspace) or {}
    source = Path(workspace).parent / str(mark.get("story", ""))
    if not mark.get("story") or not source.is_file():
        return False
    return prepare_workspace(Story(source.stem, source, Path(workspace)), code_root)


def workspace_from_env(environ: Mapping[str, str], *, queue: bool) -> Path | None:
    """PIPELINE_WORKSPACE for generate.py: one story of a channel run on its own (as its report's commands do)."""
    value = environ.get(WORKSPACE_ENV, "").strip()
    if not value:
        return None
    workspace = Path(value).expanduser().resolve()
    if queue:
        raise ConfigError(f"{WORKSPACE_ENV} names one story's workspace and --stories a whole folder: unset "
                          f"{WORKSPACE_ENV} to run the queue.")
    if read_mark(workspace) is None:
        raise ConfigError(f"{WORKSPACE_ENV} is {value}, which is not a story workspace (it has no {WORKSPACE_MARK}); "
                          "run generate.py --stories on its stories folder once, or unset it.")
    return workspace
