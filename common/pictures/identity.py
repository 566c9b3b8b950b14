"""The identity judge's loop: candidates, scores against the character sheets, bounded retakes.

Why: a picture model keeps a face only most of the time, and a night's video is hundreds of
pictures and clips nobody watches being made. So every keyframe (gen.image 3.scene.py) and every
animated clip (gen.video 3.animate.py) is made as candidates, each scored by a judge against the
sheets of the characters the scene line names (common.pictures.judges: the LLM server's vision
model, or offline the cards' identity colours): 0-1 per character with one line of reason, a
candidate as good as its worst character. The best candidate is kept when it reaches
IDENTITY_THRESHOLD; otherwise the subject is retaken with new seeds, at most IDENTITY_RETAKES
times, and then the best of all is kept with a flag, listed first on the review page.

`keep_best` does not know how a picture or clip is made: the caller gives `make(seed, out)`, so the
same loop serves stitched-reference keyframes, layered keyframes and clips alike.

Seeds: candidate n (0-based, counted over every take) gets the item's own seed moved SEED_STEP
n times, so candidate 0 is exactly the picture made before candidates existed.

Checkpoints, in the step's own store: each candidate (`<key>#cand<n>`, its file in the
candidates folder) and each judge's answer (`<key>#judge<n>`) is recorded the moment it exists,
so a kill costs at most the candidate or the answer in flight. Once the item itself is recorded
(its data holds the whole story as `identity`), `tidy` forgets them and deletes the candidates.
An engine whose output does not follow the seed (the offline engine) gets one candidate and no
retakes: they would all be the same picture.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from common.run.errors import ConfigError
from common.state.atomic import atomic_path, atomic_write_json
from common.state.checkpoints import CheckpointStore, Entry, fingerprint

VERSION = 1
SEED_STEP = 1_000_003  # a prime: candidates' seeds never meet the retake.txt takes' (plan.RETAKE_SEED_STEP)
IDENTITY_FILE = "identity.json"
JUDGE_MODES = ("auto", "vision", "offline", "off")

Make = Callable[[int, Path], "dict[str, Any] | None"]  # (seed, file to write) -> what was done, for the checkpoint
Views = Callable[[Path, Path], list[Path]]  # (candidate, scratch folder) -> the pictures the judge looks at


@dataclass(frozen=True)
class CastMember:
    """A character the judge looks for: its sheet (else its picture) and its words."""

    tag: str
    name: str
    description: str = ""
    reference: Path | None = None

    def identity(self) -> list[Any]:
        return [self.tag, self.name, self.description, self.reference]  # the reference is hashed by content


@dataclass(frozen=True)
class Subject:
    """What is judged: a scene's keyframe or a shot's clip."""

    key: str  # the step's checkpoint key (scene_1.2, scene_1.2.v2, a clip)
    label: str  # the scene id the judge is told
    scene: str  # the scene line in words
    cast: tuple[CastMember, ...]
    views: str = "the picture"  # what the judge's pictures are ("the first, middle and last frames of one clip")


@dataclass(frozen=True)
class Verdict:
    """One judge's answer about one candidate: a score and a reason per character."""

    scores: dict[str, float]
    reasons: dict[str, str]

    @property
    def score(self) -> float:
        """As good as its worst character; 1 with nobody to check."""
        return min(self.scores.values(), default=1.0)

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {tag: {"score": round(score, 3), "reason": self.reasons.get(tag, "")} for tag, score in self.scores.items()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Mapping[str, Any]]) -> "Verdict":
        return cls({t: float(v["score"]) for t, v in raw.items()}, {t: str(v.get("reason", "")) for t, v in raw.items()})


class Judge(Protocol):
    name: str  # "vision" or "offline", shown in identity.json
    preview: bool  # an offline judge's answers are marked like offline outputs

    def identity(self) -> dict[str, Any]: ...

    def judge(self, views: Sequence[Path], subject: Subject) -> Verdict: ...


