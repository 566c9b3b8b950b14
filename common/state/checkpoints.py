"""Per-item checkpoints: `output/tracking/<script>.state.json`.

An item (a TTS chunk, an LLM answer, an image, a clip, an upload) is done when its entry's
fingerprint matches the inputs and settings that would produce it now, and every file the
entry names still exists and is non-empty. So an interruption costs at most the item in
flight, and an edited story line redoes that line's work only. The file is rewritten
atomically after every item. A file that cannot be read whole (a disk fault, a hand edit) is
salvaged, never a crash: it is moved aside, and every entry that still parses and whose files
are still in place is kept; a warning says how many were kept and how many lost.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from common.run.errors import ConfigError
from common.state.atomic import atomic_write_json

STATE_VERSION = 1
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # local time of finished_at: compares as text, in run order


CLEANED_SUFFIX = ".cleaned.json"  # what CLEANUP_TRACKING_FILES leaves of a state file


def read_cleaned_mark(path: Path) -> dict[str, Any]:
    """A cleanup mark's content; {} when unreadable (callers then assume the worst)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return raw if isinstance(raw, dict) else {}


def now_text() -> str:
    return time.strftime(TIME_FORMAT)


def state_file(pipeline_dir: Path, script: str) -> Path:
    """Where a pipeline keeps a script's checkpoints (`script` is its stem, e.g. "2.story")."""
    return Path(pipeline_dir) / "output" / "tracking" / f"{script}.state.json"


def _items_table(path: Path) -> dict[str, Any]:
    """ValueError (or OSError) when the file holds no items table."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), dict):
        raise ValueError("no items table")
    return raw["items"]


_ENTRY_START = re.compile(r'[\s,]*"')
_COLON = re.compile(r"\s*:\s*")


def salvage_items(text: str) -> tuple[dict[str, Any], int]:
    """The entries of a damaged state file's items table that still parse, and how many did not.

    A torn or hand-edited file usually breaks in one place: each entry is decoded on its own,
    and after a broken one the scan goes on at the next line indented like the entries.
    """
    decoder = json.JSONDecoder()
    start = re.search(r'"items"\s*:\s*\{', text)
    if start is None:
        return {}, 0
    found: dict[str, Any] = {}
    lost = 0
    pos = start.end()
    indent: str | None = None
    while True:
        head = _ENTRY_START.match(text, pos)
        if head is None:
            break
        key_at = head.end() - 1
        if indent is None:
            line_start = text.rfind("\n", 0, key_at) + 1
            indent = text[line_start:key_at] if not text[line_start:key_at].strip() else ""
        try:
            key, after_key = decoder.raw_decode(text, key_at)
            colon = _COLON.match(text, after_key)
            if not isinstance(key, str) or colon is None:
                raise ValueError("no key")
            value, pos = decoder.raw_decode(text, colon.end())
            found[key] = value
            continue
        except ValueError:
            lost += 1
        if not indent:  # one long line: nothing to find the next entry by
            break
        again = re.compile("\n" + re.escape(indent) + '"').search(text, key_at + 1)
        if again is None:
            break
        pos = again.start()
    return found, lost


def _readable_items(path: Path) -> tuple[dict[str, Any], int, str]:
    """(items, entries lost, why) of a state file: `why` is empty when the file was read whole."""
    try:
        return _items_table(path), 0, ""
    except (ValueError, UnicodeDecodeError) as exc:
        text = path.read_bytes().decode("utf-8", errors="replace")
        try:
            raw = json.loads(text)
        except ValueError:
            items, lost = salvage_items(text)
        else:
            table = raw.get("items") if isinstance(raw, dict) else None
            items, lost = (dict(table), 0) if isinstance(table, dict) else ({}, 0)
        return items, lost, str(exc) or type(exc).__name__


def read_entries(path: Path, *, bookkeeping: bool = False) -> dict[str, dict[str, Any]]:
    """A state file's items for anyone but its owner: nothing is written (a CheckpointStore moves a corrupt
    file aside and deletes temp files), and a missing file is empty, an unreadable one holds the entries that
    still parse, so a status or a check never fails on it. Keys with `#` are a script's intermediate
    bookkeeping, not items, and are left out unless `bookkeeping` asks for them."""
    try:
        items, _lost, _why = _readable_items(path)
    except OSError:
        return {}
    return {k: v for k, v in items.items() if (bookkeeping or "#" not in k) and isinstance(v, dict)}


def fingerprint(*parts: Any) -> str:
    """A stable digest of JSON-able parts; Paths are hashed by content so a changed file counts."""

    def normal(value: Any) -> Any:
        if isinstance(value, Path):
            return {"file": value.name, "sha256": file_digest(value)}
        if isinstance(value, dict):
            return {str(k): normal(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
        if isinstance(value, (list, tuple)):
            return [normal(v) for v in value]
        return value

    blob = json.dumps([normal(p) for p in parts], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


_digest_cache: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file, cached by (path, size, mtime) because voices are hashed per chunk."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _digest_cache.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        cached = _digest_cache[key] = digest.hexdigest()
    return cached


class UnreadableStateError(ConfigError):
    """A state file that must not be salvaged could not be read whole; it is left untouched."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path} could not be read ({why}); it is left as it is.")
        self.path = path
        self.why = why


@dataclass(frozen=True)
class Entry:
    key: str
    fingerprint: str
    files: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    preview: bool = False
    finished_at: str = ""
    took: float | None = None
    status: str = "done"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fingerprint": self.fingerprint, "files": list(self.files), "status": self.status}
        if self.data:
            out["data"] = self.data
        if self.preview:
            out["preview"] = True
        out["finished_at"] = self.finished_at
        if self.took is not None:
            out["took"] = round(self.took, 3)
        return out

    @classmethod
    def from_json(cls, key: str, raw: dict[str, Any]) -> "Entry":
        return cls(key, str(raw["fingerprint"]), tuple(str(f) for f in raw.get("files", ())),
                   dict(raw.get("data", {})), bool(raw.get("preview", False)), str(raw.get("finished_at", "")),
                   raw.get("took"), str(raw.get("status", "done")))


