"""The story as gen.video sees it: scenes in screen order, each with its slot on the narration.

gen.image's `2.timeline.script.txt` says which scene shows while whom speaks and for how long;
its lines are durations, so a scene's slot is the sum of its consecutive lines, and a pause
(`1.6 : ..`) keeps the picture that is already showing (a pause before the first scene belongs
to the first scene). Slots therefore tile the narration from 0 to its end with no gap. A scene
whose id comes back after another scene is a second shot of it, with a clip of its own.

Consecutive shots in the same location are the continuity candidates: with FIRST_LAST_FRAME
the first one's animation ends on the next one's picture, so the cut between them disappears.
`1.story.py` writes this as `output/storyboard.json`, which the later steps read.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from common.state.atomic import atomic_write_json
from common.run.errors import InputError
from common.formats.story import Scene, Story
from common.formats.timeline import ScriptTimeline

STORYBOARD_FILE = "storyboard.json"
VERSION = 1
TIMELINE_SCRIPT = "2.timeline.script.txt"


@dataclass(frozen=True)
class Shot:
    """One scene on screen: `clip` names its animation file (`<clip>.mp4`)."""

    clip: str
    scene_id: str
    part: int
    number: int
    start: float
    seconds: float
    scene_line: str  # the scene line after its id, as in the timeline
    location_id: str | None = None
    location: str | None = None  # the location's description, if any file or the story has one
    setting: str = ""
    characters: tuple[tuple[str, str], ...] = ()  # (speaker tag, attributes as prose)
    speakers: tuple[str, ...] = ()
    first_in_part: bool = False
    last_in_part: bool = False
    same_location_as_previous: bool = False
    same_location_as_next: bool = False

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["characters"] = [list(c) for c in self.characters]
        data["speakers"] = list(self.speakers)
        return data

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Shot":
        values = dict(raw)
        values["characters"] = tuple((str(t), str(a)) for t, a in values.get("characters", ()))
        values["speakers"] = tuple(values.get("speakers", ()))
        return cls(**values)


@dataclass(frozen=True)
class Storyboard:
    shots: tuple[Shot, ...]
    total: float
    timeline: str = ""
    unshown: tuple[str, ...] = field(default=())  # story scenes with no time on the timeline

    def parts(self) -> tuple[int, ...]:
        return tuple(sorted({s.part for s in self.shots}))

    def scene_ids(self) -> tuple[str, ...]:
        """Each scene once, in order of first appearance."""
        return tuple(dict.fromkeys(s.scene_id for s in self.shots))

    def continuity_runs(self) -> list[tuple[Shot, ...]]:
        """Runs of consecutive shots in one location (length >= 2): where clips can meet exactly."""
        runs: list[list[Shot]] = []
        for shot in self.shots:
            if runs and shot.same_location_as_previous:
                runs[-1].append(shot)
            else:
                runs.append([shot])
        return [tuple(run) for run in runs if len(run) > 1]

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "timeline": self.timeline, "total": round(self.total, 6),
                "parts": list(self.parts()), "unshown": list(self.unshown),
                "shots": [s.to_json() for s in self.shots]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Storyboard":
        return cls(tuple(Shot.from_json(s) for s in raw["shots"]), float(raw["total"]), str(raw.get("timeline", "")),
                   tuple(raw.get("unshown", ())))


def _readable(text: str) -> str:
    return ", ".join(part for part in text.split(", ") if part)


def _shot_fields(scene: Scene, locations: Mapping[str, str | None]) -> dict[str, Any]:
    location = scene.location_description
    if scene.location_id is not None:
        location = locations.get(scene.location_id) or location
    return {
        "location_id": scene.location_id,
        "location": location,
        "setting": scene.setting_text,
        "characters": tuple((c.tag, _readable(c.text)) for c in scene.characters),
    }


def build_storyboard(timeline: ScriptTimeline, locations: Mapping[str, str | None] | None = None,
                     story: Story | None = None) -> Storyboard:
    """Shots from the timeline script; `locations` (loc id -> description) fill in bare `{{loc_k}}`."""
    locations = dict(locations or {})
    if story is not None:
        for loc, description in story.locations().items():
            locations.setdefault(loc, description)
    runs: list[dict[str, Any]] = []  # consecutive entries of one scene, pauses included
    leading = 0.0
    at = 0.0
    for entry in timeline.entries:
        if entry.is_pause:
            if runs:
                runs[-1]["seconds"] += entry.seconds
            else:
                leading += entry.seconds
        elif runs and runs[-1]["scene_id"] == entry.scene_id:
            runs[-1]["seconds"] += entry.seconds
            if entry.speaker not in runs[-1]["speakers"]:
                runs[-1]["speakers"].append(entry.speaker)
        else:
            scene = entry.scene(source=timeline.source)
            assert scene is not None
            runs.append({"scene_id": entry.scene_id, "scene": scene, "line": entry.description,
                         "start": at, "seconds": entry.seconds, "speakers": [entry.speaker]})
            if len(runs) == 1:
                runs[0]["start"], runs[0]["seconds"] = 0.0, entry.seconds + leading
        at += entry.seconds
    if not runs:
        raise InputError(f"{timeline.source} names no scene (only pauses); regenerate it with gen.image's 4.audio.py.")
    for run in runs:  # the timeline's own first mentions fill whatever is still undescribed
        scene = run["scene"]
        if scene.location_id is not None and scene.location_description and not locations.get(scene.location_id):
            locations[scene.location_id] = scene.location_description
    shown: dict[str, int] = {}
    shots: list[Shot] = []
    for index, run in enumerate(runs):
        scene: Scene = run["scene"]
        shown[scene.scene_id] = shown.get(scene.scene_id, 0) + 1
        clip = scene.scene_id if shown[scene.scene_id] == 1 else f"{scene.scene_id}_{shown[scene.scene_id]}"
        previous = runs[index - 1]["scene"] if index else None
        following = runs[index + 1]["scene"] if index + 1 < len(runs) else None
        same_prev = previous is not None and scene.location_id is not None and previous.location_id == scene.location_id
        same_next = following is not None and scene.location_id is not None and following.location_id == scene.location_id
        shots.append(Shot(
            clip=clip, scene_id=scene.scene_id, part=scene.part, number=scene.index,
            start=run["start"], seconds=run["seconds"], scene_line=run["line"],
            speakers=tuple(run["speakers"]),
            first_in_part=previous is None or previous.part != scene.part,
            last_in_part=following is None or following.part != scene.part,
            same_location_as_previous=same_prev, same_location_as_next=same_next,
            **_shot_fields(scene, locations),
        ))
    unshown: tuple[str, ...] = ()
    if story is not None:
        unshown = tuple(s.scene_id for s in story.scenes() if s.scene_id not in shown)
    return Storyboard(tuple(shots), math.fsum(e.seconds for e in timeline.entries), timeline.source, unshown)


# ---------------------------------------------------------------- files

def timeline_script_path(pipeline_dir: Path) -> Path:
    """gen.image's `input/2.timeline.script.txt`, else gen.audio's (where the seed system kept it)."""
    root = Path(pipeline_dir).parent
    candidates = [root / "gen.image" / "input" / TIMELINE_SCRIPT, root / "gen.audio" / "input" / TIMELINE_SCRIPT]
    for path in candidates:
        if path.is_file() and path.stat().st_size > 0:
            return path
    raise InputError(
        f"{candidates[0]} is missing; run gen.image first (its 4.audio.py writes which scene shows when), "
        "then run this step again."
    )


def scene_image_path(pipeline_dir: Path, scene_id: str) -> Path:
    return Path(pipeline_dir).parent / "gen.image" / "output" / "scene" / f"{scene_id}.png"


def location_descriptions(pipeline_dir: Path) -> dict[str, str]:
    """gen.image's location prose (3.location.txt), else its short attributes (2.location.txt)."""
    from common.formats.descriptions import read_locations

    found: dict[str, str] = {}
    folder = Path(pipeline_dir).parent / "gen.image" / "input"
    for name in ("2.location.txt", "3.location.txt"):  # later files win: prose over attributes
        path = folder / name
        if path.is_file() and path.stat().st_size > 0:
            found.update(read_locations(path).as_dict())
    return found


