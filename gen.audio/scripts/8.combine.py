"""gen.audio step 8: mix the speech with the sound effects (and an optional music bed) into
output/final.wav, the soundtrack every video is cut to.

SFX and music duck under the speech (a compressor keyed by it), and the mix is normalised to
FINAL_LOUDNESS (-14 LUFS) with its true peak under FINAL_TRUE_PEAK (-1 dBTP), in two loudnorm
passes; the logic is in common/audio/mix.py. The mix is one checkpointed item, fingerprinted by the
content of story.wav, sfx.wav and the music file and by the mix settings: a rerun with none of
them changed does nothing.
"""
from __future__ import annotations

from pathlib import Path

from common.state.checkpoints import fingerprint
from common.audio.mix import MixSettings, find_music, list_music, mix_story, music_dir_for, upstream_preview
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext

script = Script(__file__, "mix story.wav and sfx.wav (+ music) into output/final.wav at -14 LUFS",
                settings_keys=("SFX_VOLUME", "MUSIC_FILE", "MUSIC_VOLUME", "DUCK_THRESHOLD", "DUCK_RATIO",
                               "DUCK_ATTACK", "DUCK_RELEASE", "FINAL_LOUDNESS", "FINAL_TRUE_PEAK"))
script.add_argument("--music", setting="MUSIC_FILE", help="music bed: a file in music/ (or a path); default none")
script.add_argument("--sfx-volume", type=float, setting="SFX_VOLUME", help="dB applied to sfx.wav (default -6)")


def main(ctx: ScriptContext) -> None:
    story = require_file(ctx.output_dir / "story.wav", "the narrated story", "run 2.story.py first; it writes it.")
    sfx: Path | None = ctx.output_dir / "sfx.wav"
    if not sfx.is_file() or sfx.stat().st_size == 0:
        ctx.say(f"no {sfx.relative_to(ctx.pipeline_dir)} (7.sfx.py writes it): mixing the speech alone")
        sfx = None
    music_dir = music_dir_for(ctx.pipeline_dir, ctx.settings.MUSIC_DIR)
    music = find_music(music_dir, ctx.settings.MUSIC_FILE)
    offered = list_music(music_dir)
    if music is None and offered:
        ctx.say(f"no music bed (set MUSIC_FILE to one of the {len(offered)} files in {music_dir})")
    settings = MixSettings.from_settings(ctx.settings)
    final = ctx.output_dir / "final.wav"
    ctx.say(f"mixing {story.name}" + (f" + {sfx.name}" if sfx else "") + (f" + music {music.name}" if music else "")
            + f" -> {final.name} ({settings.target_lufs:g} LUFS, {settings.sample_rate} Hz stereo)")

    def work(target: Path):
        result = mix_story(story, target, sfx=sfx, music=music, settings=settings, say=ctx.say)
        ctx.say(f"wrote {target} ({result.duration:.1f} s, {result.loudness.integrated_lufs:g} LUFS, "
                f"{result.loudness.true_peak_dbtp:g} dBTP, {result.normalization})")
        return [target], result.summary()

    mix_fp = fingerprint(story, sfx, music, settings.identity())
    ctx.each([final], label="mix", key=lambda p: p.name, fingerprint=lambda p: mix_fp, work=work,
             preview=upstream_preview(ctx.pipeline_dir))
    ctx.checkpoints().retain_only([final.name])


if __name__ == "__main__":
    script.run(main)
