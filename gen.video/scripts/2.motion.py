"""gen.video step 2: one `(motion_X.Y)` prompt per scene in input/2.motion.txt.

With an LLM, a vision model (MODEL_MOTION_GENERATION) is sent each scene's picture and the
scene line's action and answers what moves and how the camera moves, checked to be one or two
plain sentences; offline, the prompt is built from the scene line's poses and actions with a
camera move chosen from the scene's place in the story. Each answer is checkpointed. A line
already in 2.motion.txt is the user's (or an earlier run's) and is kept unless --force-start.
"""
from __future__ import annotations

from dataclasses import asdict

from common.state.checkpoints import fingerprint
from common.engines.choice import engines_from_env
from common.engines.registry import get_engine
from common.run.errors import InputError
from common.formats.descriptions import Description, Descriptions, motion_id_for, read_motions, write_descriptions
from common.video.motion import PROMPT_VERSION, MotionBrief
from common.video.motion_text import LLMMotionText, OfflineMotionText
from common.run.runner import Script, ScriptContext
from common.video.storyboard import read_storyboard, scene_image_path

script = Script(__file__, "write input/2.motion.txt, one motion prompt per scene",
                settings_keys=("MODEL_MOTION_GENERATION", "LM_STUDIO_MODEL"))


def main(ctx: ScriptContext) -> None:
    board = read_storyboard(ctx.pipeline_dir)
    motion_file = ctx.input_dir / "2.motion.txt"
    existing = read_motions(motion_file) if motion_file.is_file() and motion_file.stat().st_size else None
    kept = {} if ctx.args.force_start or existing is None else existing.as_dict()
    shots = {s.scene_id: s for s in reversed(board.shots)}  # each scene's first shot
    scenes = [shots[scene_id] for scene_id in board.scene_ids()]
    todo = [s for s in scenes if motion_id_for(s.scene_id) not in kept]
    ctx.say(f"{len(scenes)} scenes: {len(scenes) - len(todo)} prompts kept from {motion_file.name}, {len(todo)} to write")

    model = ctx.settings.MODEL_MOTION_GENERATION.strip()
    settings = ctx.settings.with_overrides(LM_STUDIO_MODEL=model) if model else ctx.settings
    ctx.say(engines_from_env(settings).reason)
    engine = get_engine("text", settings, ctx.pipeline_dir).become(LLMMotionText, OfflineMotionText)
    ident = engine.identity()

    def picture(shot):
        path = scene_image_path(ctx.pipeline_dir, shot.scene_id)
        return path if path.is_file() else None

    blind = [s.scene_id for s in todo if picture(s) is None]
    if blind and not engine.preview:  # a vision model needs every picture: say so before the first question
        raise InputError(f"{len(blind)} scene picture(s) are missing, the first "
                         f"{scene_image_path(ctx.pipeline_dir, blind[0])}; run gen.image (3.scene.py) first.")

    def work(shot):
        return (), {"text": engine.motion_prompt(MotionBrief.of(shot), picture(shot))}

    entries = ctx.each(
        todo, label="motion", key=lambda s: motion_id_for(s.scene_id),
        fingerprint=lambda s: fingerprint(ident, PROMPT_VERSION, asdict(MotionBrief.of(s)), picture(s)),
        work=work, preview=engine.preview,
    )
    ctx.checkpoints().retain_only(motion_id_for(s.scene_id) for s in scenes)

    old = {e.key: e for e in existing.entries} if existing is not None else {}
    lines = []
    for shot in scenes:
        key = motion_id_for(shot.scene_id)
        lines.append(old[key] if key in kept else Description(key, entries[key].data["text"]))
    lines += [e for key, e in old.items() if key not in {d.key for d in lines}]  # scenes no longer shown
    write_descriptions(motion_file, Descriptions("motion", tuple(lines), layout=existing.layout if existing else None))
    ctx.say(f"wrote {motion_file}")


if __name__ == "__main__":
    script.run(main)
