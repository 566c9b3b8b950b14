"""gen.audio step 2: speak the story chunk by chunk, then join the chunks into story.wav.

Each chunk of CHUNK_SIZE lines is one TTS job and one checkpoint, fingerprinted by its
lines, their voices and the engine: an edited line redoes only its own chunk. The per-line
timings go to output/story.timings.json for the transcription step.
"""
from __future__ import annotations

from common.state.checkpoints import fingerprint
from common.engines.choice import engines_from_env
from common.engines.registry import get_engine
from common.formats.story import read_story
from common.config.paths import require_file, story_path
from common.run.runner import Script, ScriptContext
from common.audio.speech import build_chunks, chunk_seed, join_story, retake_attempts, voices_for_story

script = Script(__file__, "speak the story in chunks and join them into output/story.wav",
                settings_keys=("CHUNK_SIZE", "LINE_PAUSE", "TTS_SEED", "STORY_WORKFLOW"))
script.add_argument("--chunk-size", type=int, setting="CHUNK_SIZE", help="story lines per TTS job (default 5)")


def main(ctx: ScriptContext) -> None:
    story = read_story(story_path(ctx.pipeline_dir))
    map_path = require_file(ctx.input_dir / "1.story.speakers.txt", "the voice map",
                            "run 1.character.py first, it writes one voice per speaker.")
    voices = voices_for_story(story, map_path, ctx.code_dir / "voices")
    chunks = build_chunks(story, voices, ctx.settings.CHUNK_SIZE)
    ctx.say(engines_from_env(ctx.settings).reason)
    engine = get_engine("speech", ctx.settings, ctx.pipeline_dir)
    ident = engine.identity()
    seed = ctx.settings.TTS_SEED
    out_dir = ctx.output_dir / "story"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx.say(f"{len(story.utterances)} lines in {len(chunks)} chunks of up to {ctx.settings.CHUNK_SIZE}, "
            f"engine {engine.name}")

    retakes = retake_attempts(ctx.pipeline_dir)

    def speak(chunk):
        take_seed = chunk_seed(seed, retakes.get(chunk.key, 0))
        spoken = engine.speak_chunk(chunk.lines, out_dir / f"{chunk.key}.wav", seed=take_seed)
        return [spoken.wav], {"spans": [list(s) for s in spoken.line_spans], "timing": spoken.timing}

    store = ctx.checkpoints()
    entries = ctx.each(
        chunks, label="story", key=lambda c: c.key,
        fingerprint=lambda c: fingerprint(ident, seed, c.identity()),
        work=speak, preview=engine.preview,
        workers=engine.parallel_jobs,  # chunks are independent: keep every server busy
    )
    store.retain_only([c.key for c in chunks] + ["story.wav"])
    join_story(ctx, chunks, entries, preview=engine.preview)


if __name__ == "__main__":
    script.run(main)