@dataclass(frozen=True)
class Policy:
    """How many candidates, how good the kept one must be, how often to retake."""

    candidates: int
    threshold: float
    retakes: int
    mode: str  # IDENTITY_JUDGE

    @classmethod
    def from_settings(cls, settings: Any, *, candidates: bool = True) -> "Policy":
        """KEYFRAME_CANDIDATES (`candidates`: only keyframes have several), IDENTITY_THRESHOLD, IDENTITY_RETAKES."""
        count = int(settings.KEYFRAME_CANDIDATES) if candidates else 1
        threshold, retakes = float(settings.IDENTITY_THRESHOLD), int(settings.IDENTITY_RETAKES)
        mode = str(settings.IDENTITY_JUDGE).lower()
        if count < 1 or count > 16:
            raise ConfigError(f"KEYFRAME_CANDIDATES is {count}; make 1 to 16 pictures per scene.")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"IDENTITY_THRESHOLD is {threshold}; use a score from 0 to 1.")
        if retakes < 0 or retakes > 10:
            raise ConfigError(f"IDENTITY_RETAKES is {retakes}; use 0 to 10 retakes.")
        if mode not in JUDGE_MODES:
            raise ConfigError(f"IDENTITY_JUDGE is {mode!r}; use one of {', '.join(JUDGE_MODES)}.")
        return cls(count, threshold, retakes, mode)

    def identity(self) -> list[Any]:
        """What the kept picture depends on. The judge that answered is not in it: a judge that comes and
        goes (an LLM server down one night) never redoes finished pictures."""
        return [VERSION, self.candidates, self.threshold, self.retakes, self.mode]

    @staticmethod
    def seed(base: int, index: int) -> int:
        return (int(base) + SEED_STEP * index) % 2**32


@dataclass(frozen=True)
class Candidate:
    index: int  # 0-based over every take
    take: int
    seed: int
    path: Path
    made: dict[str, Any]
    verdict: Verdict | None


@dataclass(frozen=True)
class Kept:
    """The candidate kept, what `make` said about it, and the record identity.json and the review show."""

    path: Path
    seed: int
    made: dict[str, Any]
    record: dict[str, Any]


def candidate_key(key: str, index: int) -> str:
    return f"{key}#cand{index + 1}"


def judge_key(key: str, index: int) -> str:
    return f"{key}#judge{index + 1}"


def _make(subject: Subject, make: Make, index: int, take: int, seed: int, item_fp: str, store: CheckpointStore,
          folder: Path, suffix: str, preview: bool) -> tuple[Path, dict[str, Any], str]:
    key, fp = candidate_key(subject.key, index), fingerprint(item_fp, "candidate", seed)
    path = folder / f"{subject.key}.{index + 1}{suffix}"
    cached = store.lookup(key, fp)
    if cached is not None:
        return path, dict(cached.data.get("made") or {}), fp
    path.parent.mkdir(parents=True, exist_ok=True)
    made = dict(make(seed, path) or {})
    store.record(key, fp, files=[path], data={"seed": seed, "take": take, "made": made}, preview=preview)
    return path, made, fp


def _judge(subject: Subject, judge: Judge, index: int, path: Path, candidate_fp: str, store: CheckpointStore,
           views: Views | None) -> Verdict:
    key = judge_key(subject.key, index)
    fp = fingerprint(candidate_fp, judge.identity(), [m.identity() for m in subject.cast], subject.scene)
    cached = store.lookup(key, fp)
    if cached is not None:
        return Verdict.from_json(cached.data["verdict"])
    with tempfile.TemporaryDirectory(prefix="judge-") as scratch:  # outside the project: a kill leaves nothing
        pictures = views(path, Path(scratch)) if views is not None else [path]
        verdict = judge.judge(pictures, subject)
    store.record(key, fp, data={"verdict": verdict.to_json()}, preview=judge.preview)
    return verdict


def keep_best(subject: Subject, make: Make, *, base_seed: int, item_fp: str, judge: Judge | None, policy: Policy,
              store: CheckpointStore, folder: Path, suffix: str = ".png", views: Views | None = None,
              preview: bool = False, seeded: bool = True, say: Callable[[str], None] = lambda line: None) -> Kept:
    """Make and judge candidates until one reaches the threshold or the retakes run out; see the module docstring.

    `item_fp`: the item's fingerprint (each candidate's derives from it and its seed); `folder`: where the
    candidates are made; `seeded`: whether a new seed gives a new picture (False: one candidate, no retakes).
    """
    if not subject.cast:
        judge = None  # nobody to look for: one picture, as made
    judged = judge is not None
    varied = judged and seeded
    per_take = policy.candidates if varied else 1
    rounds = policy.retakes + 1 if varied else 1
    tried: list[Candidate] = []
    best: Candidate | None = None
    for take in range(rounds):
        if take:
            assert best is not None and best.verdict is not None
            say(f"{subject.label}: identity {best.verdict.score:.2f} is under {policy.threshold:g} "
                f"({_worst(best.verdict)}); retake {take} of {policy.retakes} with new seeds")
        for number in range(per_take):
            index = take * per_take + number
            seed = policy.seed(base_seed, index)
            path, made, fp = _make(subject, make, index, take, seed, item_fp, store, folder, suffix, preview)
            verdict = _judge(subject, judge, index, path, fp, store, views) if judge is not None else None
            tried.append(Candidate(index, take, seed, path, made, verdict))
        best = max(tried, key=lambda c: c.verdict.score if c.verdict is not None else 0.0)  # the first of equals
        if not judged or best.verdict is None or best.verdict.score >= policy.threshold:
            break
    assert best is not None
    flagged = judged and best.verdict is not None and best.verdict.score < policy.threshold
    if flagged:
        say(f"{subject.label}: kept candidate {best.index + 1} of {len(tried)} with identity {best.verdict.score:.2f}, "
            f"under {policy.threshold:g} after {tried[-1].take} retake(s): flagged")
    record = {
        "scene": subject.label, "judge": judge.name if judge is not None else "none", "judged": judged,
        "note": "" if judged or subject.cast else "no character in its scene line",
        "score": round(best.verdict.score, 3) if best.verdict is not None else None, "flagged": flagged,
        "threshold": policy.threshold, "kept": best.index + 1, "seed": best.seed, "retakes": tried[-1].take,
        "characters": best.verdict.to_json() if best.verdict is not None else {m.tag: {} for m in subject.cast},
        "candidates": [{"candidate": c.index + 1, "take": c.take, "seed": c.seed,
                        "score": round(c.verdict.score, 3) if c.verdict is not None else None,
                        "characters": c.verdict.to_json() if c.verdict is not None else {}} for c in tried],
    }
    return Kept(best.path, best.seed, best.made, record)


