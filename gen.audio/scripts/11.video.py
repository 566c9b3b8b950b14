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

from common.state.checkpoints import fingerprint
from common.run.errors import ConfigError, InputError
from common.media.ffmpeg import audio_duration
from common.audio.mix import upstream_preview
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext
from common.video.shorts import Passage, captions_in, choose_passages, read_story_timing
from common.video.final import (
    RECIPE, SHORTS_SIZE, caption_font, encode_short, encode_still, file_identity, format_ass, parse_size, remux_video,
)
from common.publish.checks import made_as_preview

MAX_SHORT_SECONDS = 180.0  # YouTube counts vertical videos up to 3 minutes as Shorts

script = Script(__file__, "make output/final.mp4 and the Shorts (output/shorts/shorts.vN.mp4)",
                settings_keys=("FINAL_VIDEO_SIZE", "VIDEO_AUDIO_BITRATE", "SHORTS_VARIATIONS", "SHORTS_SECONDS",
                               "SHORTS_CAPTIONS"))
script.add_argument("--video-file", metavar="PATH",
                    help="cut the Shorts from this video (e.g. ../../gen.image/output/final_sd.mp4) instead of the "
                         "thumbnail; final.mp4 then gets its picture")
script.add_argument("--mode", choices=("all", "final", "shorts"), default="all", help="make only final.mp4 or only the Shorts")
script.add_argument("--variations", type=int, setting="SHORTS_VARIATIONS", help="number of Shorts (default 5)")
script.add_argument("--shorts-seconds", type=float, setting="SHORTS_SECONDS", help="target length of a Short (default 60)")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


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
    size = parse_size(s.FINAL_VIDEO_SIZE)
    final = ctx.output_dir / "final.mp4"
    if video is None:
        source = require_file(ctx.output_dir / "thumbnail.png", "the thumbnail", "run 10.thumbnail.py first; it draws it.")
        ctx.say(f"{final.name}: {source.name} over {wav.name} ({_clock(audio_duration(wav))}), {s.FINAL_VIDEO_SIZE}")
    else:
        source = video
        ctx.say(f"{final.name}: the picture of {video} with the sound of {wav.name}")

    def work(_: str):
        if video is None:
            info = encode_still(source, wav, final, size=size, audio_bitrate=s.VIDEO_AUDIO_BITRATE)
            how = "still"
        else:
            info, how = remux_video(video, wav, final, size=size, audio_bitrate=s.VIDEO_AUDIO_BITRATE)
        return [final], {"duration": round(info.duration, 3), "picture": how,
                         "size": f"{info.video.width}x{info.video.height}"}

    ctx.each(["final.mp4"], label="final", key=lambda k: k, work=work, preview=preview,
             fingerprint=lambda k: fingerprint(k, RECIPE, "video" if video else "still", size,
                                               s.VIDEO_AUDIO_BITRATE, file_identity(wav), file_identity(source)))


def check_settings(s) -> None:
    """Refuse impossible settings before any encode, not after final.mp4 took its time."""
    parse_size(s.FINAL_VIDEO_SIZE)
    if not 0 < s.SHORTS_SECONDS <= MAX_SHORT_SECONDS:
        raise ConfigError(f"SHORTS_SECONDS is {s.SHORTS_SECONDS:g}; use more than 0 and at most {MAX_SHORT_SECONDS:g} "
                          "(YouTube treats longer vertical videos as ordinary videos).")
    if s.SHORTS_VARIATIONS < 0:
        raise ConfigError(f"SHORTS_VARIATIONS is {s.SHORTS_VARIATIONS}; use 0 or more.")


def make_shorts(ctx: ScriptContext, wav: Path, video: Path | None, preview: bool) -> list[str]:
    s = ctx.settings
    if s.SHORTS_VARIATIONS == 0:
        return []
    timing = read_story_timing(ctx.input_dir, ctx.output_dir)
    for note in timing.notes:
        ctx.say(note)
    length = audio_duration(wav)
    passages = choose_passages(timing.lines, timing.cues, count=s.SHORTS_VARIATIONS, target=s.SHORTS_SECONDS,
                               audio_end=length, chapters=timing.chapters)
    if len(passages) < s.SHORTS_VARIATIONS:
        ctx.say(f"the story has room for {len(passages)} Shorts, not {s.SHORTS_VARIATIONS}")
    shorts_dir = ctx.output_dir / "shorts"
    thumbnail = ctx.output_dir / "thumbnail.png"
    font = caption_font()
    cues = timing.cues if s.SHORTS_CAPTIONS else ()
    if cues:
        ctx.say(f"captions in {font.family} ({font.file})")
    jobs = {f"shorts.v{n}": (n, p) for n, p in enumerate(passages, 1)}

    def picture_for(number: int) -> Path:
        if video is not None:
            return video
        cover = shorts_dir / f"cover.v{number}.png"
        if cover.is_file() and cover.stat().st_size > 0:
            return cover
        return require_file(thumbnail, "the thumbnail", "run 10.thumbnail.py first; it draws it and the Shorts covers.")

    for key, (number, p) in jobs.items():
        ctx.say(f"  {key}: {_clock(p.start)}-{_clock(p.end)} ({p.duration:.1f} s) from line {p.first_line}, {p.reason}"
                + ("" if p.clean_end == "sentence" else f" (no sentence end fits: cut at a {p.clean_end} end)")
                + f", over {picture_for(number).name}")

    def fp(key: str) -> str:
        number, p = jobs[key]
        shown = format_ass(captions_in(cues, p.start, p.end), SHORTS_SIZE, font)  # texts, times, style, font
        return fingerprint(key, RECIPE, SHORTS_SIZE, round(p.start, 3), round(p.end, 3), round(p.fade_out, 3), shown,
                           Path(font.file).name, s.VIDEO_AUDIO_BITRATE, file_identity(wav),
                           file_identity(picture_for(number)), bool(video))

    def work(key: str):
        number, p = jobs[key]
        dst = shorts_dir / f"{key}.mp4"
        info = encode_short(picture_for(number), wav, dst, start=p.start, end=p.end,
                            captions=captions_in(cues, p.start, p.end), font=font, fade_in=p.fade_in,
                            fade_out=p.fade_out, from_video=video is not None, audio_bitrate=s.VIDEO_AUDIO_BITRATE)
        return [dst], _passage_data(p, info.duration)

    ctx.each(list(jobs), label="shorts", key=lambda k: k, fingerprint=fp, work=work, preview=preview)
    return list(jobs)


def _passage_data(p: Passage, duration: float) -> dict:
    return {"start": round(p.start, 3), "end": round(p.end, 3), "duration": round(duration, 3),
            "first_line": p.first_line, "reason": p.reason}


def remove_stale_shorts(shorts_dir: Path, keep: list[str]) -> list[Path]:
    """Shorts from a run with more SHORTS_VARIATIONS: 12.youtube.py must not upload them."""
    stale = [path for path in shorts_dir.glob("shorts.v*.mp4") if path.stem not in keep] if shorts_dir.is_dir() else []
    for path in stale:
        path.unlink()
    return stale


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
