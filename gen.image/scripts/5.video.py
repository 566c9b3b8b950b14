"""gen.image step 5: a clip per scene over its time on the narration, then output/merged.mp4.

Reads input/2.timeline.script.txt (4.audio.py) and the scene pictures output/scene/<scene_id>.png
(3.scene.py). Each scene is held for its slot (SCENE_PUSH=true: a slow push or pan instead)
as output/video/<clip>.mp4, the cuts placed on the cumulative timeline so merged.mp4 lasts as
long as gen.audio's final.wav to the frame however many scenes there are; the clips are
joined by stream copy. Every clip and merged.mp4 are checkpointed. Logic: common/pictures/slideshow.py.
"""
from __future__ import annotations

from pathlib import Path

from common.media import ffmpeg as media
from common.state.checkpoints import fingerprint
from common.audio.mix import upstream_preview
from common.run.errors import InputError
from common.formats.timeline import read_timeline_script
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext
from common.pictures.scene_timeline import narration_file
from common.pictures.slideshow import (
    VERSION, Slide, check_frames, frame_rate, join_clips, plan_slides, render_clip, total_frames,
)

script = Script(__file__, "one clip per scene picture, joined into output/merged.mp4 as long as the narration",
                settings_keys=("VIDEO_FPS", "SLIDESHOW_WIDTH", "SLIDESHOW_HEIGHT", "SLIDESHOW_FIT", "SCENE_PUSH",
                               "SCENE_PUSH_ZOOM"))


def narration_length(ctx: ScriptContext, fallback: float) -> tuple[float, str]:
    """gen.audio's final.wav (8.combine.py), else its story.wav, else the timeline's own total."""
    path = narration_file(ctx.pipeline_dir.parent / "gen.audio")
    return (media.audio_duration(path), path.name) if path else (fallback, "the timeline (no gen.audio final.wav yet)")


def main(ctx: ScriptContext) -> None:
    s = ctx.settings
    timeline_file = require_file(ctx.input_dir / "2.timeline.script.txt", "the scene timeline",
                                 "run 4.audio.py first: it says which scene shows when.")
    timeline = read_timeline_script(timeline_file)
    fps = frame_rate(s.VIDEO_FPS)
    seconds, length_from = narration_length(ctx, timeline.total())
    slides = plan_slides(timeline, seconds, fps)
    pictures = {slide.scene_id: ctx.output_dir / "scene" / f"{slide.scene_id}.png" for slide in slides}
    missing = [scene for scene, path in pictures.items() if not path.is_file() or path.stat().st_size == 0]
    if missing:
        listed = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise InputError(f"{len(missing)} scene picture(s) are missing in {ctx.output_dir / 'scene'}: {listed}; "
                         "run 3.scene.py first (it draws output/scene/<scene_id>.png).")
    frames = total_frames(seconds, fps)
    ctx.say(f"{len(slides)} clips, {frames} frames at {fps} fps ({seconds:.3f} s from {length_from}), "
            f"{s.SLIDESHOW_WIDTH}x{s.SLIDESHOW_HEIGHT}, {'slow push' if s.SCENE_PUSH else 'still'} pictures")
    folder = ctx.output_dir / "video"
    folder.mkdir(parents=True, exist_ok=True)
    preview = upstream_preview(ctx.pipeline_dir, ("3.scene",))
    look = [s.SLIDESHOW_WIDTH, s.SLIDESHOW_HEIGHT, str(fps), s.SLIDESHOW_FIT, s.SCENE_PUSH,
            s.SCENE_PUSH_ZOOM if s.SCENE_PUSH else None]

    def render(slide: Slide) -> tuple[list[Path], dict]:
        out = render_clip(pictures[slide.scene_id], folder / f"{slide.clip}.mp4", frames=slide.frames, fps=fps,
                          width=s.SLIDESHOW_WIDTH, height=s.SLIDESHOW_HEIGHT, push=s.SCENE_PUSH, zoom=s.SCENE_PUSH_ZOOM,
                          fit=s.SLIDESHOW_FIT, seed_text=slide.clip)
        return [out], {"frames": slide.frames, "first_frame": slide.first_frame}

    # Two at a time: a short clip costs mostly ffmpeg's start-up, which a second core hides.
    entries = ctx.each(slides, label="clips", key=lambda sl: sl.clip, preview=preview, work=render, workers=2,
                       fingerprint=lambda sl: fingerprint(VERSION, pictures[sl.scene_id], sl.frames, look,
                                                          sl.clip if s.SCENE_PUSH else None))
    merged = ctx.output_dir / "merged.mp4"
    clips = [ctx.pipeline_dir / entries[sl.clip].files[0] for sl in slides]

    def join(_: str) -> tuple[list[Path], dict]:
        how = join_clips(clips, merged, fps=fps, width=s.SLIDESHOW_WIDTH, height=s.SLIDESHOW_HEIGHT)
        check_frames(merged, frames, "has", "delete output/video and run 5.video.py again.")
        return [merged], {"frames": frames, "seconds": round(float(frames / fps), 6), "how": how}

    done = ctx.each(["merged.mp4"], label="merge", key=lambda k: k, preview=preview, work=join,
                    fingerprint=lambda k: fingerprint(VERSION, [entries[sl.clip].fingerprint for sl in slides]))
    ctx.checkpoints().retain_only([*(sl.clip for sl in slides), "merged.mp4"])
    info = done["merged.mp4"].data
    ctx.say(f"wrote {merged} ({info['frames']} frames, {info['seconds']:.3f} s, {info.get('how', 'stream copy')})")


if __name__ == "__main__":
    script.run(main)