def _worst(verdict: Verdict) -> str:
    tag = min(verdict.scores, key=lambda t: verdict.scores[t])
    reason = verdict.reasons.get(tag, "")
    return f"{tag}: {reason}" if reason else tag


def made_before(store: CheckpointStore, key: str, fp: str, existing: Path, out: Path) -> dict[str, Any] | None:
    """The item as made before it was judged (its entry under its picture's own fingerprint `fp`), copied to
    `out` as a candidate, with what its entry said; None when there is none. A finished picture or clip is
    then judged as it is, never made again, when candidates and the judge first come to a project."""
    before = store.lookup(key, fp)
    if before is None or not existing.is_file() or "identity" in before.data:
        return None
    with atomic_path(out) as tmp:
        shutil.copyfile(existing, tmp)
    return dict(before.data)


def copy_kept(kept: Kept, out: Path) -> Path:
    """The kept candidate at the item's own path, whole or not at all (candidates stay until `tidy`)."""
    with atomic_path(out) as tmp:
        shutil.copyfile(kept.path, tmp)
    return out


def tidy(store: CheckpointStore, done: Iterable[str], folder: Path) -> None:
    """Forget the candidates and answers of finished items, then delete every file in the candidates folder
    that no remaining entry names (an item still in progress keeps its own). The entries go first: a kill in
    between leaves a stray file for the next tidy, never an entry naming a missing file."""
    finished = set(done)
    entries = store.entries()
    for key in entries:
        base, _, rest = key.partition("#")
        item = entries.get(base)
        if rest.startswith(("cand", "judge")) and base in finished and item is not None and item.status == "done":
            store.forget(key)
    if not folder.is_dir():
        return
    named = {(store.base_dir / name).resolve() for entry in store.entries().values() for name in entry.files}
    for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
        if path.is_file() and path.resolve() not in named:
            path.unlink(missing_ok=True)
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


# ---------------------------------------------------------------- identity.json

class IdentityLog:
    """output/identity.json: every judged item's record, rewritten atomically as each one finishes.

    It is a view of the checkpoints (the items' `identity` data), so it is rebuilt whole at the
    end of each step and can be deleted at any time."""

    def __init__(self, path: Path, table: str, policy: Policy, judge: str, script: str) -> None:
        self.path, self.table, self.policy, self.judge, self.script = Path(path), table, policy, judge, script
        self.records: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self, entries: Mapping[str, Entry], keys: Sequence[str]) -> None:
        """Start from the finished items' records, in the step's order."""
        with self._lock:
            self.records = {k: dict(entries[k].data["identity"]) for k in keys
                            if k in entries and entries[k].status == "done" and entries[k].data.get("identity")}

    def put(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self.records[key] = record
            self._write()

    def write(self, keys: Sequence[str]) -> Path:
        with self._lock:
            self.records = {k: self.records[k] for k in keys if k in self.records}
            return self._write()

    def _write(self) -> Path:
        flagged = [k for k, r in self.records.items() if r.get("flagged")]
        doc = {"version": VERSION,
               "note": f"Written by {self.script} from its checkpoints: the identity judge's scores (0-1 per character), "
                       "every candidate's seed, the one kept, the retakes used and whether it stayed under the threshold "
                       "(flagged). To redo a picture, put its id in retake.txt; editing this file changes nothing.",
               "judge": self.judge, "threshold": self.policy.threshold, "retakes": self.policy.retakes,
               "candidates": self.policy.candidates, "flagged": flagged, self.table: self.records}
        atomic_write_json(self.path, doc)
        return self.path
