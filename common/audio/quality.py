"""Did the TTS say what the story says? Line-by-line comparison of the transcript with the story.

Each story line has a span in story.wav (output/story.timings.json); the transcript words
whose middle falls in that span (a pause between two lines is split at its middle) are what
was heard for the line. Heard and expected text are normalised (case, punctuation,
apostrophes, hyphens) and compared word by word with difflib's SequenceMatcher. A line
heard much longer than written is a repeat, one heard (almost) not at all a skip, one below
the threshold otherwise garbled. A failing line names its TTS chunk, which is what
`4.quality.py --retake` regenerates: forget the chunk in 2.story.py's checkpoint, run
2.story.py (it redoes only that chunk and rejoins story.wav) and 3.transcribe.py, check again.
"""
from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from common.state.checkpoints import CheckpointStore, read_entries, state_file
from common.run.errors import ConfigError, InputError, JobError
from common.formats.srt import read_srt
from common.audio.subtitles import Word, line_words
from common.audio.transcribe import INSTALL_HINT, TIMINGS, TRANSCRIPT_FILE, read_transcript

OK, SKIPPED, REPEATED, GARBLED = "ok", "skipped", "repeated", "garbled"
VERDICTS = (OK, SKIPPED, REPEATED, GARBLED)
REPORT_FILE = "quality.json"
REPEAT_FACTOR = 1.5   # heard this many times the line's words ...
REPEAT_EXTRA = 3      # ... and at least this many more: a repeat, not a stray neighbouring word
SKIP_COVERAGE = 0.25  # fewer of the line's words heard than this (and little else): skipped
REPEAT_COVERAGE = 0.6  # a repeat still says most of the line


# ------------------------------------------------------------------ text comparison


