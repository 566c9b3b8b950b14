"""gen.image step 1: what the pictures show: scene lines, characters and locations.

Reads the story (gen.image's own input/1.story.txt, else gen.audio's). Its scene lines, when
it has them, are the truth: characters and locations come from them and the text engine only
describes how they look. A story without scene lines gets one per utterance from the text
engine (locations reused), each checked against the scene-line format unless
--bypass-validation. Writes input/3.scene.txt, 2.character.txt / 3.character.txt (attributes /
prose per ((tag))) and 2.location.txt / 3.location.txt (per {{loc_N}}), then the asset library
input/assets.json (characters with voice and sheet, locations with their times of day, poses, the
style bible, recurring objects), keeping the user's edits to it. The work is in
common/pictures/descriptions.py and common/pictures/assets.py; every answer is checkpointed.
"""
from __future__ import annotations

from common.engines.choice import engines_from_env
from common.engines.registry import get_engine
from common.formats.story import read_story
from common.pictures.assets import build_library
from common.pictures.descriptions import Describer, read_summary, save_scene_lines, story_scene_lines, write_scene_lines
from common.config.paths import story_path
from common.run.runner import Script, ScriptContext
from common.pictures.story_visuals import character_briefs, location_briefs, planned_scene_ids

script = Script(__file__, "write 3.scene.txt, the character and location descriptions (2/3.character.txt, "
                "2/3.location.txt) and the asset library (assets.json)",
                settings_keys=("LM_STUDIO_MODEL", "ART_STYLE", "CHARACTER_PROSE_MIN_WORDS", "CHARACTER_PROSE_MAX_WORDS",
                               "LOCATION_PROSE_MIN_WORDS", "LOCATION_PROSE_MAX_WORDS"))


def main(ctx: ScriptContext) -> None:
    source = story_path(ctx.pipeline_dir)
    story = read_story(source)
    ctx.say(engines_from_env(ctx.settings).reason)
    engine = get_engine("text", ctx.settings, ctx.pipeline_dir)
    store = ctx.checkpoints()
    if story.scenes():
        lines = story_scene_lines(story)
        missing = sum(1 for u in story.utterances if u.scene is None)
        ctx.say(f"{source}: {len(story.utterances)} lines, {len(lines)} scene lines (the story's own, taken as they are)"
                + (f"; {missing} lines have none and keep the previous picture" if missing else ""))
    else:
        check = not ctx.args.bypass_validation
        ctx.say(f"{source}: {len(story.utterances)} lines and no scene lines: the {engine.name} text engine writes one per line"
                + ("" if check else "; --bypass-validation: its lines are kept as written, without the format check"))
        lines = write_scene_lines(story, engine, store, check=check, say=ctx.say)
    scene_file = save_scene_lines(ctx.input_dir / "3.scene.txt", lines)
    scenes = [line.scene for line in lines if line.scene is not None]

    summary = "" if engine.preview else read_summary(ctx.pipeline_dir)
    characters = character_briefs(story, scenes, summary)
    locations = location_briefs(scenes, summary)
    ctx.say(f"wrote {scene_file.name}: {len(lines)} scenes, {len(characters)} characters, {len(locations)} locations")
    keep = not (ctx.args.force or ctx.args.force_start)
    describer = Describer(ctx, engine, keep_user_entries=keep)
    s = ctx.settings
    describer.describe("character", characters, lambda b: b.tag,
                       (s.CHARACTER_PROSE_MIN_WORDS, s.CHARACTER_PROSE_MAX_WORDS))
    describer.describe("location", locations, lambda b: b.location_id,
                       (s.LOCATION_PROSE_MIN_WORDS, s.LOCATION_PROSE_MAX_WORDS))
    ctx.say("wrote 2.character.txt, 3.character.txt, 2.location.txt, 3.location.txt")
    everyone = character_briefs(story, scenes, summary, speakers=True)  # speakers never pictured too
    assets = build_library(ctx, engine, scenes, everyone, locations, summary, keep_user_entries=keep)
    store.retain_only([*describer.keys, *assets.keys, *([] if story.scenes() else planned_scene_ids(story))])
    if assets.kept:
        ctx.say(f"  {assets.path.name}: kept your edits: {'; '.join(assets.kept)} (--force writes new ones)")
    counts = ", ".join(f"{len(assets.library.table(kind))} {kind}" for kind in ("characters", "locations", "poses", "objects"))
    ctx.say(f"{'wrote' if assets.written else 'unchanged:'} {assets.path.name}: {counts} and the style bible")


if __name__ == "__main__":
    script.run(main)
