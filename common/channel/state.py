"""The queue's own record, `DIR/channel.state.json`: how each story's last run ended.

Written atomically when a story starts and when it ends, so after a kill the record says which
story was running; everything else (items done, failed, uploaded) is read from the stories' own
checkpoints. One queue runs at a time (its lock), so there is one writer.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.state.atomic import atomic_write_json

STATE_FILE = "channel.state.json"
STATE_VERSION = 1

# A story's state after a run of the queue.
FINISHED = "finished"  # every selected script ran to exit 0
FAILED = "failed"  # a script (or the checks before it) failed: the reason says why
RUNNING = "running"  # the queue was running it (after a kill: interrupted)
STOPPED = "stopped"  # --until-time or a signal stopped it at a checkpoint; the next run continues it
UPLOAD_WAITS = "upload waits"  # made, but YouTube's daily quota was spent: the next run uploads it
WAITING = "waiting"  # not started (yet): --max-stories, --until-time, or a queue that stopped early


@dataclass
class StoryRecord:
    state: str = WAITING
    code: int | None = None
    reason: str = ""  # the run's summary line: for a failure, the sentence that says what to do
    started_at: str = ""
    ended_at: str = ""
    took: float = 0.0  # seconds of the last run that did work
    pipeline: str = ""  # the pipeline whose queue ran it (gen.audio, gen.image, gen.video)

    @classmethod
    def from_json(cls, raw: Any) -> "StoryRecord":
        if not isinstance(raw, dict):
            return cls()
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        try:
            return cls(**known)
        except TypeError:
            return cls()


@dataclass
class ChannelState:
    """The record as one pipeline's queue sees it: a story last run by another pipeline's queue (gen.audio's,
    then gen.video's) is not finished for this one, so its record reads as empty."""

    path: Path
    pipeline: str
    stories: dict[str, StoryRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, pipeline: str) -> "ChannelState":
        """The record, or an empty one when there is none or it cannot be read (the checkpoints still tell)."""
        path = Path(folder) / STATE_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            stories = {str(k): StoryRecord.from_json(v) for k, v in raw.get("stories", {}).items()}
        except (OSError, ValueError, AttributeError):
            stories = {}
        return cls(path, pipeline, stories)

    def get(self, name: str) -> StoryRecord:
        record = self.stories.get(name)
        return record if record is not None and record.pipeline in ("", self.pipeline) else StoryRecord()

    def put(self, name: str, record: StoryRecord) -> None:
        record.pipeline = self.pipeline
        self.stories[name] = record
        atomic_write_json(self.path, {"version": STATE_VERSION,
                                      "stories": {k: asdict(v) for k, v in self.stories.items()}})