class CheckpointStore:
    """The checkpoints of one script.

    `base_dir` is the pipeline folder: entries store file paths relative to it so a moved
    project keeps its checkpoints. With `resumable=False` nothing is read or written
    (--disable-resumable); with `force_start=True` earlier entries are ignored and replaced.
    """

    def __init__(self, path: Path, *, base_dir: Path, resumable: bool = True, force_start: bool = False,
                 warn: Callable[[str], None] = print, salvage: bool = True) -> None:
        """`salvage=False`: an unreadable file raises UnreadableStateError and is left as it is, for a
        state that must never be partly forgotten (step 12's: it records what was published)."""
        self.path = Path(path)
        self.base_dir = Path(base_dir)
        self.resumable = resumable
        self.salvage = salvage
        self.warn = warn
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        if resumable and not force_start:
            self._entries = self._load()

    # ----- loading -----
    def _load(self) -> dict[str, Entry]:
        # A kill between writing a new state and renaming it leaves the temp file: the state it
        # held was never current, so it goes (one process per script owns this file).
        for stale in self.path.parent.glob(f".{self.path.stem}.*.tmp{self.path.suffix}"):
            stale.unlink(missing_ok=True)
        if not self.path.exists():
            return {}
        items, lost, why = _readable_items(self.path)
        entries: dict[str, Entry] = {}
        for key, value in items.items():
            try:
                entries[key] = Entry.from_json(key, value)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                lost += 1
                why = why or f"entry {key!r}: {type(exc).__name__} {exc}"
        if not why:
            return entries
        if not self.salvage:
            raise UnreadableStateError(self.path, why)
        kept = {key: entry for key, entry in entries.items() if self._valid_files(entry)}
        lost += len(entries) - len(kept)
        aside = self.path.with_name(f"{self.path.stem}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
        os.replace(self.path, aside)
        self.warn(
            f"warning: checkpoint file {self.path.name} was unreadable ({why}); moved it to {aside.name}, kept "
            f"{len(kept)} item(s) that still parse and whose files are in place, lost {lost}: "
            "those are made again."
        )
        self._entries = kept
        if kept and self.resumable:
            with self._lock:
                self._save_locked()  # the salvaged state is current again, readable by --status
        return kept

    # ----- queries -----
    def _valid_files(self, entry: Entry) -> bool:
        for rel in entry.files:
            path = self.base_dir / rel
            try:
                if path.stat().st_size <= 0:
                    return False
            except OSError:
                return False
        return True

    def lookup(self, key: str, fp: str) -> Entry | None:
        """The finished entry for `key` if it still holds for fingerprint `fp`, else None."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.status != "done" or entry.fingerprint != fp or not self._valid_files(entry):
            return None
        return entry

    def is_done(self, key: str, fp: str) -> bool:
        return self.lookup(key, fp) is not None

    def entries(self) -> dict[str, Entry]:
        with self._lock:
            return dict(self._entries)

    def any_preview(self) -> bool:
        return any(e.preview for e in self.entries().values())

    def real_entry(self, key: str) -> Entry | None:
        """The finished real (non-preview) entry for `key` whose files are all still there, whatever
        its fingerprint: a preview must never replace it (only --force-start, which loads nothing)."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.status != "done" or entry.preview or not self._valid_files(entry):
            return None
        return entry

    # ----- updates -----
    def record(self, key: str, fp: str, *, files: Iterable[Path | str] = (), data: dict[str, Any] | None = None,
               preview: bool = False, took: float | None = None, status: str = "done") -> Entry:
        """Record a finished (or failed) item and persist the whole state atomically."""
        entry = Entry(key, fp, tuple(self._relative(f) for f in files), dict(data or {}), preview, now_text(), took,
                      status)
        with self._lock:
            self._entries[key] = entry
            self._save_locked()
        return entry

    def forget(self, key: str) -> None:
        with self._lock:
            if self._entries.pop(key, None) is not None:
                self._save_locked()

    def retain_only(self, keys: Iterable[str]) -> None:
        """Drop entries for items that no longer exist (e.g. a story that got shorter)."""
        keep = set(keys)
        with self._lock:
            stale = [k for k in self._entries if k not in keep]
            for key in stale:
                del self._entries[key]
            if stale:
                self._save_locked()

    def finish(self, *, cleanup: bool) -> None:
        """CLEANUP_TRACKING_FILES: a finished script's state file is removed. A mark of a few bytes stays
        in its place: 12.youtube.py must still know whether anything was made as a preview."""
        if cleanup and self.path.exists():
            script = self.path.name.removesuffix(".state.json")
            atomic_write_json(self.path.with_name(script + CLEANED_SUFFIX), {
                "version": STATE_VERSION, "script": script, "items": len(self.entries()),
                "preview": self.any_preview(), "finished_at": now_text()})
            self.path.unlink()

    def _relative(self, path: Path | str) -> str:
        path = Path(path)
        try:
            return path.resolve().relative_to(self.base_dir.resolve()).as_posix()
        except ValueError:
            return str(path.resolve())

    def _save_locked(self) -> None:
        if not self.resumable:
            return
        state = {
            "version": STATE_VERSION,
            "script": self.path.name.removesuffix(".state.json"),
            "items": {key: entry.to_json() for key, entry in self._entries.items()},
        }
        atomic_write_json(self.path, state, indent=1)
