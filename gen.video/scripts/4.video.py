"""gen.video step 4: the clips in screen order over gen.audio's final.wav -> output/final_sd.mp4.

Each clip fills its shot's slot on the narration's timeline to the frame (held on its last
frame if it came out short, cut if long), and the last shot runs to the end of final.wav, so
the video is exactly as long as the audio (within a frame) and every picture stays on its words.
"""
from __future__ import annotations

from common.video import clips
from common.media import ffmpeg as media
from common.video.animation import fill_slots
from common.video.final import parse_size
from common.audio.mix import upstream_preview
from common.state.checkpoints import fingerprint
from common.run.errors import InputError
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext
from common.video.storyboard import read_storyboard

VERSION = 2
script = Script(__file__, "join the clips over gen.audio's final.wav into output/final_sd.mp4",
                settings_keys=("FINAL_VIDEO_SIZE", "FRAMES_PER_SECOND"))


def main(ctx: ScriptContext) -> None:
    board = read_storyboard(ctx.pipeline_dir)
    audio = require_file(ctx.pipeline_dir.parent / "gen.audio" / "output" / "final.wav", "gen.audio's final mix",
                         "run gen.audio through 8.combine.py first.")
    # The published size (SPEC 8: 1280x720 or 1920x1080); clips made at VIDEO_WIDTH x VIDEO_HEIGHT are scaled.
    width, height = parse_size(ctx.settings.FINAL_VIDEO_SIZE)
    fps = ctx.settings.FRAMES_PER_SECOND
    seconds = media.audio_duration(audio)
    counts = fill_slots([s.start for s in board.shots], round(seconds * fps), fps)
    folder = ctx.output_dir / "animation"
    shots = [(folder / f"{shot.clip}.mp4", count) for shot, count in zip(board.shots, counts) if count > 0]
    missing = [path for path, _ in shots if not path.is_file() or not path.stat().st_size]
    if missing:
        raise InputError(f"{len(missing)} clip(s) are missing, the first {missing[0]}; run 3.animate.py first.")
    out = ctx.output_dir / "final_sd.mp4"
    ctx.say(f"{len(shots)} clips over {audio.name} ({seconds:.2f} s, {sum(counts)} frames at {fps} fps)")

    def render(_: str):
        frames = clips.assemble(shots, audio, out, width=width, height=height, fps=fps)
        return [out], {"frames": frames, "seconds": round(frames / fps, 3)}

    ctx.each(["final_sd.mp4"], label="video", key=lambda k: k,
             fingerprint=lambda k: fingerprint(VERSION, shots, audio, width, height, fps),
             work=render, preview=upstream_preview(ctx.pipeline_dir, ("3.animate",)))
    info = media.probe(out)
    ctx.say(f"wrote {out} ({info.duration:.2f} s, {width}x{height}, H.264 + AAC)")


if __name__ == "__main__":
    script.run(main)
