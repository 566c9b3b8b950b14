"""One story's workspace as the dailies page sees it: its pipeline folder and steps, and everything
read back from them.

Why one object: every answer of the page (the grid, tonight's status, the morning report, the
upload) and every check of a request (is this item known? which file is its picture?) goes
through it, and it takes one root, the pipeline folder, so a channel of stories (`--stories
DIR`) can give each story its own. Items exist only as the checkpoints name them: a request
names an item by kind and key, and the file served for it is the one its checkpoint lists,
never a path built from the request.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from common.formats.descriptions import motion_id_for, read_descriptions
from common.publish.approval import read_approval
from common.publish.youtube import STATE_NAME, find_shorts
from common.run.errors import PipelineError
from common.run.report import count_step, state_path, status_lines
from common.run.steps import Step
from common.state.checkpoints import read_entries, state_file
from common.dailies import tonight

PICTURE_STEPS = {"2.character.py": "character", "2.location.py": "location", "3.scene.py": "scene"}
CLIP_STEPS = ("3.animate.py", "5.video.py")  # gen.video's animated clips, else gen.image's still-picture clips
KINDS = ("character", "location", "scene", "clip")
DESCRIPTION_FILES = {"character": ("2.character.txt", "3.character.txt"), "location": ("2.location.txt", "3.location.txt")}
APPROVED_FILE = "approved.txt"  # the items a person approved, with the take they saw (no step reads it)
IDENTITY_FILE = "identity.json"  # gen.image/output/identity.json, when the identity judge wrote one


@dataclass(frozen=True)
class Item:
    """A picture or clip the checkpoints name."""

    kind: str
    key: str  # checkpoint key and file stem: "scene_1.2", "male_bram.v2"
    item_id: str  # what retake.txt names (a clip: its scene's picture)
    file: Path | None
    entry: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        data = self.entry.get("data")
        return data if isinstance(data, dict) else {}


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)


def read_approved(pictures_dir: Path) -> dict[str, int | None]:
    """approved.txt: `<id> take <n>` a line (`#` starts a comment) -> the take approved (None: any)."""
    try:
        text = (pictures_dir / APPROVED_FILE).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return {}
    found: dict[str, int | None] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        take = int(words[2]) if len(words) == 3 and words[1] == "take" and words[2].isdigit() else None
        found[words[0]] = take
    return found


def identity_scores(pictures_dir: Path) -> dict[str, float]:
    """Item key -> identity score from output/identity.json when it exists; {} otherwise or when unreadable.

    Read leniently: a number per key, `{"score": x}`, or a score per character (the lowest counts),
    at the top level or under "items"/"scenes"/"keyframes"."""
    try:
        raw = json.loads((pictures_dir / "output" / IDENTITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(raw, dict):
        return {}
    groups = ("items", "scenes", "keyframes")
    table: dict[str, Any] = {k: v for k, v in raw.items() if k not in groups}
    for name in groups:
        if isinstance(raw.get(name), dict):
            table.update(raw[name])

    def score(value: Any) -> float | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, dict):
            for name in ("score", "best", "best_score"):
                if isinstance(value.get(name), (int, float)):
                    return float(value[name])
            inner = [s for v in value.values() if (s := score(v)) is not None]
            return min(inner) if inner else None
        return None

    return {key: s for key, value in table.items() if (s := score(value)) is not None}


class Workspace:
    """A pipeline folder (the root) and its steps; every read of the page starts here."""

    def __init__(self, pipeline_dir: Path, steps: Sequence[Step]) -> None:
        self.pipeline_dir = Path(pipeline_dir).resolve()
        self.steps = list(steps)
        self.roots = list(dict.fromkeys([self.pipeline_dir, *(s.pipeline_dir.resolve() for s in self.steps)]))

    # ---------------------------------------------------------------- steps and folders
    def step(self, basename: str) -> Step | None:
        return next((s for s in self.steps if s.basename == basename), None)

    @property
    def pictures_dir(self) -> Path | None:
        """Where the pictures are made, retake.txt and approved.txt live (gen.image)."""
        step = next((s for s in self.steps if s.basename in PICTURE_STEPS), None)
        return step.pipeline_dir.resolve() if step is not None else None

    def settings(self, pipeline_dir: Path) -> Any | None:
        from common.config.settings import load_settings

        try:
            return load_settings(pipeline_dir)
        except PipelineError:
            return None

    # ---------------------------------------------------------------- items
    def items(self) -> dict[tuple[str, str], Item]:
        """Every finished or failed picture and clip the checkpoints name, by (kind, key), in step order."""
        found: dict[tuple[str, str], Item] = {}
        clip_step = next((self.step(name) for name in CLIP_STEPS if self.step(name) is not None), None)
        for step in self.steps:
            kind = PICTURE_STEPS.get(step.basename) or ("clip" if step is clip_step else None)
            if kind is None:
                continue
            for key, entry in read_entries(state_path(step)).items():
                files = [step.pipeline_dir / str(f) for f in entry.get("files") or ()]
                file = files[0] if files and _inside(files[0], self.roots) else None
                data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
                item_id = key if kind == "clip" else str(data.get("item_id") or key)
                found[(kind, key)] = Item(kind, key, item_id, file, entry)
        return found

    def item(self, kind: Any, key: Any) -> Item | None:
        """The item a request names, if the checkpoints know it; anything else is None."""
        if not isinstance(kind, str) or not isinstance(key, str):
            return None
        return self.items().get((kind, key))

    def descriptions(self, kind: str, item: Item) -> tuple[str | None, str | None]:
        """(file name, text) of a character's or location's description, as its picture read it."""
        folder = self.pictures_dir
        if folder is None or kind not in DESCRIPTION_FILES:
            return None, None
        source = (item.data.get("settings") or {}).get("source")
        name = source if source in DESCRIPTION_FILES[kind] else DESCRIPTION_FILES[kind][0]
        try:
            text = read_descriptions(folder / "input" / name, kind).get(item.item_id)
        except PipelineError:
            return name, None
        return name, text

    def scene_line(self, scene_id: str) -> tuple[str | None, bool]:
        """(the scene's line as the story or 3.scene.txt says it, whether the page may edit it)."""
        from common.dailies.edits import find_scene_line

        folder = self.pictures_dir
        if folder is None:
            return None, False
        return find_scene_line(folder, scene_id)

    def dailies(self) -> dict[str, Any]:
        """The grid: per item its prompt, seed, take, preview mark, identity score and the requests on it."""
        folder = self.pictures_dir
        from common.pictures.retake import read_retake

        try:
            asked = {ident for _n, ident in read_retake(folder)} if folder and (folder / "retake.txt").is_file() else set()
        except PipelineError:
            asked = set()
        approved = read_approved(folder) if folder else {}
        scores = identity_scores(folder) if folder else {}
        motions = self._motions()
        out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        lines: dict[str, tuple[str | None, bool]] = {}
        for (kind, key), item in self.items().items():
            data = item.data
            take = data.get("take")
            card: dict[str, Any] = {
                "kind": kind, "key": key, "item_id": item.item_id, "status": item.entry.get("status", "done"),
                "error": data.get("error"), "preview": bool(item.entry.get("preview")),
                "finished_at": item.entry.get("finished_at"), "prompt": data.get("prompt"), "seed": data.get("seed"),
                "take": take, "score": scores.get(key, scores.get(item.item_id)),
                "retake_asked": item.item_id in asked or key in asked,
                "approved": key in approved and approved[key] in (None, take),
                "media": f"/media/item/{kind}/{key}" if item.file is not None and item.file.is_file() else None,
            }
            if kind in DESCRIPTION_FILES:
                card["description_file"], card["description"] = self.descriptions(kind, item)
            if kind in ("scene", "clip"):
                scene_id = item.item_id if kind == "scene" else key
                if scene_id not in lines:
                    lines[scene_id] = self.scene_line(scene_id)
                card["scene_line"], card["scene_line_editable"] = lines[scene_id]
            if kind == "clip":
                card["prompt"] = motions.get(key)
                card["retake_asked"] = key in asked
            out[kind].append(card)
        for kind in ("character", "location", "scene"):
            out[kind].sort(key=lambda c: (c["score"] is None, c["score"] or 0.0) if scores else (0, 0.0))
        return {"pictures_dir": folder.name if folder else None, "kinds": out}

    def _motions(self) -> dict[str, str]:
        step = self.step("3.animate.py")
        if step is None:
            return {}
        try:
            motions = read_descriptions(step.pipeline_dir / "input" / "2.motion.txt", "motion").as_dict()
        except PipelineError:
            return {}
        out = {}
        for (kind, key) in self.items():
            if kind == "clip":
                try:
                    out[key] = motions.get(motion_id_for(key))
                except ValueError:
                    continue
        return {k: v for k, v in out.items() if v}

    # ---------------------------------------------------------------- tonight
    def tonight(self) -> dict[str, Any]:
        """Per script its items done / preview / failed / left (as --status), and what runs now."""
        rows = []
        for step in self.steps:
            started = state_path(step).is_file()
            counts = count_step(step) if started else None
            rows.append({"position": step.position, "name": step.name, "started": started,
                         "done": counts.done if counts else None, "preview": counts.preview if counts else None,
                         "failed": counts.failed if counts else None, "left": counts.left if counts else None,
                         "took": round(counts.took, 1) if counts else None})
        state = tonight.tonight_state(self.pipeline_dir)
        state.update(pipeline=self.pipeline_dir.name, steps=rows, status=status_lines(self.pipeline_dir, self.steps))
        return state

    # ---------------------------------------------------------------- morning and publishing
    def publish_video(self) -> Path | None:
        """The file step 12 would upload: its --video-file, else its pipeline's output/final.mp4."""
        step = self.step("12.youtube.py")
        if step is None:
            return None
        args = list(step.args)
        if "--video-file" in args and args.index("--video-file") + 1 < len(args):
            return (step.path.parent / args[args.index("--video-file") + 1]).resolve()
        return step.pipeline_dir.resolve() / "output" / "final.mp4"

    def output_file(self, name: str) -> Path | None:
        """The files the morning view shows, by a fixed name: `thumbnail`, `video`, `short-<n>`."""
        thumb = self.step("10.thumbnail.py")
        if name == "thumbnail" and thumb is not None:
            path = thumb.pipeline_dir / "output" / "thumbnail.png"
        elif name == "video":
            path = self.publish_video()
            if path is None or not path.is_file():
                path = self.pipeline_dir / "output" / "final.mp4"
        elif name.startswith("short-") and name[6:].isdigit() and self.step("11.video.py") is not None:
            shorts = dict(find_shorts(self.step("11.video.py").pipeline_dir / "output" / "shorts"))
            path = shorts.get(int(name[6:]))
        else:
            return None
        return path if path is not None and path.is_file() and _inside(path, self.roots) else None

    def morning(self) -> dict[str, Any]:
        try:
            report = json.loads((self.pipeline_dir / "output" / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            report = None
        shorts = []
        if self.step("11.video.py") is not None:
            for number, _path in find_shorts(self.step("11.video.py").pipeline_dir / "output" / "shorts"):
                shorts.append({"number": number, "media": f"/media/output/short-{number}"})
        return {"report": report if isinstance(report, dict) else None,
                "thumbnail": "/media/output/thumbnail" if self.output_file("thumbnail") else None,
                "video": "/media/output/video" if self.output_file("video") else None,
                "shorts": shorts, "upload": self.publishing()}

    def publishing(self) -> dict[str, Any]:
        """The upload's state (step 12's checkpoints and dry-run manifest) and the approval of the video."""
        step = self.step("12.youtube.py")
        if step is None:
            return {"present": False}
        video = self.publish_video()
        entries = read_entries(state_file(step.pipeline_dir, STATE_NAME))
        uploads = []
        for key, entry in entries.items():
            data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
            if key.startswith("check_"):
                continue
            uploads.append({"item": key, "status": entry.get("status", "done"), "url": data.get("url"),
                            "privacy": data.get("privacy"), "progress": data.get("progress"), "size": data.get("size")})
        manifest = None
        try:
            raw = json.loads((step.pipeline_dir / "output" / "upload.manifest.json").read_text(encoding="utf-8"))
            manifest = {"dry_run": raw.get("dry_run"), "requests": len(raw.get("requests") or [])}
        except (OSError, ValueError, UnicodeDecodeError, AttributeError):
            pass
        approval = read_approval(step.pipeline_dir)
        settings = self.settings(step.pipeline_dir)
        exists = video is not None and video.is_file()
        return {
            "present": True, "video": video.name if video else None, "video_exists": exists,
            "size": video.stat().st_size if exists else None,
            "require_approval": bool(settings.get("YOUTUBE_REQUIRE_APPROVAL", False)) if settings else False,
            "approved": bool(exists and approval is not None and approval.matches(video)),
            "approved_at": approval.approved_at if approval else None,
            "approval_stale": bool(exists and approval is not None and not approval.matches(video)),
            "uploads": uploads, "manifest": manifest,
        }
