"""gen.audio step 11: output/final.mp4 (the thumbnail over final.wav) and the Shorts.

final.mp4 is the still thumbnail for as long as final.wav lasts, sound and picture starting
together (the seed's had a one-second offset). With --video-file (gen.image's or gen.video's
final_sd.mp4) final.mp4 is that video's picture with final.wav's sound instead: copied when it
is already H.264 yuv420p at 1280x720 or 1920x1080, re-encoded to FINAL_VIDEO_SIZE otherwise.

The Shorts (SHORTS_VARIATIONS of them, SHORTS_SECONDS each at most, 1080x1920) start at
chapter starts and end at sentence ends (common/video/shorts.py), over output/shorts/cover.vN.png
(or the thumbnail fitted to 9:16), or over the same stretch of --video-file centre-cropped
to 9:16; the subtitles are burned in. final.mp4 and each Short are one checkpoint each.
"""
from __future__ import annotations

from pathlib import Path

from common.run.errors import InputError
from common.media.ffmpeg import audio_duration
from common.audio.mix import upstream_preview
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext
from common.video.captions import caption_font
from common.video.shorts import choose_passages, read_story_timing
from common.video.final import check_settings, clock, parse_size, plan_final, plan_shorts, remove_stale_shorts
from common.publish.checks import made_as_preview

script = Script(__file__, "make output/final.mp4 and the Shorts (output/shorts/shorts.vN.mp4)",
                settings_keys=("FINAL_VIDEO_SIZE", "VIDEO_AUDIO_BITRATE", "SHORTS_VARIATIONS", "SHORTS_SECONDS",
                               "SHORTS_CAPTIONS"))
script.add_argument("--video-file", metavar="PATH",
                    help="cut the Shorts from this video (e.g. ../../gen.image/output/final_sd.mp4) instead of the "
                         "thumbnail; final.mp4 then gets its picture")
script.add_argument("--mode", choices=("all", "final", "shorts"), default="all", help="make only final.mp4 or only the Shorts")
script.add_argument("--variations", type=int, setting="SHORTS_VARIATIONS", help="number of Shorts (default 5)")
script.add_argument("--shorts-seconds", type=float, setting="SHORTS_SECONDS", help="target length of a Short (default 60)")


def _video_file(arg: str | None) -> Path | None:
    if not arg:
        return None
    path = Path(arg).expanduser()
    if not path.is_file():
        raise InputError(f"--video-file {arg}: no such file (from {Path.cwd()}); run the pipeline that makes it "
                         "first, or fix the path.")
    return path.resolve()


def make_final(ctx: ScriptContext, wav: Path, video: Path | None, preview: bool) -> None:
    s = ctx.settings
    final = plan_final(ctx.output_dir, wav, video, parse_size(s.FINAL_VIDEO_SIZE), s.VIDEO_AUDIO_BITRATE)
    if video is None:
        ctx.say(f"final.mp4: {final.source.name} over {wav.name} ({clock(audio_duration(wav))}), {s.FINAL_VIDEO_SIZE}")
    else:
        ctx.say(f"final.mp4: the picture of {video} with the sound of {wav.name}")
    ctx.each([final], label="final", key=lambda f: f.dst.name, fingerprint=lambda f: f.fingerprint(),
             work=lambda f: f.make(), preview=preview)


def make_shorts(ctx: ScriptContext, wav: Path, video: Path | None, preview: bool) -> list[str]:
    s = ctx.settings
    if s.SHORTS_VARIATIONS == 0:
        return []
    timing = read_story_timing(ctx.input_dir, ctx.output_dir)
    for note in timing.notes:
        ctx.say(note)
    passages = choose_passages(timing.lines, timing.cues, count=s.SHORTS_VARIATIONS, target=s.SHORTS_SECONDS,
                               audio_end=audio_duration(wav), chapters=timing.chapters)
    if len(passages) < s.SHORTS_VARIATIONS:
        ctx.say(f"the story has room for {len(passages)} Shorts, not {s.SHORTS_VARIATIONS}")
    font = caption_font()
    cues = timing.cues if s.SHORTS_CAPTIONS else ()
    if cues:
        ctx.say(f"captions in {font.family} ({font.file})")
    shorts = plan_shorts(passages, cues, output_dir=ctx.output_dir, wav=wav, video=video, font=font,
                         audio_bitrate=s.VIDEO_AUDIO_BITRATE)
    for short in shorts:
        ctx.say(short.describe())
    ctx.each(shorts, label="shorts", key=lambda sh: sh.key, fingerprint=lambda sh: sh.fingerprint(),
             work=lambda sh: sh.make(), preview=preview)
    return [short.key for short in shorts]


def main(ctx: ScriptContext) -> None:
    check_settings(ctx.settings)
    wav = require_file(ctx.output_dir / "final.wav", "the soundtrack", "run 8.combine.py first; it mixes it.")
    video = _video_file(ctx.args.video_file)
    preview = upstream_preview(ctx.pipeline_dir, ("2.story", "7.sfx", "8.combine", "10.thumbnail"))
    preview = preview or (video is not None and made_as_preview(video, warn=ctx.say))
    keys: list[str] = []
    if ctx.args.mode in ("all", "final"):
        make_final(ctx, wav, video, preview)
        keys.append("final.mp4")
    if ctx.args.mode in ("all", "shorts"):
        shorts = make_shorts(ctx, wav, video, preview)
        for old in remove_stale_shorts(ctx.output_dir / "shorts", shorts):
            ctx.say(f"removed {old.name}: left from a run with more Shorts")
        keys += shorts
    if ctx.args.mode == "all":
        ctx.checkpoints().retain_only(keys)


if __name__ == "__main__":
    script.run(main)
