"""Which scene shows while each utterance is heard: gen.image 4.audio.py's 2.timeline.script.txt.

Each utterance's picture starts when its words start on gen.audio's narration and lasts
until the next utterance starts, so the pause after a line stays on that line's scene, the
silence before the first line goes to the first entry and anything after the last line
(final.wav's tail) to the last. Starts come from gen.audio's output/story.timings.json
(exact per line) or, without it, from its transcript (input/2.timeline.txt), whose
segments are matched to the story's lines by their words. Boundaries are rounded once, on
the cumulative timeline, to the millisecond the file is written in, so the entries add up
to the audio's length within half a millisecond however many there are.
"""
from __future__ import annotations

import difflib
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.run.errors import InputError
from common.formats.story import Scene, Story, format_scene_line
from common.formats.timeline import ScriptEntry, ScriptTimeline, Timeline
from common.pictures.story_visuals import bare_location

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_DOTS = re.compile(r"\s*\.*\s*\Z")


@dataclass(frozen=True)
class Segment:
    """A stretch of the narration with what is said in it (a TTS line, a transcript segment)."""

    start: float
    end: float
    text: str


def narration_file(audio_dir: Path) -> Path | None:
    """gen.audio's final.wav (8.combine.py), else its story.wav (2.story.py); None before either exists."""
    found = (audio_dir / "output" / name for name in ("final.wav", "story.wav"))
    return next((path for path in found if path.is_file() and path.stat().st_size > 0), None)


def words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKC", text).lower().replace("’", "'").replace("‘", "'")
    return _WORD.findall(folded)


def segments_from_timings(data: Mapping[str, Any]) -> list[Segment]:
    """gen.audio's story.timings.json: one segment per spoken story line."""
    try:
        return [Segment(float(line["start"]), float(line["end"]), str(line["text"])) for line in data["lines"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"story.timings.json has no usable line timings ({exc}); run gen.audio's 2.story.py again.") from None


def segments_from_transcript(timeline: Timeline) -> list[Segment]:
    """gen.audio's 2.timeline.txt: durations in order; dot-only segments are pauses and say nothing."""
    out = []
    for start, entry in zip(timeline.starts(), timeline.entries):
        if not _DOTS.match(entry.text):
            out.append(Segment(start, start + entry.seconds, entry.text))
    return out


def line_starts(story: Story, segments: Sequence[Segment]) -> list[float | None]:
    """Where each utterance starts on the narration; None for one the audio does not contain.

    When the segments are the story's lines one for one (story.timings.json of the same
    story), their starts are taken as they are. Otherwise the words of both are aligned and an
    utterance starts at its first matched word, placed inside its segment in proportion to
    the words before it (a transcript segment may hold the end of one line and the start of
    the next).
    """
    if [" ".join(words(s.text)) for s in segments] == [" ".join(words(u.text)) for u in story.utterances]:
        return [s.start for s in segments]
    spoken: list[tuple[int, int]] = []  # (segment, position in it) per transcript word
    heard: list[str] = []
    counts: list[int] = []
    for index, segment in enumerate(segments):
        found = words(segment.text)
        counts.append(len(found))
        for position, word in enumerate(found):
            heard.append(word)
            spoken.append((index, position))
    written: list[str] = []
    owner: list[int] = []
    for index, utterance in enumerate(story.utterances):
        for word in words(utterance.text):
            written.append(word)
            owner.append(index)
    starts: list[float | None] = [None] * len(story.utterances)
    matcher = difflib.SequenceMatcher(None, written, heard, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            line = owner[block.a + k]
            if starts[line] is None:
                seg_index, position = spoken[block.b + k]
                segment = segments[seg_index]
                starts[line] = segment.start + (segment.end - segment.start) * position / max(1, counts[seg_index])
    return starts


def scenes_for_lines(story: Story, scene_lines: Sequence[Scene] | None) -> list[Scene | None]:
    """The scene of each utterance: the story's own scene lines, else 3.scene.txt line i for utterance i."""
    if story.scenes():
        return [u.scene for u in story.utterances]
    listed = list(scene_lines or ())
    return [listed[i] if i < len(listed) else None for i in range(len(story.utterances))]


def _description(scene: Scene) -> str:
    line = format_scene_line(bare_location(scene))
    return line[len(f"({scene.scene_id})"):].strip()


def build_script(story: Story, scenes: Sequence[Scene | None], starts: Sequence[float | None],
                 total: float) -> ScriptTimeline:
    """One entry per utterance heard, its scene (or the one still showing) and its time on screen.

    Durations are differences of boundaries rounded to the millisecond on the cumulative
    timeline, so they add up to `total` (to 0.5 ms) with no drift.
    """
    if not total > 0:
        raise InputError("the narration is empty (0 s); run gen.audio's 2.story.py and 8.combine.py again.")
    if not any(s is not None for s in scenes):
        raise InputError("no utterance has a scene line; run 1.story.py first (it writes input/3.scene.txt).")
    first_scene = next(s for s in scenes if s is not None)
    heard = [i for i, start in enumerate(starts) if start is not None]
    if not heard:
        raise InputError("none of the story's lines were found on the narration; run gen.audio's 2.story.py for this story.")
    bounds: list[int] = []
    for position, index in enumerate(heard):
        start = 0.0 if position == 0 else min(max(float(starts[index]), 0.0), total)  # type: ignore[arg-type]
        ms = round(start * 1000)
        bounds.append(max(ms, bounds[-1]) if bounds else 0)
    end_ms = round(total * 1000)
    bounds.append(max(end_ms, bounds[-1]))
    slot = {index: k for k, index in enumerate(heard)}
    entries: list[ScriptEntry] = []
    showing = first_scene
    for index, utterance in enumerate(story.utterances):
        showing = scenes[index] or showing
        if starts[index] is None:
            continue
        k = slot[index]
        seconds = (bounds[k + 1] - bounds[k]) / 1000
        entries.append(ScriptEntry(seconds, showing.scene_id, _description(showing), utterance.speaker, utterance.text))
    if not math.isclose(math.fsum(e.seconds for e in entries), end_ms / 1000, abs_tol=1e-6):
        raise AssertionError("scene durations do not add up")  # a bug of ours, never the user's
    return ScriptTimeline(tuple(entries), source="2.timeline.script.txt")

