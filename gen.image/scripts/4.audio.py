"""gen.image step 4: which scene shows while each line is heard -> input/2.timeline.script.txt.

Each utterance's time on gen.audio's narration (output/story.timings.json, else the transcript
input/2.timeline.txt) goes to its scene line (the story's own, else 1.story.py's input/3.scene.txt);
a line without a scene keeps the previous picture. Written as the seed's
`<seconds>: <scene_id> = <scene>, <speaker_tag> = <text>`, adding up to gen.audio's final.wav
(story.wav before 8.combine.py has run); the logic is in common/pictures/scene_timeline.py.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.media import ffmpeg as media
from common.state.checkpoints import fingerprint
from common.run.errors import InputError
from common.formats.story import read_scenes, read_story
from common.formats.timeline import read_timeline, write_timeline_script
from common.config.paths import require_file, story_path
from common.run.runner import Script, ScriptContext
from common.pictures.scene_timeline import (
    build_script, line_starts, narration_file, scenes_for_lines, segments_from_timings, segments_from_transcript,
)
from common.audio.speech import TIMINGS_FILE

VERSION = 1
script = Script(__file__, "map gen.audio's narration to the scenes -> input/2.timeline.script.txt")


def _timing_source(audio_dir: Path) -> Path:
    timings = audio_dir / "output" / TIMINGS_FILE
    if timings.is_file() and timings.stat().st_size > 0:
        return timings
    return require_file(audio_dir / "input" / "2.timeline.txt", "gen.audio's timing of the narration",
                        f"run gen.audio's 2.story.py (it writes output/{TIMINGS_FILE}) or 3.transcribe.py.")


def main(ctx: ScriptContext) -> None:
    audio_dir = ctx.pipeline_dir.parent / "gen.audio"
    story_file = story_path(ctx.pipeline_dir)
    story = read_story(story_file)
    narration = narration_file(audio_dir)
    if narration is None:
        raise InputError(f"{audio_dir / 'output' / 'final.wav'} is missing; run gen.audio through 2.story.py "
                         "(and 8.combine.py for the final mix) first.")
    source = _timing_source(audio_dir)
    scene_file = ctx.input_dir / "3.scene.txt"
    if not story.scenes():
        require_file(scene_file, "the scene lines", "run 1.story.py first: it writes one scene line per utterance.")
    out = ctx.input_dir / "2.timeline.script.txt"
    total = media.audio_duration(narration)
    # The narration counts by its length only: final.wav (made later in the chain) replacing an
    # equally long story.wav must not redo this step.
    inputs = [story_file, round(total, 3), source] + ([] if story.scenes() else [scene_file])
    ctx.say(f"{story_file.name}: {len(story.utterances)} lines; timing from {source.name}, length from {narration.name}")

    def work(_: str):
        scene_lines = None if story.scenes() else read_scenes(scene_file).scenes
        scenes = scenes_for_lines(story, scene_lines)
        if scene_lines is not None and len(scene_lines) != len(story.utterances):
            ctx.say(f"warning: {scene_file.name} has {len(scene_lines)} scene lines for {len(story.utterances)} story lines; "
                    "line i gets scene i, the rest keep the last picture (run 1.story.py again to match them)")
        if source.suffix == ".json":
            segments = segments_from_timings(json.loads(source.read_text(encoding="utf-8")))
        else:
            segments = segments_from_transcript(read_timeline(source))
        starts = line_starts(story, segments)
        lost = [i for i, start in enumerate(starts) if start is None]
        if lost:
            first = story.utterances[lost[0]]
            where = f"line {first.line_no} of {story_file.name}" if first.line_no else f"utterance {lost[0] + 1}"
            if not ctx.args.bypass_validation:
                raise InputError(f"{len(lost)} story line(s) are not on the narration, the first {where} ([{first.speaker}]); "
                                 "run gen.audio's 2.story.py for this story, or pass --bypass-validation to show them for 0 s.")
            ctx.say(f"--bypass-validation: {len(lost)} story line(s) are not on the narration (first {where}); they get no time")
        timeline = build_script(story, scenes, starts, total)
        write_timeline_script(out, timeline)
        shown = len({e.scene_id for e in timeline.entries})
        return [out], {"entries": len(timeline.entries), "scenes": shown, "seconds": round(timeline.total(), 3)}

    entry = ctx.each(["2.timeline.script.txt"], label="timeline", key=lambda k: k,
                     fingerprint=lambda k: fingerprint(VERSION, inputs, ctx.args.bypass_validation),
                     work=work)["2.timeline.script.txt"]
    ctx.say(f"wrote {out}: {entry.data['entries']} entries, {entry.data['scenes']} scenes, {entry.data['seconds']:.3f} s")


if __name__ == "__main__":
    script.run(main)
