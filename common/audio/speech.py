"""Story -> speech jobs -> story.wav: the chunking, voice lookup and joining that 2.story.py
(and later the retake step) share."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.state.atomic import atomic_write_json
from common.state.checkpoints import Entry, fingerprint, read_entries, state_file
from common.engines.base import SpeechLine
from common.run.errors import InputError
from common.formats.speakers import read_voice_map
from common.formats.story import Story
from common.audio.voices import Voice, VoiceLibrary

TIMINGS_FILE = "story.timings.json"


@dataclass(frozen=True)
class Chunk:
    """Lines `start`..`end` (1-based positions among the story's utterances) spoken as one job."""

    number: int
    start: int
    end: int
    lines: tuple[SpeechLine, ...]

    @property
    def key(self) -> str:
        return f"{self.start}_{self.end}"

    def identity(self) -> list[Any]:
        """Everything about the lines that changes the audio, voices by content."""
        return [[l.speaker, l.text, l.voice.stem, l.voice.wav, l.voice.reference_text] for l in self.lines]


def voices_for_story(story: Story, map_path: Path, voices_dir: Path) -> dict[str, Voice]:
    """Every speaker's voice, or one sentence naming the speaker and the file to fix."""
    voice_map = read_voice_map(map_path)
    library = VoiceLibrary.scan(voices_dir)
    found: dict[str, Voice] = {}
    for tag in story.speakers():
        stem = voice_map.voice_for(tag)
        if stem is None:
            raise InputError(
                f"speaker [{tag}] has no voice in {map_path}: run 1.character.py again or add a line "
                f"'{tag}  <voice_stem>' to that file."
            )
        found[tag] = library.get(stem, map_file=map_path)
    return found


def build_chunks(story: Story, voices: Mapping[str, Voice], size: int) -> list[Chunk]:
    if size < 1:
        raise InputError(f"--chunk-size must be at least 1, not {size}.")
    lines = [SpeechLine(u.speaker, u.text, voices[u.speaker]) for u in story.utterances]
    return [
        Chunk(number, start + 1, min(start + size, len(lines)), tuple(lines[start : start + size]))
        for number, start in enumerate(range(0, len(lines), size))
    ]


def retake_attempts(pipeline_dir: Path) -> dict[str, int]:
    """How often 4.quality.py --retake has asked for each chunk again (chunk key -> count).

    A deterministic TTS gives the same take for the same seed, so a retake must change the
    seed; reading the count from 4.quality's checkpoint keeps 2.story.py's own fingerprints
    unchanged (the retake already dropped the chunk's entry)."""
    retakes = read_entries(state_file(pipeline_dir, "4.quality")).get("retakes", {})
    try:
        return {str(key): int(value.get("attempts", 0)) for key, value in retakes["data"]["chunks"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def chunk_seed(base: int, attempts: int) -> int:
    """The seed of one take: the base seed (0 = derived from the text) on the first take,
    a different non-zero one for each retake."""
    return base + 7919 * attempts if attempts else base


def line_timings(chunks: Sequence[Chunk], entries: Mapping[str, Entry], chunk_spans: Sequence[tuple[float, float]]) -> list[dict[str, Any]]:
    """Each line's start and end in story.wav: the chunk's place plus the line's place in it."""
    out: list[dict[str, Any]] = []
    for chunk, (chunk_start, _) in zip(chunks, chunk_spans):
        spans = entries[chunk.key].data["spans"]
        timing = entries[chunk.key].data.get("timing", "exact")
        for offset, (line, (start, end)) in enumerate(zip(chunk.lines, spans)):
            out.append({
                "line": chunk.start + offset,
                "speaker": line.speaker,
                "text": line.text,
                "start": round(chunk_start + start, 4),
                "end": round(chunk_start + end, 4),
                "chunk": chunk.key,
                "timing": timing,
            })
    return out


def join_story(ctx: Any, chunks: Sequence[Chunk], entries: Mapping[str, Entry], *, preview: bool) -> Path:
    """Join the chunk files into output/story.wav (checkpointed as its own item) and write the timings."""
    store = ctx.checkpoints()
    story_wav = ctx.output_dir / "story.wav"
    timings = ctx.output_dir / TIMINGS_FILE
    gap = ctx.settings.LINE_PAUSE
    fp = fingerprint([entries[c.key].fingerprint for c in chunks], gap, ctx.settings.AUDIO_SAMPLE_RATE)
    if store.lookup("story.wav", fp) is not None:
        ctx.say(f"{story_wav.name} is up to date")
        return story_wav
    from common.media import ffmpeg as media  # numpy and PyAV load only when there is joining to do

    started = time.monotonic()
    wavs = [ctx.pipeline_dir / entries[c.key].files[0] for c in chunks]
    spans = media.concat_wavs(wavs, story_wav, sample_rate=ctx.settings.AUDIO_SAMPLE_RATE, gap_seconds=gap)
    atomic_write_json(timings, {"story_wav": story_wav.name, "duration": round(spans[-1][1], 4),
                                "lines": line_timings(chunks, entries, spans)})
    store.record("story.wav", fp, files=[story_wav, timings], preview=preview, took=time.monotonic() - started,
                 data={"duration": round(spans[-1][1], 4)})
    ctx.say(f"wrote {story_wav} ({spans[-1][1]:.1f} s) and {timings.name}")
    return story_wav
