"""The channel's release schedule: each story's video gets the next free publishing slot.

CHANNEL_PUBLISH_TIMES (local times of day, e.g. ["18:00"]) every CHANNEL_PUBLISH_EVERY_DAYS days
make the slots. A story gets its slot when its upload (or the dry run's manifest) is about to be
made, never earlier, so a story that fails before then leaves no hole in the schedule. The slot is
recorded in `DIR/channel.schedule.json` before anything is sent: a rerun, a killed run and the next
night's queue all give the same story the same slot, and new stories continue after the last slot
recorded. A slot that has passed without its video being uploaded (a failure, a spent quota) is
given up and the story gets the next free one: YouTube refuses a publishAt in the past.
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from common.config.paths import workspace_of
from common.run.errors import ConfigError
from common.state.atomic import atomic_write_json
from common.state.checkpoints import read_entries, state_file

SCHEDULE_FILE = "channel.schedule.json"
LEAD = timedelta(minutes=15)  # a slot closer than this to now is not taken: the upload needs the time
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)\Z")


def local_now() -> datetime:
    return datetime.now().astimezone()


def parse_times(values: Sequence[Any], setting: str = "CHANNEL_PUBLISH_TIMES") -> list[time]:
    """["18:00", "9:30"] -> sorted times of day; a malformed one is one sentence."""
    out = []
    for value in values:
        match = _TIME.match(str(value).strip())
        if not match:
            raise ConfigError(f"{setting} has {value!r}, which is not a time of day; write it as HH:MM, e.g. \"18:00\".")
        out.append(time(int(match.group(1)), int(match.group(2))))
    return sorted(set(out))


def _at(day: date, moment: time) -> datetime:
    """That local wall-clock time, with the offset in force on that day (summer time included)."""
    return datetime.combine(day, moment).astimezone()


def next_slot(times: Sequence[time], every_days: int, after: datetime | None, now: datetime) -> datetime:
    """The first slot later than `after` (the last one taken) and at least LEAD after `now`. Days of slots
    follow on from `after`'s day (or today) every `every_days` days."""
    earliest = now + LEAD
    day = (after or now).astimezone().date()
    for _ in range(4000):  # ten years of days: a schedule always has a slot long before that
        for moment in times:
            slot = _at(day, moment)
            if slot > earliest and (after is None or slot > after):
                return slot
        day += timedelta(days=max(1, every_days))
    raise ConfigError("CHANNEL_PUBLISH_TIMES gives no slot in the next ten years; check it.")


def read_slots(folder: Path) -> dict[str, datetime]:
    """The slots recorded so far, by story name ({} when none or unreadable)."""
    try:
        raw = json.loads((Path(folder) / SCHEDULE_FILE).read_text(encoding="utf-8"))
        return {str(k): datetime.fromisoformat(v) for k, v in raw.get("slots", {}).items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _uploaded(pipeline_dir: Path) -> bool:
    """Step 12's checkpoints hold this story's video: its slot is what YouTube has now."""
    entry = read_entries(state_file(pipeline_dir, "12.youtube")).get("video") or {}
    return entry.get("status", "done") == "done" and bool((entry.get("data") or {}).get("video_id"))


def publish_slot(settings: Any, pipeline_dir: Path, now: Callable[[], datetime] = local_now) -> datetime | None:
    """The publishAt of the story whose step 12 runs in `pipeline_dir`: None outside channel mode or with
    no schedule (CHANNEL_PUBLISH_TIMES empty); else its recorded slot, or the next free one, recorded."""
    workspace = workspace_of(Path(pipeline_dir))
    times = parse_times(settings.CHANNEL_PUBLISH_TIMES)
    if workspace is None or not times:
        return None
    folder, story = workspace.parent, workspace.name
    slots = read_slots(folder)
    current = now()
    mine = slots.get(story)
    if mine is not None and (mine > current + LEAD or _uploaded(pipeline_dir)):
        return mine
    others = [slot for name, slot in slots.items() if name != story]
    slots[story] = next_slot(times, int(settings.CHANNEL_PUBLISH_EVERY_DAYS), max(others, default=None), current)
    atomic_write_json(folder / SCHEDULE_FILE, {"slots": {k: v.isoformat() for k, v in slots.items()}})
    return slots[story]
