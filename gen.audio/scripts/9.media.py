"""gen.audio step 9: the YouTube title, description (with chapters), tags and the thumbnail prompt.

Each text answer (the description's hook and bullets, the tags, the thumbnail prompt, and the
title when 10.title.txt has none) is one checkpoint, fingerprinted by the engine, the title,
the summary and the story, so a rerun asks nothing again. Chapter times come from the audio:
a chapter of 12.chapters.txt starts where its first line starts in story.wav. A title or
thumbnail prompt already in input/ is kept, as is any file edited by hand since this script
wrote it; --force replaces them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from common.state.checkpoints import CheckpointStore, fingerprint
from common.engines.choice import engines_from_env
from common.publish.media_text import MEDIA_TEXT_VERSION, LLMMediaText, OfflineMediaText
from common.engines.registry import get_engine
from common.formats.story_text import LLMStoryText, OfflineStoryText, clean_title
from common.formats.chapters import read_chapters
from common.formats.story import read_story
from common.publish.metadata import (
    MAX_TAGS_CHARS, MIN_CHAPTER_SECONDS, MIN_CHAPTERS, chapter_marks, compose_description, fit_tags,
    format_tags, format_timestamp, hand_edited, load_timeline, read_title, tags_length, title_problem,
    write_if_changed, write_owned,
)
from common.config.paths import require_file, story_path
from common.run.runner import Script, ScriptContext

script = Script(__file__, "write the video title, description with chapters, tags and the thumbnail prompt")


def _publish(ctx: ScriptContext, store: CheckpointStore, path: Path, text: str, *, preview: bool,
             came_with_project: bool = False) -> None:
    shown = path.relative_to(ctx.pipeline_dir).as_posix()
    if not ctx.args.force and hand_edited(store, path, came_with_project=came_with_project):
        ctx.say(f"kept {shown}: it was written by hand (--force replaces it)")
        return
    changed = write_owned(store, path, text, preview=preview)
    ctx.say(f"{'wrote' if changed else 'unchanged:'} {shown}")


def main(ctx: ScriptContext) -> None:
    story_file = story_path(ctx.pipeline_dir)
    story = read_story(story_file)
    hint = "run 1.character.py first, it writes it from the story."
    summary = require_file(ctx.input_dir / "9.summary.txt", "the story summary", hint).read_text(encoding="utf-8-sig").strip()
    chapters = read_chapters(require_file(ctx.input_dir / "12.chapters.txt", "the chapter list", hint))
    timeline = load_timeline(ctx.output_dir)
    ctx.say(engines_from_env(ctx.settings).reason)
    text = get_engine("text", ctx.settings, ctx.pipeline_dir)
    engine = text.become(LLMMediaText, OfflineMediaText)
    ident = engine.identity()
    store = ctx.checkpoints()

    def ask(key: str, title: str, answer: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return ctx.each([key], label=key, key=lambda k: k,
                        fingerprint=lambda k: fingerprint(ident, MEDIA_TEXT_VERSION, k, title, summary, story_file),
                        work=lambda k: ((), answer()), preview=engine.preview)[key].data

    # Title: the one in 10.title.txt when YouTube accepts it (repaired when it can be), else a new one.
    title_path = ctx.input_dir / "10.title.txt"
    current = read_title(title_path)
    if current and not ctx.args.force and title_problem(current) is None:
        title = current
    elif current and not ctx.args.force and title_problem(clean_title(current)) is None:
        title = clean_title(current)
        ctx.say(f"10.title.txt: {title_problem(current)}; rewrote it as {title!r}")
        write_if_changed(title_path, title + "\n")
    else:
        title = clean_title(ask("title", "", lambda: {"text": text.become(LLMStoryText, OfflineStoryText).title(story, summary)})["text"])
        write_if_changed(title_path, title + "\n")
    ctx.say(f"title: {title}")

    hook = ask("hook", title, lambda: dict(zip(("hook", "bullets"), engine.description_hook(story, title, summary))))
    tags = fit_tags([*ask("tags", title, lambda: {"tags": engine.tags(story, title, summary)})["tags"], title])
    thumbnail_path = ctx.input_dir / "10.thumbnail.txt"
    if not ctx.args.force and hand_edited(store, thumbnail_path, came_with_project=True):
        ctx.say("kept input/10.thumbnail.txt: it came with the project or was edited by hand (--force replaces it)")
    else:
        prompt = ask("thumbnail_prompt", title, lambda: {"text": engine.thumbnail_prompt(story, title, summary)})["text"]
        _publish(ctx, store, thumbnail_path, prompt.strip() + "\n", preview=engine.preview, came_with_project=True)

    marks, how = chapter_marks(story, chapters, timeline)
    if not marks:
        ctx.say(f"no chapter list: {timeline.duration:.0f} s of audio cannot hold {MIN_CHAPTERS} chapters of "
                f"{MIN_CHAPTER_SECONDS} s each")
    elif how == "percent":
        ctx.say("chapter times are 12.chapters.txt's percentages of the audio's length "
                "(the line timings do not match the story; rerun 2.story.py for exact ones)")
    for mark in marks:
        ctx.say(f"  {format_timestamp(mark.start):>8} {mark.title}")
    description = compose_description(hook["hook"], hook["bullets"], marks)
    _publish(ctx, store, ctx.output_dir / "description.txt", description, preview=engine.preview)
    _publish(ctx, store, ctx.output_dir / "tags.txt", format_tags(tags), preview=engine.preview)
    store.retain_only(["title", "hook", "tags", "thumbnail_prompt", "10.thumbnail.txt", "description.txt", "tags.txt"])
    ctx.say(f"description: {len(description.encode('utf-8'))} bytes, {len(marks)} chapters; "
            f"{len(tags)} tags, {tags_length(tags)}/{MAX_TAGS_CHARS} characters as YouTube counts them")


if __name__ == "__main__":
    script.run(main)
