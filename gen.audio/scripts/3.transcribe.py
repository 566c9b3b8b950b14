"""gen.audio step 3: what story.wav says and when, as subtitles (2.story.srt), plain text
(2.story.str.txt) and the `<seconds>: <text>` timeline (2.timeline.txt) that the sound-effect
and image steps cut the story by.

The transcript (Whisper, or the line timings 2.story.py wrote) is one checkpointed item,
fingerprinted by story.wav's content, the timings and the transcriber; each output file is
another, so a rerun with nothing changed does nothing and a hand-edited subtitle file is kept.
"""
from __future__ import annotations

from common.media import ffmpeg as media
from common.state.atomic import atomic_write_text
from common.state.checkpoints import fingerprint
from common.formats.srt import write_srt
from common.formats.timeline import write_timeline
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext
from common.audio.speech import TIMINGS_FILE
from common.audio.subtitles import build_cues, check_cues, plain_text, to_srt, to_timeline
from common.audio.transcribe import (
    TRANSCRIPT_FILE, choose_transcriber, cue_rules, make_transcriber, read_transcript,
    story_preview, whisper_installed, write_transcript,
)

script = Script(__file__, "transcribe output/story.wav into 2.story.srt, 2.story.str.txt and 2.timeline.txt")
script.add_argument("--engine", choices=("auto", "whisper", "timings"), setting="TRANSCRIBE_ENGINE",
                    help="whisper, the line timings of 2.story.py, or auto (default)")
script.add_argument("--model", setting="WHISPER_MODEL", help="Whisper model (default base)")


def main(ctx: ScriptContext) -> None:
    wav = require_file(ctx.output_dir / "story.wav", "the narrated story", "run 2.story.py first; it writes it.")
    timings_path = ctx.output_dir / TIMINGS_FILE
    preview = story_preview(ctx.pipeline_dir)
    choice = choose_transcriber(ctx.settings.TRANSCRIBE_ENGINE, preview=preview,
                                has_timings=timings_path.is_file(), installed=whisper_installed())
    ctx.say(choice.reason)
    transcriber = make_transcriber(choice, ctx.settings, timings_path)
    transcript_path = ctx.output_dir / TRANSCRIPT_FILE
    source = fingerprint(transcriber.identity(), wav)
    entry = ctx.each(
        ["transcript"], label="transcribe", key=lambda k: k, fingerprint=lambda k: source,
        work=lambda k: ([write_transcript(transcript_path, transcriber.transcribe(wav))], {"engine": choice.engine}),
        preview=bool(preview),
    )["transcript"]

    transcript = read_transcript(transcript_path)
    duration = media.audio_duration(wav)
    rules = cue_rules(ctx.settings)
    cues = build_cues(transcript.words, rules, total=duration)
    writers = {
        "2.story.srt": lambda path: write_srt(path, to_srt(cues)),
        "2.story.str.txt": lambda path: atomic_write_text(path, transcript.text or plain_text(cues)),
        "2.timeline.txt": lambda path: write_timeline(path, to_timeline(cues, duration)),
    }
    ctx.each(
        list(writers), label="subtitles", key=lambda name: name,
        fingerprint=lambda name: fingerprint(entry.fingerprint, name, rules.__dict__, round(duration, 3)),
        work=lambda name: ([writers[name](ctx.input_dir / name)], {"cues": len(cues)}),
        preview=entry.preview,
    )
    ctx.checkpoints().retain_only(["transcript", *writers])
    for problem in check_cues(cues, rules):
        ctx.say(f"note: {problem} (the speech leaves no room to do better)")
    speech_end = cues[-1].end if cues else 0.0
    ctx.say(f"{', '.join(writers)} in {ctx.input_dir}: {len(cues)} subtitles, "
            f"speech ends at {speech_end:.3f} s of {duration:.3f} s")


if __name__ == "__main__":
    script.run(main)
