"""gen.audio step 7: make every sound effect of 4.sfx.txt and lay them out as output/sfx.wav.

One job per distinct (description, seconds) entry through the run's sound engine (Stable
Audio on ComfyUI, or the offline synthesiser), SFX_MAX_WORKERS jobs queued at once (never more)
so the server goes from one job straight to the next. Each clip is checkpointed (description,
seconds, seed, engine) in output/sfx/, so a crash or a rerun redoes only unfinished clips;
sfx.wav, mono at story.wav's rate and exactly its length in samples, is its own checkpoint.
"""
from __future__ import annotations

import hashlib

from common.audio import sfx_track
from common.audio.sfx_text import sfx_engine, sfx_input
from common.state.checkpoints import fingerprint
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext

script = Script(__file__, "make the sound effects of 4.sfx.txt and place them in output/sfx.wav")
script.add_argument("--workers", type=int, setting="SFX_MAX_WORKERS", help="jobs queued at once (default 3)")


def seed_for(description: str, fixed: int) -> int:
    """SFX_SEED, or one derived from the description so a rerun makes the same sound."""
    return fixed or int.from_bytes(hashlib.sha256(description.encode("utf-8")).digest()[:4], "little")


def main(ctx: ScriptContext) -> None:
    source, plan = sfx_input(ctx, "4.sfx.txt", "the sound-effect plan", "6.timing.py",
                             "it writes each effect's length and place.", unit="lines")
    story_wav = require_file(ctx.output_dir / "story.wav", "the narration", "run 2.story.py first.")
    story = sfx_track.wav_info(story_wav)
    sfx_track.check_length(plan, story, source.name)
    jobs = sfx_track.clip_jobs(plan)
    ctx.say(f"{source.name}: {len(jobs)} distinct effects for {story.seconds:.1f} s of story")
    engine, ident = sfx_engine(ctx, "sound")
    fixed_seed = int(ctx.settings.SFX_SEED)
    # A longer slot (a hand-edited plan) gets the longest clip the model makes, then silence.
    longest = float(ctx.settings.SFX_MAX_SECONDS)
    clip_dir = ctx.output_dir / "sfx"
    clip_dir.mkdir(parents=True, exist_ok=True)

    def make(job: sfx_track.ClipJob) -> tuple[list, dict]:
        out = engine.sound_effect(job.description, min(job.seconds, longest), clip_dir / f"{job.key}.wav",
                                  seed=seed_for(job.description, fixed_seed))
        return [out], {"description": job.description, "seconds": job.seconds}

    store = ctx.checkpoints()
    entries = ctx.each(
        jobs, label="sfx", key=lambda j: j.key,
        fingerprint=lambda j: fingerprint(ident, j.description, min(j.seconds, longest),
                                          seed_for(j.description, fixed_seed)),
        work=make, preview=engine.preview,
        workers=max(1, int(ctx.settings.SFX_MAX_WORKERS)),  # the user's limit, even below the engine's queue depth
    )
    store.retain_only([j.key for j in jobs] + ["sfx.wav"])
    clips = {j.key: ctx.pipeline_dir / entries[j.key].files[0] for j in jobs}
    sfx_wav = ctx.output_dir / "sfx.wav"

    def assemble(_: str) -> tuple[list, dict]:
        stats = sfx_track.build_sfx_track(plan, clips, story, sfx_wav)
        return [sfx_wav], {"frames": stats.frames, "sample_rate": stats.sample_rate, "effects": stats.effects,
                           "effect_seconds": stats.effect_seconds}

    # Clips by content (a remade clip is placed again), the story by its length and rate (all that matters here).
    track_fp = fingerprint(sfx_track.TRACK_VERSION, [(e.raw or e.seconds, e.text) for e in plan.entries],
                           [clips[j.key] for j in jobs], story.frames, story.sample_rate)
    done = ctx.each(["sfx.wav"], label="sfx.wav", key=lambda k: k, fingerprint=lambda k: track_fp, work=assemble,
                    preview=engine.preview or any(entries[j.key].preview for j in jobs))["sfx.wav"]
    ctx.say(f"{sfx_wav.name}: {done.data.get('effects', 0)} effects, {done.data.get('effect_seconds', 0)} s of sound, "
            f"{story.frames} samples at {story.sample_rate} Hz (= story.wav)")


if __name__ == "__main__":
    script.run(main)
