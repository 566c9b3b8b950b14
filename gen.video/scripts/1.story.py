"""gen.video step 1: the story's structure for animation, written to output/storyboard.json.

Reads gen.image's 2.timeline.script.txt (which scene shows while whom speaks, for how long)
and the story: parts, scenes in screen order, each scene's slot on the narration, and which
consecutive scenes share a location (where first-last-frame animation can hide the cut). Cheap
and deterministic, so it is simply redone on every run: no checkpoint.
"""
from __future__ import annotations

from common.run.errors import InputError
from common.formats.story import read_story
from common.formats.timeline import read_timeline_script
from common.config.paths import story_path
from common.run.runner import Script, ScriptContext
from common.video.storyboard import (
    build_storyboard, describe, location_descriptions, storyboard_path, timeline_script_path, write_storyboard,
)

script = Script(__file__, "read the timeline and story into output/storyboard.json (scenes, slots, continuity)")


def main(ctx: ScriptContext) -> None:
    timeline_file = timeline_script_path(ctx.pipeline_dir)
    try:
        story_file = story_path(ctx.pipeline_dir)
    except InputError:
        story_file = None  # the timeline carries every scene line; the story only adds first-mention places
    story = read_story(story_file) if story_file else None
    board = build_storyboard(read_timeline_script(timeline_file), location_descriptions(ctx.pipeline_dir), story)
    out = write_storyboard(storyboard_path(ctx.pipeline_dir), board)
    ctx.say(f"read {timeline_file}")
    for line in describe(board):
        ctx.say(line)
    ctx.say(f"wrote {out}")


if __name__ == "__main__":
    script.run(main)
