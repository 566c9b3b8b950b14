"""What gen.video reads from the other pipelines, made up for tests: gen.image's timeline script
and scene pictures, gen.audio's story and final.wav.

The scenes are given as (scene line, seconds) pairs so a test states exactly the slots it
needs (a 12 s scene, a glimpse to hold, consecutive scenes in one place).
"""
from __future__ import annotations

import wave
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

# (speaker, scene line, seconds): five scenes over three locations.
SCENES: tuple[tuple[str, str, float], ...] = (
    ("female_keeper_niece_ada", "(scene_1.1) {{loc_1, a stone lighthouse on a rocky point}}, {Autumn evening, fog}; "
     "((female_keeper_niece_ada)){Determined}, {Standing in the rowing boat}{Tying the rope to the ring};", 3.0),
    ("male_fisherman_bram", "(scene_1.2) {{loc_1}}, {Autumn evening, fog}; ((male_fisherman_bram)){Gruff}, "
     "{Standing on the jetty}{Handing over a brass lantern};", 12.0),
    ("female_keeper_niece_ada", "(scene_1.3) {{loc_1}}, {Autumn evening, fog}; ((female_keeper_niece_ada)){Worried}, "
     "{Looking up at the tower}{Shading her eyes};", 2.0),
    ("narrator", "(scene_2.1) {{loc_2, a spiral staircase with a brass handrail}}, {Night}; "
     "((female_keeper_niece_ada)){Tense}, {Climbing}{Holding the lantern high};", 0.5),
    ("male_keeper_silas", "(scene_2.2) {{loc_3, the lamp room with a great glass lens}}, {Night, rain}; "
     "((male_keeper_silas)){Weary}, {Sitting at the chart table}{Turning a logbook};", 2.5),
)
TAIL = 0.4  # final.wav runs a little past the timeline, as a mix with a reverb tail does


def scene_id(line: str) -> str:
    return line[1:line.index(")")]