def normalise(text: str) -> list[str]:
    """Words as a listener would compare them: no case, punctuation, apostrophes or hyphen splits."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['’‘`´]", "", text)
    return re.findall(r"[^\W_]+", text)


def similarity(expected: Sequence[str], heard: Sequence[str]) -> float:
    """SequenceMatcher ratio on normalised words: 1.0 same words in the same order, 0.0 nothing in common."""
    if not expected and not heard:
        return 1.0
    return difflib.SequenceMatcher(None, list(expected), list(heard), autojunk=False).ratio()


def _matched(expected: Sequence[str], heard: Sequence[str]) -> int:
    """How many of the expected words were heard, counting a repeated passage once."""
    matcher = difflib.SequenceMatcher(None, list(expected), list(heard), autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks())


def verdict(expected: Sequence[str], heard: Sequence[str], threshold: float) -> tuple[float, str]:
    """(similarity, ok|skipped|repeated|garbled) for one line's normalised words."""
    score = similarity(expected, heard)
    n, m = len(expected), len(heard)
    if n == 0:
        return score, OK
    coverage = _matched(expected, heard) / n
    if m == 0 or (coverage < SKIP_COVERAGE and m <= max(2, n // 2)):
        return score, SKIPPED
    if m >= max(REPEAT_FACTOR * n, n + REPEAT_EXTRA) and coverage >= REPEAT_COVERAGE:
        return score, REPEATED
    return score, OK if score >= threshold else GARBLED


# ------------------------------------------------------------------ alignment


def assign_words(spans: Sequence[tuple[float, float]], words: Iterable[Word]) -> list[list[Word]]:
    """Each word to the line whose span holds its middle; in a pause, to the nearer line."""
    buckets: list[list[Word]] = [[] for _ in spans]
    if not spans:
        return buckets
    # Borders between consecutive lines: the middle of the pause between them.
    borders = [(spans[i][1] + spans[i + 1][0]) / 2 for i in range(len(spans) - 1)]
    index = 0
    for word in sorted(words, key=lambda w: (w.start + w.end) / 2):
        middle = (word.start + word.end) / 2
        while index < len(borders) and middle >= borders[index]:
            index += 1
        buckets[index].append(word)
    return buckets


@dataclass(frozen=True)
class LineCheck:
    line: int
    speaker: str
    chunk: str
    start: float
    end: float
    text: str
    heard: str
    similarity: float
    verdict: str

    @property
    def failed(self) -> bool:
        return self.verdict != OK


def check_lines(lines: Sequence[Mapping[str, Any]], words: Iterable[Word], threshold: float) -> list[LineCheck]:
    """Every story line (story.timings.json entries) against the transcript words heard in its span."""
    spans = [(float(l["start"]), float(l["end"])) for l in lines]
    heard_by_line = assign_words(spans, words)
    checks = []
    for line, heard_words in zip(lines, heard_by_line):
        heard = " ".join(w.text for w in heard_words)
        score, judged = verdict(normalise(str(line["text"])), normalise(heard), threshold)
        checks.append(LineCheck(int(line["line"]), str(line.get("speaker", "")), str(line.get("chunk", "")),
                                float(line["start"]), float(line["end"]), str(line["text"]), heard,
                                round(score, 3), judged))
    return checks


def failing_chunks(checks: Iterable[LineCheck]) -> list[str]:
    """Chunks holding at least one failed line, in story order."""
    seen: dict[str, None] = {}
    for check in checks:
        if check.failed and check.chunk:
            seen.setdefault(check.chunk)
    return list(seen)


# ------------------------------------------------------------------ transcript sources


def srt_words(path: Path) -> list[Word]:
    """Words of a subtitle file, each cue's span shared out by characters (no word times in SRT)."""
    words: list[Word] = []
    for cue in read_srt(path).cues:
        words += line_words(cue.text.replace("\n", " "), cue.start, cue.end)
    return words


def transcript_source(pipeline_dir: Path) -> Path:
    """The words 3.transcribe.py heard (output/transcript.json), else input/2.story.srt (e.g. the seed's)."""
    transcript = pipeline_dir / "output" / TRANSCRIPT_FILE
    srt = pipeline_dir / "input" / "2.story.srt"
    for path in (transcript, srt):
        if path.is_file():
            return path
    raise InputError(f"no transcript in {transcript} or {srt}; run 3.transcribe.py first.")


def load_words(path: Path) -> tuple[list[Word], str]:
    """A transcript's words and a label saying where they came from."""
    if path.suffix == ".srt":
        return srt_words(path), path.name
    transcript = read_transcript(path)
    return list(transcript.words), f"{path.name} ({transcript.engine})"


def heard_nothing(report: "Report") -> bool:
    """Whether the transcript is the story text timed by the TTS (no Whisper), so every line passes by construction."""
    return f"({TIMINGS})" in report.source


def strict_without_hearing() -> ConfigError:
    """--strict promises a real check; a transcript that heard nothing cannot give one (a setup the user can change)."""
    return ConfigError(
        "--strict needs a transcript of what story.wav says, but nothing was heard: the transcript is the story text "
        "timed by the TTS (Whisper is not installed, TRANSCRIBE_ENGINE=timings, or story.wav is an offline preview); "
        f"install Whisper with `{INSTALL_HINT}` and run 3.transcribe.py again, or drop --strict."
    )


# ------------------------------------------------------------------ the report


@dataclass(frozen=True)
class Report:
    checks: tuple[LineCheck, ...]
    threshold: float
    source: str

    @property
    def failed(self) -> list[LineCheck]:
        return [c for c in self.checks if c.failed]

    def failing_chunks(self) -> list[str]:
        return failing_chunks(self.checks)

    def to_json(self) -> dict[str, Any]:
        counts = {v: sum(c.verdict == v for c in self.checks) for v in VERDICTS}
        return {"threshold": self.threshold, "transcript": self.source, "counts": counts,
                "failing_chunks": self.failing_chunks(), "lines": [asdict(c) for c in self.checks]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Report":
        return cls(tuple(LineCheck(**line) for line in raw["lines"]), float(raw["threshold"]), str(raw["transcript"]))


def read_report(path: Path) -> Report:
    return Report.from_json(json.loads(path.read_text(encoding="utf-8")))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(report: Report, *, only_failed: bool = False, width: int = 60) -> str:
    """One row per line (or per failed line); a failed line also shows what was heard."""
    rows = [f"{'line':>4}  {'chunk':<8} {'match':>5}  {'verdict':<8}  text"]
    for c in report.checks:
        if only_failed and not c.failed:
            continue
        rows.append(f"{c.line:>4}  {c.chunk:<8} {c.similarity:>5.2f}  {c.verdict:<8}  {_clip(c.text, width)}")
        if c.failed:
            heard = _clip(c.heard, width - 7) if c.heard else "(nothing)"
            rows.append(f"{'':>4}  {'':<8} {'':>5}  {'':<8}  heard: {heard}")
    rows.append(summary(report))
    return "\n".join(rows)


def summary(report: Report) -> str:
    failed = report.failed
    line = (f"{len(report.checks) - len(failed)} of {len(report.checks)} lines ok "
            f"(threshold {report.threshold:.2f}, transcript {report.source})")
    return line + (f"; failing chunks: {', '.join(report.failing_chunks())}" if failed else "")


# ------------------------------------------------------------------ retakes


def story_store(pipeline_dir: Path) -> CheckpointStore:
    return CheckpointStore(state_file(pipeline_dir, "2.story"), base_dir=pipeline_dir,
                           warn=lambda text: print(text, file=sys.stderr, flush=True))


def forget_chunks(pipeline_dir: Path, chunks: Iterable[str]) -> list[str]:
    """Drop these chunks, and the joined story.wav, from 2.story.py's checkpoint so its next run redoes them.

    story.wav must go too: its fingerprint is made of the chunks' fingerprints, which a
    retake of unchanged lines leaves as they were, so it would otherwise count as current.
    """
    store = story_store(pipeline_dir)
    known = store.entries()
    forgotten = [chunk for chunk in chunks if chunk in known]
    for key in [*forgotten, "story.wav"]:
        store.forget(key)
    return forgotten


def chunk_fingerprints(pipeline_dir: Path) -> dict[str, str]:
    """2.story.py's fingerprint per chunk: a retake budget belongs to one version of a chunk's lines."""
    entries = read_entries(state_file(pipeline_dir, "2.story"))  # reads only: 2.story.py's file is not ours
    return {key: str(entry.get("fingerprint", "")) for key, entry in entries.items() if key != "story.wav"}


def chunk_size_of(lines: Sequence[Mapping[str, Any]]) -> int:
    """The --chunk-size the story was spoken with, read off the chunk keys (`<start>_<end>`) of the timings.

    Passed on to 2.story.py so a retake keeps the same chunks even if the setting changed.
    """
    first = str(lines[0].get("chunk", ""))
    match = re.fullmatch(r"(\d+)_(\d+)", first)
    if not match:
        raise InputError(f"story.timings.json names no chunk for line 1 ({first!r}); run 2.story.py again to rewrite it.")
    return int(match.group(2)) - int(match.group(1)) + 1


def run_step(scripts_dir: Path, script: str, *args: str) -> None:
    """Run a sibling step as the orchestrator would (own process, its scripts/ folder, output shown)."""
    command = [sys.executable, script, *args]
    result = subprocess.run(command, cwd=scripts_dir, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise JobError(
            f"{script} failed (exit {result.returncode}) during the retake; fix what it said above and run "
            f"`python 4.quality.py --retake` again."
        )


def redo_command(chunks: Sequence[str]) -> str:
    return "python 4.quality.py --retake " + " ".join(f"--chunk {c}" for c in chunks)
