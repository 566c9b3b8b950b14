"""gen.video step 3: one clip per shot, output/animation/<scene_id>.mp4, exactly its slot long.

Each scene's picture is animated with its 2.motion.txt prompt (ART_STYLE and, per
ENABLE_MOTION / ENABLE_SCENE / ENABLE_LOCATION, the motion, scene line and place) through LTX
or WAN 2.2 (VIDEO_WORKFLOW), or offline as a Ken Burns move. A scene longer than the model's
MODEL_MAX_SECONDS is chained from segments, each starting from the previous one's last frame;
with FIRST_LAST_FRAME a scene followed by one in the same place ends on that scene's picture.
Short or listed scenes (HOLD_SHORT_SCENES_BELOW, HELD_SCENES) get a Ken Burns push instead.
A speaking shot (common.video.speaking, SPEAKING_SHOTS) gets its speaker's line cut from
gen.audio's story.wav: through ComfyUI it is made by Wan 2.2 S2V (SPEAKING_WORKFLOW), in chunks
that extend each other's latent for a long line; offline it is the speaker's card with a mouth
following the line.
Each finished clip's first, middle and last frames are scored by the identity judge against its
characters' sheets, and a clip that drifted is made again with new seeds (common.video.clip_judge,
IDENTITY_THRESHOLD, IDENTITY_RETAKES; scores in output/identity.json).
Every segment, clip, retake and judge's answer is its own checkpoint: a killed run redoes only the job in flight.
"""
from __future__ import annotations

from common.state.checkpoints import fingerprint
from common.video.clip_jobs import Folders, Look, build_jobs, fingerprints, items_for, remove_leftovers, run_item
from common.video.clip_judge import ClipJudging
from common.engines.choice import engines_from_env
from common.engines.registry import get_engine
from common.formats.descriptions import read_motions, scene_id_for
from common.run.runner import Script, ScriptContext
from common.video.speaking import cut_span, read_line_timings, speaking_spans
from common.video.storyboard import read_storyboard

script = Script(__file__, "animate every scene into output/animation/<scene_id>.mp4",
                settings_keys=("VIDEO_WORKFLOW", "VIDEO_WIDTH", "VIDEO_HEIGHT", "FRAMES_PER_SECOND", "FIRST_LAST_FRAME",
                               "HOLD_SHORT_SCENES_BELOW", "HELD_SCENES", "ENABLE_MOTION", "ENABLE_SCENE",
                               "ENABLE_LOCATION", "ART_STYLE", "MODEL_MAX_SECONDS", "SPEAKING_SHOTS",
                               "SPEAKING_WORKFLOW"))
script.add_argument("--workflow", choices=("ltx", "wan"), setting="VIDEO_WORKFLOW", help="animation model (default ltx)")


def look_of(settings) -> Look:
    return Look(
        width=settings.VIDEO_WIDTH, height=settings.VIDEO_HEIGHT, fps=settings.FRAMES_PER_SECOND,
        seed=settings.ANIMATION_SEED, art_style=settings.ART_STYLE, enable_motion=settings.ENABLE_MOTION,
        enable_scene=settings.ENABLE_SCENE, enable_location=settings.ENABLE_LOCATION,
        first_last_frame=settings.FIRST_LAST_FRAME, hold_below=settings.HOLD_SHORT_SCENES_BELOW,
        held=frozenset(str(s) for s in settings.HELD_SCENES),
    )


def speaking_audio(ctx: ScriptContext, board, rule, fps: int) -> dict:
    """clip -> (span, its audio cut from story.wav) for every speaking shot (common.video.speaking).

    The cuts are cheap and exact, so they are simply redone on every run; the clip's
    fingerprint includes the cut, so a changed line redoes only its clip."""
    audio_out = ctx.pipeline_dir.parent / "gen.audio" / "output"
    lines = read_line_timings(audio_out)
    spans = speaking_spans(board, lines, rule, fps, enabled=ctx.settings.SPEAKING_SHOTS)
    if not lines:
        ctx.say(f"no {audio_out / 'story.timings.json'}: no speaking shots (gen.audio's 2.story.py writes it)")
        return {}
    story_wav = audio_out / "story.wav"
    folder = ctx.output_dir / "animation" / "speech"
    return {clip: (span, cut_span(story_wav, span, folder / f"{clip}.wav")) for clip, span in spans.items()}


