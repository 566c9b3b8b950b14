"""The text 9.media.py needs for YouTube: a description hook with bullets, tags, and a thumbnail prompt.

The questions and their checks read in one place, beside the metadata they feed. The LLM answers in JSON checked against a schema (a
retry tells the model what was wrong); the offline engine invents nothing: it arranges the
story's own markup (speakers, locations, scenes) and the summary 1.character.py wrote.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.engines.text import LLMText, OfflineText
from common.formats.story import Story
from common.formats.story_text import gist, location_phrase, proper_phrase
from common.publish.metadata import MAX_TAG_CHARS, clean_tag, first_sentences, shorten

# Prompts and offline rules of this module; part of the checkpoint fingerprints of 9.media.py.
MEDIA_TEXT_VERSION = 1
_BRIEF_SUMMARY_CHARS = 3000
_NARRATOR = re.compile(r"^narrat", re.I)
# Honest words for what the video is, whatever the story: it is narrated, with a voice per role.
FORMAT_TAGS = ("audio drama", "audio story", "narrated story", "storytelling", "full cast audiobook")


def character_names(story: Story, limit: int = 8) -> list[str]:
    """Readable names of the story's people, narrator left out, in order of appearance."""
    from common.offline.cards import display_name

    names = [display_name(tag) for tag in story.characters() if not _NARRATOR.match(tag)]
    return list(dict.fromkeys(n for n in names if n))[:limit]


def place_names(story: Story, limit: int = 4) -> list[str]:
    """Short names of the story's places: its most named proper place, then its locations."""
    places = [p for p in [proper_phrase(story)] if p]
    # Location phrases are descriptions ("Weathered stone lighthouse"), not names: lower-case them.
    places += [p[:1].lower() + p[1:] for p in (location_phrase(d, 4) for d in story.locations().values()) if p]
    return list(dict.fromkeys(places))[:limit]


def story_brief(story: Story, title: str, summary: str) -> str:
    """What the LLM is told about the story: small enough for any context window."""
    lines = [f"TITLE: {title}"]
    if names := character_names(story):
        lines.append("CHARACTERS: " + ", ".join(names))
    if places := place_names(story):
        lines.append("PLACES: " + ", ".join(places))
    lines.append("SUMMARY:\n" + shorten(" ".join(summary.split()), _BRIEF_SUMMARY_CHARS))
    return "\n".join(lines)


def _no_angles(value: Any) -> None:
    texts = value if isinstance(value, list) else [value]
    if any("<" in str(t) or ">" in str(t) for t in texts):
        raise ValueError("do not use the characters < or > anywhere")


HOOK_SCHEMA = {
    "type": "object",
    "properties": {
        "hook": {"type": "string", "minLength": 20, "maxLength": 300},
        "bullets": {"type": "array", "minItems": 3, "maxItems": 5,
                    "items": {"type": "string", "minLength": 3, "maxLength": 110}},
    },
    "required": ["hook", "bullets"],
    "additionalProperties": False,
}
TAGS_SCHEMA = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "minItems": 5, "maxItems": 25,
                 "items": {"type": "string", "minLength": 2, "maxLength": MAX_TAG_CHARS}},
    },
    "required": ["tags"],
    "additionalProperties": False,
}
THUMBNAIL_SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "minLength": 150, "maxLength": 1800}},
    "required": ["prompt"],
    "additionalProperties": False,
}