def write_story(path: Path, scenes: Sequence[tuple[str, str, float]] = SCENES) -> Path:
    blocks = [f"[{speaker}] Line {n} of the test story, spoken by {speaker}.\n{line}"
              for n, (speaker, line, _) in enumerate(scenes, 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def write_timeline(path: Path, scenes: Sequence[tuple[str, str, float]] = SCENES, pause_after: int | None = 0) -> float:
    """2.timeline.script.txt in the seed's spelling; a pause after scene `pause_after` (0-based). Returns the total."""
    lines, total = [], 0.0
    for n, (speaker, line, seconds) in enumerate(scenes):
        body = line[line.index(")") + 1:].strip()
        lines.append(f"{seconds:.6f}: {scene_id(line)} = {body}, {speaker} = Line {n + 1} of the test story.")
        total += seconds
        if pause_after == n:
            lines.append("0.600000 : ..")
            total += 0.6
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return total


def scene_picture(path: Path, index: int, size: tuple[int, int] = (640, 360)) -> Path:
    """A distinct picture per scene: its own background colour and a disc in its own place."""
    width, height = size
    img = Image.new("RGB", size, (30 + 40 * index % 200, 90 + 25 * index % 150, 200 - 30 * index % 180))
    draw = ImageDraw.Draw(img)
    x = width * (0.2 + 0.15 * index)
    draw.ellipse((x - height * 0.2, height * 0.3, x + height * 0.2, height * 0.7), fill=(250, 230, 80))
    draw.rectangle((0, height * 0.85, width, height), fill=(20, 20, 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_wav(path: Path, seconds: float, rate: int = 48000) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    samples = (0.2 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def make_inputs(root: Path, scenes: Sequence[tuple[str, str, float]] = SCENES, *, story: bool = True) -> float:
    """gen.image's timeline and pictures, gen.audio's story and final.wav under `root`; returns final.wav's length."""
    total = write_timeline(root / "gen.image" / "input" / "2.timeline.script.txt", scenes)
    for index, (_, line, _) in enumerate(scenes):
        scene_picture(root / "gen.image" / "output" / "scene" / f"{scene_id(line)}.png", index)
    if story:
        write_story(root / "gen.audio" / "input" / "1.story.txt", scenes)
    write_wav(root / "gen.audio" / "output" / "final.wav", total + TAIL)
    return total + TAIL


# (speaker, scene line, seconds): a dialogue between two on-screen characters, a narrator line,
# an off-screen voice, and lines forcing the rule either way.
DIALOGUE: tuple[tuple[str, str, float], ...] = (
    ("female_keeper_niece_ada", "(scene_1.1) {{loc_1, a lamp room}}, {Night}; ((female_keeper_niece_ada)){Worried}, "
     "{Standing}{Calling out}; ((male_keeper_silas)){Weary}, {Sitting}{Listening};", 2.2),
    ("male_keeper_silas", "(scene_1.2) {{loc_1}}, {Night}; ((male_keeper_silas)){Weary}, {Sitting}{Answering}; "
     "((female_keeper_niece_ada)){Worried}, {Standing}{Listening};", 6.3),
    ("narrator", "(scene_1.3) {{loc_1}}, {Night}; ((male_keeper_silas)){Weary}, {Sitting}{Turning a page};", 1.5),
    ("male_fisherman_bram", "(scene_1.4) {{loc_1}}, {Night}; ((female_keeper_niece_ada)){Startled}, "
     "{Standing}{Turning round};", 1.6),
    ("female_keeper_niece_ada", "(scene_1.5) {{loc_1}}, {Night, no lip sync}; ((female_keeper_niece_ada)){Calm}, "
     "{Standing}{Whispering};", 1.4),
)
SPEECH_LEAD, SPEECH_TAIL = 0.13, 0.21  # silence before and after each line inside its slot


def speech_wav(path: Path, seconds: float, spans: Sequence[tuple[float, float]], rate: int = 24000,
               seed: int = 7) -> Path:
    """Speech-like audio: inside each span, voiced noise whose loudness rises and falls in
    irregular syllables (so an envelope and a shifted copy of it differ); silence elsewhere."""
    rng = np.random.default_rng(seed)
    samples = np.zeros(int(round(seconds * rate)))
    for start, end in spans:
        a, b = int(round(start * rate)), int(round(end * rate))
        at = a
        while at < b:
            syllable = int(rate * rng.uniform(0.06, 0.28))
            gain = rng.uniform(0.05, 1.0) if rng.random() > 0.2 else 0.0
            n = min(syllable, b - at)
            shape = np.sin(np.pi * np.arange(n) / max(1, n)) * gain
            t = np.arange(n) / rate
            samples[at:at + n] = shape * (0.5 * np.sin(2 * np.pi * rng.uniform(110, 240) * t) + 0.2 * rng.standard_normal(n))
            at += n
    data = (np.clip(samples, -1, 1) * 0.5 * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data.tobytes())
    return path


def make_dialogue_inputs(root: Path, scenes: Sequence[tuple[str, str, float]] = DIALOGUE) -> list[tuple[float, float]]:
    """The inputs of make_inputs plus gen.audio's story.wav (= final.wav here, no effects) and its
    story.timings.json, one line per scene; returns each line's (start, end) in story.wav."""
    import json

    total = write_timeline(root / "gen.image" / "input" / "2.timeline.script.txt", scenes, pause_after=None)
    for index, (_, line, _) in enumerate(scenes):
        scene_picture(root / "gen.image" / "output" / "scene" / f"{scene_id(line)}.png", index)
    write_story(root / "gen.audio" / "input" / "1.story.txt", scenes)
    spans, lines, at = [], [], 0.0
    for n, (speaker, _, seconds) in enumerate(scenes):
        span = (round(at + SPEECH_LEAD, 4), round(at + seconds - SPEECH_TAIL, 4))
        spans.append(span)
        lines.append({"line": n + 1, "speaker": speaker, "text": f"Line {n + 1} of the test story.",
                      "start": span[0], "end": span[1], "chunk": "c1", "timing": "exact"})
        at += seconds
    out = root / "gen.audio" / "output"
    speech_wav(out / "story.wav", total, spans)
    speech_wav(out / "final.wav", total, spans)
    (out / "story.timings.json").write_text(json.dumps({"story_wav": "story.wav", "duration": total, "lines": lines}),
                                            encoding="utf-8")
    return spans