def main(ctx: ScriptContext) -> None:
    board = read_storyboard(ctx.pipeline_dir)
    motion_file = ctx.input_dir / "2.motion.txt"
    motions = {}
    if motion_file.is_file() and motion_file.stat().st_size:
        motions = {scene_id_for(key): text for key, text in read_motions(motion_file).as_dict().items()}
    look = look_of(ctx.settings)
    unknown = sorted(look.held - {s.clip for s in board.shots} - set(board.scene_ids()))
    if unknown:
        ctx.say(f"warning: HELD_SCENES names {', '.join(unknown)}, which the timeline does not show")
    ctx.say(engines_from_env(ctx.settings).reason)
    engine = get_engine("animation", ctx.settings, ctx.pipeline_dir)
    rule, talk = engine.frame_rule(), engine.talk_rule()
    # A speaking shot must be long enough for one job of the model that makes it, counted at its own rate.
    speech = speaking_audio(ctx, board, talk.rule if talk else rule, talk.fps if talk else look.fps)
    jobs, unprompted = build_jobs(board, motions, look, rule, ctx.pipeline_dir, speech, talk)
    if unprompted:
        ctx.say(f"{len(unprompted)} scene(s) have no line in {motion_file.name} (e.g. {unprompted[0]}); "
                "their scene lines stand in (run 2.motion.py to write them)")
    items = items_for(jobs, rule)
    prints = fingerprints(items, engine.identity(), look, rule)
    folders = Folders(ctx.output_dir / "animation", ctx.output_dir / "animation" / "segments")
    if left := remove_leftovers(folders.clips):
        ctx.say(f"removed {left} half-made file(s) left by an interrupted run")
    held = sum(j.hold for j in jobs)
    chained = sum(len(j.plan.segments) > 1 for j in jobs)
    ends = sum(j.end_image is not None for j in jobs)
    speaking = sum(j.speech is not None for j in jobs)
    limit = f"{rule.max_seconds:g} s" if rule.max_seconds else "no limit"
    if speaking and not engine.preview and talk is None:
        ctx.say(f"warning: {speaking} speaking shot(s) are animated as ordinary clips: SPEAKING_WORKFLOW is empty "
                "(set it to speak_wan.json for lip sync)")
    elif talk is not None and speaking:
        chunks = sum(j.jobs for j in jobs if j.talk is not None)
        ctx.say(f"{speaking} speaking shot(s) lip-synced by {talk.rule.name} at {talk.fps:g} fps in {chunks} job(s)")
    ctx.say(f"{len(jobs)} clips at {look.width}x{look.height} {look.fps} fps with {engine.name} ({rule.name}, {limit}): "
            f"{held} held, {chained} chained from segments, {ends} ending on the next scene's picture, "
            f"{speaking} speaking")

    judging = ClipJudging(ctx, engine, look, folders, rule, [j.shot.clip for j in jobs])
    judged = {it.key: fingerprint(prints[it.key], judging.identity()) for it in items if judging.judges(it)}

    def work(it):
        if it.key in judged:
            return judging.clip(it, prints[it.key], engine.identity())
        return run_item(it, engine, look, folders)

    ctx.each(items, label="animate", key=lambda it: it.key, fingerprint=lambda it: judged.get(it.key, prints[it.key]),
             work=work, preview=engine.preview, workers=engine.parallel_jobs, chain=lambda it: it.job.shot.clip)
    judging.finish([j.shot.clip for j in jobs])
    ctx.checkpoints().retain_only(prints)
    ctx.say(f"wrote {len(jobs)} clips to {folders.clips}")


if __name__ == "__main__":
    script.run(main)