def storyboard_path(pipeline_dir: Path) -> Path:
    return Path(pipeline_dir) / "output" / STORYBOARD_FILE


def write_storyboard(path: str | os.PathLike[str], board: Storyboard) -> Path:
    return atomic_write_json(Path(path), board.to_json(), indent=1)


def read_storyboard(pipeline_dir: Path) -> Storyboard:
    """`output/storyboard.json`, or one sentence saying to run 1.story.py."""
    path = storyboard_path(pipeline_dir)
    if not path.is_file():
        raise InputError(f"{path} is missing; run 1.story.py first (it reads the timeline and writes the scene plan).")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != VERSION:
            raise ValueError(f"version {raw.get('version')!r}")
        return Storyboard.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is unreadable ({exc}); run 1.story.py again to rewrite it.") from None


def describe(board: Storyboard) -> Iterable[str]:
    """A few lines for the terminal: what the later steps will animate."""
    scenes = board.scene_ids()
    yield (f"{len(board.shots)} shots of {len(scenes)} scenes in {len(board.parts())} part(s), "
           f"{board.total:.1f} s of narration")
    longest = max(board.shots, key=lambda s: s.seconds)
    yield f"longest shot: {longest.clip} ({longest.seconds:.1f} s); shortest: {min(s.seconds for s in board.shots):.2f} s"
    runs = board.continuity_runs()
    if runs:
        joined = sum(len(r) - 1 for r in runs)
        yield f"{len(runs)} run(s) of shots in one location ({joined} cuts that first-last-frame can hide)"
    if board.unshown:
        yield f"{len(board.unshown)} scene(s) of the story have no time on the timeline and get no clip: {', '.join(board.unshown[:6])}"
