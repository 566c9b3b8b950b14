"""gen.image step 6: output/merged.mp4 + gen.audio's final.wav -> output/final_sd.mp4.

The picture is copied as 5.video.py encoded it (never encoded twice), the narration goes in as
AAC, and the index is put at the front (faststart) so the video starts playing while it
downloads. 5.video.py cut merged.mp4 to final.wav's length, so nothing is padded or trimmed;
the result is checked with common.media.ffmpeg.probe. One checkpointed item.
"""
from __future__ import annotations

from pathlib import Path

from common.media import ffmpeg as media
from common.state.checkpoints import fingerprint
from common.audio.mix import upstream_preview
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext
from common.pictures.slideshow import VERSION, check_combined, mux

script = Script(__file__, "merged.mp4 + gen.audio's final.wav -> output/final_sd.mp4 (picture copied, AAC sound)",
                settings_keys=("COMBINE_AUDIO_BITRATE",))


def _preview(ctx: ScriptContext) -> bool:
    """Offline pictures or offline speech make the video a preview too (12.youtube.py refuses those)."""
    return (upstream_preview(ctx.pipeline_dir, ("5.video",))
            or upstream_preview(ctx.pipeline_dir.parent / "gen.audio", ("2.story", "7.sfx", "8.combine")))


def main(ctx: ScriptContext) -> None:
    video = require_file(ctx.output_dir / "merged.mp4", "the scene video", "run 5.video.py first.")
    audio = require_file(ctx.pipeline_dir.parent / "gen.audio" / "output" / "final.wav", "gen.audio's final mix",
                         "run gen.audio through 8.combine.py first.")
    out = ctx.output_dir / "final_sd.mp4"
    bitrate = ctx.settings.COMBINE_AUDIO_BITRATE
    seconds = media.audio_duration(audio)
    picture = media.probe(video).video
    fps = picture.fps if picture is not None and picture.fps else float(ctx.settings.VIDEO_FPS)
    ctx.say(f"{video.name} + {audio.name} ({seconds:.3f} s) -> {out.name}: picture copied, AAC {bitrate}")

    def combine(_: str) -> tuple[list[Path], dict]:
        mux(video, audio, out, bitrate=bitrate)
        info = check_combined(out, audio_seconds=seconds, fps=fps)
        return [out], {"seconds": round(info.duration, 3)}

    entry = ctx.each(["final_sd.mp4"], label="combine", key=lambda k: k, work=combine, preview=_preview(ctx),
                     fingerprint=lambda k: fingerprint(VERSION, video, audio, bitrate))["final_sd.mp4"]
    ctx.say(f"wrote {out} ({entry.data['seconds']:.3f} s)")


if __name__ == "__main__":
    script.run(main)
