"""The dailies page's writes: each one the same change a person makes by hand in the same file.

Why only these: the pipeline already knows what a hand edit means (a retake.txt line asks for a
new take; an edited description or scene line changes the fingerprints of exactly the pictures
it feeds; step 12 reads its approval file), so the page adds no second way in. Every write
keeps the rest of the file as it was (its other lines, comments, BOM and line endings), is
checked the way the pipeline will read it before it is written, and is written atomically.
What a request may name was checked against the checkpoints first (common.dailies.workspace);
which file is written is decided here, never by the request.
"""
from __future__ import annotations

from pathlib import Path

from common.config.paths import story_path
from common.formats.descriptions import Description, Descriptions, read_descriptions, write_descriptions
from common.formats.story import parse_scene_line, parse_story, read_scenes, read_story
from common.publish.approval import Approval, approve
from common.pictures.retake import request_retake
from common.run.errors import InputError, PipelineError
from common.state.atomic import atomic_write_bytes
from common.dailies.workspace import APPROVED_FILE, DESCRIPTION_FILES, Item, Workspace

MAX_TEXT = 4000  # characters of one description or scene line


def _one_line(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise InputError(f"the new {what} is missing; write it and save again.")
    line = " ".join(text.split())
    if not line:
        raise InputError(f"the new {what} is empty; write it, or leave the {what} as it is.")
    if len(line) > MAX_TEXT:
        raise InputError(f"the new {what} has {len(line)} characters, more than {MAX_TEXT}; shorten it.")
    return line


def _pictures_dir(workspace: Workspace) -> Path:
    folder = workspace.pictures_dir
    if folder is None:
        raise InputError("this pipeline makes no pictures, so there is nothing to retake or edit here.")
    return folder


# ---------------------------------------------------------------- retake and approve


def ask_retake(workspace: Workspace, item: Item) -> str:
    """Add the item's id to retake.txt (a clip: its scene picture, which the clip is made from)."""
    folder = _pictures_dir(workspace)
    added = request_retake(folder, item.item_id)
    _set_approved(folder, item.key, None)  # the take that was approved is the one being replaced
    what = f"{item.item_id}'s picture" if item.kind == "clip" else item.item_id
    if not added:
        return f"{what} is already asked for in retake.txt; the next run makes it again."
    return f"{what} added to retake.txt: the next run (python generate.py) makes it again with a new seed."


def approve_item(workspace: Workspace, item: Item) -> str:
    folder = _pictures_dir(workspace)
    take = item.data.get("take")
    _set_approved(folder, item.key, take if isinstance(take, int) else None)
    return f"{item.key} approved" + (f" (take {take})" if isinstance(take, int) else "") + f" in {APPROVED_FILE}."


def _set_approved(folder: Path, key: str, take: int | None) -> None:
    """Rewrite approved.txt with `key`'s line removed, and added again with `take` unless it is None."""
    path = folder / APPROVED_FILE
    if not path.is_file() and take is None:
        return
    text = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""
    newline = "\r\n" if "\r\n" in text else "\n"
    kept = [line for line in text.splitlines() if line.split("#", 1)[0].split()[:1] != [key]]
    if take is not None:
        kept.append(f"{key} take {take}")
    atomic_write_bytes(path, "".join(line + newline for line in kept).encode("utf-8"))


def approve_video(workspace: Workspace) -> Approval:
    """Step 12's approval of the video it would upload, as that file is now."""
    step = workspace.step("12.youtube.py")
    video = workspace.publish_video()
    if step is None or video is None:
        raise InputError("this pipeline does not publish (no 12.youtube.py), so there is nothing to approve.")
    if not video.is_file():
        raise InputError(f"the video to publish, {video.name}, is not made yet; run generate.py first, then approve it.")
    return approve(step.pipeline_dir, video)


# ---------------------------------------------------------------- descriptions


def edit_description(workspace: Workspace, item: Item, text: object) -> str:
    """Replace a character's or location's description in the file its picture was made from."""
    if item.kind not in DESCRIPTION_FILES:
        raise InputError(f"{item.key} is a {item.kind}: it has no description to edit (a scene has its scene line).")
    folder = _pictures_dir(workspace)
    name, _old = workspace.descriptions(item.kind, item)
    line = _one_line(text, "description")
    path = folder / "input" / str(name)
    current = read_descriptions(path, item.kind)
    if current.get(item.item_id) is None:
        raise InputError(f"{path.name} does not describe {item.item_id}; run 1.story.py, then edit it again.")
    entries = tuple(Description(e.key, line, line_no=e.line_no, raw=e.raw) if e.key == item.item_id else e
                    for e in current.entries)
    write_descriptions(path, Descriptions(item.kind, entries, source=str(path), layout=current.layout))
    return f"{path.name}: the description of {item.item_id} is saved; the next run redoes what it feeds."


# ---------------------------------------------------------------- scene lines


def find_scene_line(pictures_dir: Path, scene_id: str) -> tuple[str | None, bool]:
    """(a scene's line, whether it can be edited): the story's own line is the truth and can be; a line
    the text engine wrote into 3.scene.txt (a story without scene lines) is written anew by 1.story.py."""
    try:
        story = read_story(story_path(pictures_dir))
        scene = next((s for s in story.scenes() if s.scene_id == scene_id), None)
        if story.scenes():
            return (scene.raw.strip() if scene is not None and scene.raw else None), scene is not None
        scenes = read_scenes(pictures_dir / "input" / "3.scene.txt")
    except PipelineError:
        return None, False
    found = scenes.get(scene_id)
    return (found.raw.strip() if found is not None and found.raw else None), False


def edit_scene_line(workspace: Workspace, item: Item, text: object) -> str:
    """Replace a scene's line in the story file, as a hand edit would: that line only."""
    if item.kind not in ("scene", "clip"):
        raise InputError(f"{item.key} is a {item.kind}: only scenes have a scene line (edit its description).")
    folder = _pictures_dir(workspace)
    scene_id = item.item_id if item.kind == "scene" else item.key
    line = _one_line(text, "scene line")
    path = story_path(folder)
    _old, editable = find_scene_line(folder, scene_id)
    if not editable:
        raise InputError(f"{scene_id}'s line was written by the text engine into 3.scene.txt, which 1.story.py writes "
                         f"anew on every run; put the scene lines into the story ({path.name}) to edit them.")
    new_scene = parse_scene_line(line, source="the new scene line")
    if new_scene.scene_id != scene_id:
        raise InputError(f"the new scene line starts with ({new_scene.scene_id}) but edits {scene_id}; keep its id.")
    raw = path.read_bytes().decode("utf-8")
    bom = "\ufeff" if raw.startswith("\ufeff") else ""
    lines = raw[len(bom):].split("\n")
    scene = next(s for s in read_story(path).scenes() if s.scene_id == scene_id)
    index = int(scene.line_no or 0) - 1
    if not 0 <= index < len(lines) or lines[index].rstrip("\r").strip() != (scene.raw or "").strip():
        raise InputError(f"{path} changed while it was being edited; reload the page and edit again.")
    lines[index] = line + ("\r" if lines[index].endswith("\r") else "")
    new_text = bom + "\n".join(lines)
    parse_story(new_text, source=str(path))  # the whole story still reads, as the next run will read it
    atomic_write_bytes(path, new_text.encode("utf-8"))
    return f"{path.name}: {scene_id}'s scene line is saved; the next run redoes that scene and what is made from it."
