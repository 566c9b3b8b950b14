"""gen.audio step 5: one sound effect (or "Silence") for every transcript segment.

Reads input/2.timeline.txt (`<seconds>: <text>`, from 3.transcribe.py) and writes
input/3.timing.txt with the same durations and a short sound description in place of each
text. The text engine answers SFX_BATCH_SIZE segments per question, each batch checkpointed.
Segments are matched to the story's lines (through output/story.timings.json, else by their
words) so the scene a line belongs to goes with it: the LLM gets it as context, and it is the
offline engine's only source (it proposes only sounds it can make, and Silence elsewhere).
"""
from __future__ import annotations

import json

from common.audio import sfx_plan
from common.state.checkpoints import fingerprint
from common.audio.sfx_text import sfx_engine, sfx_input
from common.run.errors import InputError
from common.formats.story import read_story
from common.formats.timeline import write_timeline
from common.config.paths import story_path
from common.run.runner import Script, ScriptContext
from common.audio.speech import TIMINGS_FILE

script = Script(__file__, "choose a sound effect or Silence for every segment of 2.timeline.txt -> 3.timing.txt")
script.add_argument("--batch-size", type=int, setting="SFX_BATCH_SIZE", help="segments per LLM question (default 10)")


def _timings(ctx: ScriptContext) -> dict | None:
    path = ctx.output_dir / TIMINGS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        ctx.say(f"{path.name} is unreadable: matching segments to story lines by their words")
        return None


def main(ctx: ScriptContext) -> None:
    source, timeline = sfx_input(ctx, "2.timeline.txt", "the transcript timeline", "3.transcribe.py",
                                 "it writes one '<seconds>: <text>' line per segment.")
    try:
        story = read_story(story_path(ctx.pipeline_dir))
    except InputError:
        story = None
    scenes, how = sfx_plan.segment_scenes(timeline, story, _timings(ctx))
    segments = sfx_plan.segments_of(timeline, scenes)
    names = sfx_plan.person_names(story)
    ctx.say(f"{source.name}: {len(segments)} segments, {timeline.total():.1f} s; "
            f"{sum(1 for s in scenes if s)} matched to a scene ({how})")
    engine, ident = sfx_engine(ctx, "text")
    groups = sfx_plan.batches(segments, ctx.settings.SFX_BATCH_SIZE)

    def key(group: list[sfx_plan.SfxSegment]) -> str:
        return f"sounds_{group[0].index:05d}_{group[-1].index:05d}"

    entries = ctx.each(
        groups, label="sounds", key=key,
        fingerprint=lambda g: fingerprint(ident, names, [(s.index, s.seconds, s.text, s.scene) for s in g]),
        work=lambda g: ((), {"sounds": engine.sound_effects(g, names=names)}), preview=engine.preview,
    )
    ctx.checkpoints().retain_only([key(g) for g in groups])
    sounds = [sound for g in groups for sound in entries[key(g)].data["sounds"]]
    target = write_timeline(ctx.input_dir / "3.timing.txt", sfx_plan.sound_timeline(timeline, sounds))
    effects = sum(1 for s in sounds if not sfx_plan.is_silence(s))
    ctx.say(f"wrote {target.name}: {effects} sound effects, {len(sounds) - effects} silent segments")


if __name__ == "__main__":
    script.run(main)