@dataclass
class LLMMediaText(LLMText):
    def description_hook(self, story: Story, title: str, summary: str) -> tuple[str, list[str]]:
        """A one- or two-sentence hook and three to five bullets for the video description."""
        def check(answer: dict[str, Any]) -> None:
            _no_angles([answer["hook"], *answer["bullets"]])

        answer = self.client.complete_json(
            "Write the top of a YouTube description for a narrated story video.\n"
            "- hook: one or two sentences that make a viewer want to listen; no spoilers of the ending.\n"
            "- bullets: three to five short lines (under 100 characters each) on what the listener gets: "
            "the characters, the setting, the mood.\n"
            "No hashtags, no emojis, no links.\n\n" + story_brief(story, title, summary),
            HOOK_SCHEMA, system="You write YouTube descriptions for story videos. Answer in JSON.",
            name="description_hook", validate=check,
        )
        return " ".join(answer["hook"].split()), [" ".join(b.split()) for b in answer["bullets"]]

    def tags(self, story: Story, title: str, summary: str) -> list[str]:
        """Candidate tags, most specific first; common.publish.metadata.fit_tags cleans and fits them."""
        def check(answer: dict[str, Any]) -> None:
            _no_angles(answer["tags"])
            usable = [t for t in answer["tags"] if clean_tag(t)]
            if len(usable) < 3:
                raise ValueError(f"give at least 5 tags of 2 to {MAX_TAG_CHARS} characters each")

        answer = self.client.complete_json(
            "Give YouTube search tags for this narrated story video: the most specific first (character "
            f"names, places, the story's title), then its genre and mood. Each tag at most {MAX_TAG_CHARS} "
            "characters, no hashtags, no commas inside a tag, no quotes.\n\n" + story_brief(story, title, summary),
            TAGS_SCHEMA, system="You choose YouTube tags. Answer in JSON.", name="tags", validate=check,
        )
        return [str(t) for t in answer["tags"]]

    def thumbnail_prompt(self, story: Story, title: str, summary: str) -> str:
        """One paragraph describing the thumbnail picture for the image model (no text in it)."""
        def check(answer: dict[str, Any]) -> None:
            _no_angles(answer["prompt"])
            if "\n\n" in answer["prompt"].strip():
                raise ValueError("write the prompt as one paragraph")

        answer = self.client.complete_json(
            "Describe ONE picture for this story video's thumbnail, for an image model: 80 to 200 words, "
            "one paragraph, present tense. Say what is in the foreground and the background, how the main "
            "characters look and what they do, the setting, the light and the mood, with one clear focal "
            "point. Do not ask for any text, title, letters or logo in the picture.\n\n"
            + story_brief(story, title, summary),
            THUMBNAIL_SCHEMA, system="You write prompts for an image generation model. Answer in JSON.",
            name="thumbnail_prompt", validate=check,
        )
        return " ".join(answer["prompt"].split())


@dataclass
class OfflineMediaText(OfflineText):
    def description_hook(self, story: Story, title: str, summary: str) -> tuple[str, list[str]]:
        """The summary's opening as the hook; who, where and how it is told as bullets."""
        # The summary's sentences come from separate passages: a second one is added only when the
        # first is too short to hook anyone, since it may not follow on from it.
        hook = first_sentences(summary, 1, 300) if summary.strip() else gist(story.utterances)
        if summary.strip() and len(hook.split()) < 12:
            hook = first_sentences(summary, 2, 300)
        bullets = []
        if names := character_names(story, 5):
            bullets.append("With " + _and(names))
        if places := place_names(story, 3):
            bullets.append("Set in " + _and(places))
        voices = len(story.speakers())
        bullets.append(f"Told by {voices} voices" if voices > 1 else "A narrated story")
        return hook, bullets

    def tags(self, story: Story, title: str, summary: str) -> list[str]:
        """Title, places and people of the story first, then what kind of video it is."""
        return [title, *place_names(story), *character_names(story), *FORMAT_TAGS]

    def thumbnail_prompt(self, story: Story, title: str, summary: str) -> str:
        """A picture prompt from the first scene that names a place: its setting, its people, the story's opening."""
        from common.offline.cards import display_name

        parts = []
        scene = next((s for s in story.scenes() if s.location_id), None)
        if scene is not None:
            place = story.locations().get(scene.location_id or "") or scene.location_description
            if place:
                parts.append(f"Setting: {place}")
            if scene.setting_text:
                parts.append(scene.setting_text)
            people = [f"{display_name(c.tag)} ({c.text})" if c.text else display_name(c.tag)
                      for c in scene.characters if not _NARRATOR.match(c.tag)]
            if people:
                parts.append("In the foreground: " + "; ".join(people))
        else:
            if places := place_names(story, 2):
                parts.append("Setting: " + _and(places))
            if names := character_names(story, 3):
                parts.append("In the foreground: " + _and(names))
        if summary.strip():
            parts.append(first_sentences(summary, 1, 240))
        parts.append("Cinematic key art with one clear focal point, dramatic light, rich colour, no text or lettering")
        return shorten(f"Key art for the story \"{title}\". " + ". ".join(p.rstrip(". ") for p in parts) + ".", 1500)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
