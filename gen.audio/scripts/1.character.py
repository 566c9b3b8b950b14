"""gen.audio step 1: a voice for every speaker, then the summary, title and chapters of the story."""
from __future__ import annotations

from common.state.checkpoints import fingerprint
from common.engines.choice import engines_from_env
from common.engines.registry import get_engine
from common.formats.story_text import LLMStoryText, OfflineStoryText
from common.formats.chapters import Chapter, Chapters, write_chapters
from common.formats.speakers import VoiceEntry, VoiceMap, read_voice_map, write_voice_map
from common.formats.story import read_story
from common.config.paths import story_path
from common.run.runner import Script, ScriptContext
from common.formats.sections import chapter_sections, summary_chunks
from common.state.atomic import atomic_write_text
from common.audio.voices import VoiceLibrary, assign_voices
from common.channel.series import open_series

SUMMARY_LINES_PER_SENTENCE = 6
MAP_HEADER = (
    "Speaker tag -> voice stem, written by 1.character.py; edit freely, your choices are kept.",
    "A stem names voices/**/<stem>.wav, with its transcript in <stem>.reference.txt beside it.",
)

script = Script(__file__, "assign voices, then write 9.summary.txt, 10.title.txt and 12.chapters.txt",
                settings_keys=("LANGUAGE", "REGION", "NARRATOR_VOICE", "LM_STUDIO_MODEL"))
script.add_argument("--auto-gender", choices=("m", "f"), help="gender for speaker tags with no male_/female_ prefix")
script.add_argument("--mode", choices=("all", "voices", "text"), default="all", help="do only the voices or only the text")


def assign(ctx: ScriptContext, story) -> None:
    map_path = ctx.input_dir / "1.story.speakers.txt"
    library = VoiceLibrary.scan(ctx.code_dir / "voices")
    existing = read_voice_map(map_path) if map_path.is_file() else VoiceMap(())
    series = open_series(ctx.settings, ctx.pipeline_dir)  # channel mode: recurring speakers keep their voice
    recurring = series.voices_for(story.speakers()) if series else {}
    # --force recasts every speaker but the recurring ones; otherwise the user's choices in the map are kept.
    voices = assign_voices(
        story.speakers(), library, {**recurring, **({} if ctx.args.force else existing.as_dict())},
        language=ctx.settings.LANGUAGE, region=ctx.settings.REGION,
        narrator_voice=ctx.settings.NARRATOR_VOICE, auto_gender=ctx.args.auto_gender,
    )
    # Keep the user's lines (and comments) as written; change only what had to change.
    entries = [e if voices.get(e.speaker, e.voice) == e.voice else VoiceEntry(e.speaker, voices[e.speaker])
               for e in existing.entries]
    entries += [VoiceEntry(tag, stem) for tag, stem in voices.items() if existing.voice_for(tag) is None]
    write_voice_map(map_path, VoiceMap(tuple(entries), layout=existing.layout), header=MAP_HEADER)
    for tag, stem in voices.items():
        ctx.say(f"  {tag:<40} -> {stem}{'  (series)' if recurring.get(tag) == stem else ''}")
    if series:
        added = series.remember_voices(voices)
        if added:
            ctx.say(f"series: {', '.join(added)} added to {series.voices_file}")


def write_text(ctx: ScriptContext, story) -> None:
    engine = get_engine("text", ctx.settings, ctx.pipeline_dir).become(LLMStoryText, OfflineStoryText)
    ident = engine.identity()
    chunks = summary_chunks(story, SUMMARY_LINES_PER_SENTENCE)
    keyed = {f"summary_{i + 1:03d}": chunk for i, chunk in enumerate(chunks)}
    sections = chapter_sections(story)
    store = ctx.checkpoints()

    entries = ctx.each(
        list(keyed), label="summary", key=lambda k: k,
        fingerprint=lambda k: fingerprint(ident, [(u.speaker, u.text) for u in keyed[k]]),
        work=lambda k: ((), {"text": engine.summarize(keyed[k])}), preview=engine.preview,
    )
    summary = " ".join(entries[k].data["text"] for k in keyed)
    atomic_write_text(ctx.input_dir / "9.summary.txt", summary + "\n")

    title_entry = ctx.each(
        ["title"], label="title", key=lambda k: k, fingerprint=lambda k: fingerprint(ident, summary, story.speakers()),
        work=lambda k: ((), {"text": engine.title(story, summary)}), preview=engine.preview,
    )["title"]
    atomic_write_text(ctx.input_dir / "10.title.txt", title_entry.data["text"] + "\n")

    by_key = {f"chapter_{s.index:02d}": s for s in sections}
    chapter_entries = ctx.each(
        list(by_key), label="chapters", key=lambda k: k,
        fingerprint=lambda k: fingerprint(ident, by_key[k].end_percent, [(u.speaker, u.text) for u in by_key[k].utterances]),
        work=lambda k: ((), dict(zip(("title", "summary"), engine.chapter(story, by_key[k])))),
        preview=engine.preview,
    )
    chapters = [Chapter(by_key[k].end_percent, chapter_entries[k].data["title"], chapter_entries[k].data["summary"])
                for k in by_key]
    write_chapters(ctx.input_dir / "12.chapters.txt", Chapters(tuple(chapters)))
    store.retain_only([*keyed, "title", *by_key])
    ctx.say(f"title: {title_entry.data['text']}")
    ctx.say(f"{len(chapters)} chapters, summary of {len(summary.split())} words")


def main(ctx: ScriptContext) -> None:
    source = story_path(ctx.pipeline_dir)
    story = read_story(source)
    ctx.say(f"{source.name}: {len(story.utterances)} lines, {len(story.speakers())} speakers")
    if ctx.args.mode in ("all", "voices"):
        assign(ctx, story)
    if ctx.args.mode in ("all", "text"):
        ctx.say(engines_from_env(ctx.settings).reason)
        write_text(ctx, story)


if __name__ == "__main__":
    script.run(main)
