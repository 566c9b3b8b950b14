"""A person's approval of the video to publish: `output/tracking/12.youtube.approval.json`.

Why it exists: with YOUTUBE_REQUIRE_APPROVAL=1 nothing goes to the channel that nobody looked at.
The dailies page (`generate.py --serve`) records an approval of one file as it is now (its path,
size and modification time), next to step 12's own upload state; step 12 uploads only when the
video it would send still matches. A video made again after the approval (a retake, an edit)
differs in size or time, so it needs a new approval: nobody approves a video they have not seen.
The file is small JSON, so a person could write or delete it by hand as well.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.state.atomic import atomic_write_json
from common.state.checkpoints import now_text

APPROVAL_NAME = "12.youtube.approval.json"


def approval_path(pipeline_dir: Path) -> Path:
    """Beside `12.youtube.state.json` of the pipeline that runs step 12 (gen.audio)."""
    return Path(pipeline_dir) / "output" / "tracking" / APPROVAL_NAME


@dataclass(frozen=True)
class Approval:
    video: str  # the resolved path of the approved file
    size: int
    mtime_ns: int
    approved_at: str

    def matches(self, video: Path) -> bool:
        """The approved file is `video`, unchanged since it was approved."""
        try:
            stat = video.stat()
        except OSError:
            return False
        return (self.video == str(video.resolve()) and self.size == stat.st_size
                and self.mtime_ns == stat.st_mtime_ns)


def read_approval(pipeline_dir: Path) -> Approval | None:
    """The recorded approval, or None when there is none or it cannot be read (then nothing is approved)."""
    try:
        raw: Any = json.loads(approval_path(pipeline_dir).read_text(encoding="utf-8"))
        return Approval(str(raw["video"]), int(raw["size"]), int(raw["mtime_ns"]), str(raw.get("approved_at", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def approve(pipeline_dir: Path, video: Path) -> Approval:
    """Record `video`, as it is now, as approved for publishing (replacing an earlier approval)."""
    stat = video.stat()
    approval = Approval(str(video.resolve()), stat.st_size, stat.st_mtime_ns, now_text())
    path = approval_path(pipeline_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"video": approval.video, "size": approval.size, "mtime_ns": approval.mtime_ns,
                             "approved_at": approval.approved_at})
    return approval


def waiting_reason(pipeline_dir: Path, video: Path) -> str | None:
    """Why `video` may not be published yet under YOUTUBE_REQUIRE_APPROVAL, or None when it is approved."""
    approval = read_approval(pipeline_dir)
    if approval is not None and approval.matches(video):
        return None
    if approval is None:
        why = "nobody approved it yet"
    elif approval.video != str(video.resolve()):
        why = f"the approval recorded is for another file ({approval.video})"
    else:
        why = f"it changed since it was approved on {approval.approved_at}"
    return (f"YOUTUBE_REQUIRE_APPROVAL is on and {video.name} was not uploaded: {why}; approve it on the dailies "
            "page (python generate.py --serve, Publishing) and run again")
