"""Text engines: the LLM (any OpenAI-compatible server) and the offline engine (the story's own words).

Both answer the same small questions, one item at a time, so the calling script can
checkpoint every answer: a sentence summarising a run of utterances, a title, a chapter's
title and short summary. The offline engine invents nothing: it quotes and arranges the story.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

from common.formats.story import Story, Utterance
from common.formats.sections import Section, first_sentence

if TYPE_CHECKING:  # sound-effect types (5.timeline.py, 6.timing.py)
    from common.audio.sfx_plan import EffectSlot, EffectTiming, SfxSegment
if TYPE_CHECKING:  # motion prompts (gen.video 2.motion.py)
    from pathlib import Path

    from common.video.motion import MotionBrief
if TYPE_CHECKING:  # gen.image 1.story.py: descriptions and scene lines
    from common.pictures.story_visuals import CharacterBrief, LocationBrief, SceneRequest

MAX_TITLE_CHARS = 100


class TextEngine(Protocol):
    name: str
    preview: bool

    def identity(self) -> dict[str, object]: ...

    def summarize(self, utterances: Sequence[Utterance]) -> str: ...

    def title(self, story: Story, summary: str) -> str: ...

    def chapter(self, story: Story, section: Section) -> tuple[str, str]: ...

    # --- 9.media.py (YouTube metadata); both engines delegate to common.publish.media_text ---
    def description_hook(self, story: Story, title: str, summary: str) -> tuple[str, list[str]]:
        """A one- or two-sentence hook and three to five bullets for the video description."""
        ...

    def tags(self, story: Story, title: str, summary: str) -> list[str]:
        """Candidate tags, most specific first; common.publish.metadata.fit_tags cleans and fits them."""
        ...

    def thumbnail_prompt(self, story: Story, title: str, summary: str) -> str:
        """One paragraph describing the thumbnail picture for the image model (no text in it)."""
        ...

    # --- sound effects: 5.timeline.py and 6.timing.py; questions and checks in common.audio.sfx_plan ---
    def sfx_identity(self) -> dict[str, object]:
        """What besides identity() decides the sound answers (prompt version, offline vocabulary)."""
        ...

    def sound_effects(self, segments: Sequence["SfxSegment"], *, names: Sequence[str] = ()) -> list[str]:
        """One short sound description or "Silence" per transcript segment, in order."""
        ...

    def effect_timings(self, slots: Sequence["EffectSlot"], *, max_seconds: float) -> list["EffectTiming"]:
        """Each effect's start and length inside its segment, in order."""
        ...

    # --- gen.video 2.motion.py: motion prompts; questions, checks and offline wording in common.video.motion ---
    def motion_prompt(self, brief: "MotionBrief", image: "Path | None") -> str:
        """One or two sentences for an image-to-video model: what moves in the picture, how the camera moves."""
        ...

    # --- gen.image 1.story.py: looks of characters and locations, scene lines; questions in common.pictures.questions ---
    def visuals_identity(self) -> dict[str, object]:
        """What besides identity() decides the description answers (prompt version, offline wording)."""
        ...

    def character_attributes(self, brief: "CharacterBrief") -> str:
        """One 2.character.txt entry: `Face: (...), Clothing: (...), Accessories: [...]` style attributes."""
        ...

    def character_prose(self, brief: "CharacterBrief", attributes: str, *, words: tuple[int, int]) -> str:
        """One 3.character.txt paragraph of about `words` words from the attributes."""
        ...

    def location_attributes(self, brief: "LocationBrief") -> str:
        """One 2.location.txt entry: `Place: (...), Ground: (...), Objects: [...]`, colours as hex where known."""
        ...

    def location_prose(self, brief: "LocationBrief", attributes: str, *, words: tuple[int, int]) -> str:
        """One 3.location.txt paragraph from the attributes, keeping the story's hex colours."""
        ...

    def scene_line(self, request: "SceneRequest", *, check: bool = True) -> str:
        """`(scene_X.Y) {{loc_k...}}, {...}; ((tag)){...};` for one utterance; `check=False`
        (--bypass-validation) keeps the line as written, without the format check."""
        ...


def _check_sentence(text: str, max_words: int) -> None:
    words = text.split()
    if not words:
        raise ValueError("the answer is empty")
    if len(words) > max_words:
        raise ValueError(f"the answer has {len(words)} words; at most {max_words} are allowed")
    if "\n\n" in text.strip():
        raise ValueError("the answer must be one paragraph with no preamble or notes")


def clean_title(text: str) -> str:
    """A title YouTube accepts: one line, no angle brackets, no wrapping quotes, <= 100 chars."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"^(title\s*:\s*)", "", line, flags=re.I).strip().strip('"“”*#').strip()
    line = line.replace("<", "").replace(">", "")
    if len(line) > MAX_TITLE_CHARS:
        line = line[: MAX_TITLE_CHARS - 3].rsplit(" ", 1)[0] + "..."
    return line


@dataclass
class LLMTextEngine:
    """Text through an OpenAI-compatible server; answers validated, retried by the client."""

    client: "object"  # common.services.llm.LLMClient
    model: str
    name: str = "llm"
    preview: bool = False

    def identity(self) -> dict[str, object]:
        return {"engine": "llm", "model": self.model, "prompts": 1}

    def summarize(self, utterances: Sequence[Utterance]) -> str:
        passage = "\n".join(f"{u.speaker}: {u.text}" for u in utterances)
        return self.client.complete_text(  # type: ignore[attr-defined]
            "Summarise what happens in this passage of a story in ONE plain sentence of at most "
            f"25 words, in the past tense, naming the people involved.\n\nPASSAGE:\n{passage}",
            system="You write short, factual story summaries. Answer with the sentence only.",
            validate=lambda text: _check_sentence(text, 45),
        ).strip()

    def title(self, story: Story, summary: str) -> str:
        def check(text: str) -> None:
            title = clean_title(text)
            if not title or len(title.split()) > 12:
                raise ValueError("answer with a title of at most 10 words and nothing else")

        answer = self.client.complete_text(  # type: ignore[attr-defined]
            "Write a title for a narrated story video, at most 8 words, evocative and specific to "
            f"this story. Answer with the title only.\n\nSUMMARY:\n{summary}",
            system="You name stories. Answer with the title only, no quotes.",
            validate=check,
        )
        return clean_title(answer)

    def chapter(self, story: Story, section: Section) -> tuple[str, str]:
        schema = {
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 2, "maxLength": 60},
                "summary": {"type": "string", "minLength": 10, "maxLength": 400},
            },
            "required": ["title", "summary"],
            "additionalProperties": False,
        }
        passage = "\n".join(f"{u.speaker}: {u.text}" for u in section.utterances)
        answer = self.client.complete_json(  # type: ignore[attr-defined]
            "This is one chapter of a narrated story. Give it a short chapter title (2-6 words) and a "
            f"summary of two or three short sentences.\n\nCHAPTER {section.index}:\n{passage}",
            schema,
            system="You title and summarise story chapters. Answer in JSON.",
            name="chapter",
        )
        return clean_title(answer["title"]), " ".join(answer["summary"].split())

    # --- 9.media.py (YouTube metadata) ---
    def description_hook(self, story: Story, title: str, summary: str) -> tuple[str, list[str]]:
        from common.publish import media_text

        return media_text.llm_description_hook(self.client, story, title, summary)

    def tags(self, story: Story, title: str, summary: str) -> list[str]:
        from common.publish import media_text

        return media_text.llm_tags(self.client, story, title, summary)

    def thumbnail_prompt(self, story: Story, title: str, summary: str) -> str:
        from common.publish import media_text

        return media_text.llm_thumbnail_prompt(self.client, story, title, summary)

    # --- sound effects: 5.timeline.py and 6.timing.py ---
    def sfx_identity(self) -> dict[str, object]:
        from common.audio import sfx_plan

        return {"sfx_prompts": sfx_plan.PROMPT_VERSION}

    def sound_effects(self, segments: Sequence["SfxSegment"], *, names: Sequence[str] = ()) -> list[str]:
        from common.audio import sfx_plan

        prompt, system, schema = sfx_plan.sound_question(segments)
        answer = self.client.complete_json(  # type: ignore[attr-defined]
            prompt, schema, system=system, name="sound_effects",
            validate=lambda value: sfx_plan.read_sound_answer(value, segments, names),
        )
        return sfx_plan.read_sound_answer(answer, segments, names)

    def effect_timings(self, slots: Sequence["EffectSlot"], *, max_seconds: float) -> list["EffectTiming"]:
        from common.audio import sfx_plan

        prompt, system, schema = sfx_plan.timing_question(slots, max_seconds)
        answer = self.client.complete_json(  # type: ignore[attr-defined]
            prompt, schema, system=system, name="effect_timings",
            validate=lambda value: sfx_plan.read_timing_answer(value, slots, max_seconds),
        )
        return sfx_plan.read_timing_answer(answer, slots, max_seconds)

    # --- gen.video 2.motion.py ---
    def motion_prompt(self, brief: "MotionBrief", image: "Path | None") -> str:
        """The vision model looks at the scene's picture, told the scene line's action to ground it."""
        from common.video import motion
        from common.run.errors import InputError

        if image is None:
            raise InputError(f"{brief.scene_id} has no picture to describe; run gen.image's 3.scene.py first.")
        answer = self.client.describe_image(  # type: ignore[attr-defined]
            motion.motion_question(brief), image, system=motion.MOTION_SYSTEM,
            validate=lambda text: motion.check_motion(motion.clean_motion(text)),
        )
        return motion.motion_line(motion.clean_motion(answer))

    # --- gen.image 1.story.py ---
    def visuals_identity(self) -> dict[str, object]:
        from common.pictures import questions as visual_questions

        return {"visual_prompts": visual_questions.PROMPT_VERSION}

    def character_attributes(self, brief: "CharacterBrief") -> str:
        from common.pictures import questions as vq

        prompt, system, schema = vq.character_question(brief)
        answer = self.client.complete_json(  # type: ignore[attr-defined]
            prompt, schema, system=system, name="character", temperature=0.8,
            validate=lambda value: vq.read_character_answer(value, brief),
        )
        return vq.read_character_answer(answer, brief)

    def character_prose(self, brief: "CharacterBrief", attributes: str, *, words: tuple[int, int]) -> str:
        from common.pictures import questions as vq

        prompt, system = vq.prose_question(f"the character {brief.display_name.rstrip(',')}", attributes, words)
        answer = self.client.complete_text(  # type: ignore[attr-defined]
            prompt, system=system, validate=lambda text: vq.check_prose(text, words))
        return vq.clean_prose(answer)

    def location_attributes(self, brief: "LocationBrief") -> str:
        from common.pictures import questions as vq

        prompt, system, schema = vq.location_question(brief)
        answer = self.client.complete_json(  # type: ignore[attr-defined]
            prompt, schema, system=system, name="location", temperature=0.8,
            validate=lambda value: vq.read_location_answer(value, brief),
        )
        return vq.read_location_answer(answer, brief)

    def location_prose(self, brief: "LocationBrief", attributes: str, *, words: tuple[int, int]) -> str:
        from common.pictures import questions as vq

        prompt, system = vq.prose_question(f"the location {brief.location_id}", attributes, words)
        answer = self.client.complete_text(  # type: ignore[attr-defined]
            prompt, system=system, validate=lambda text: vq.check_prose(text, words, brief.colours))
        return vq.clean_prose(answer)

    def scene_line(self, request: "SceneRequest", *, check: bool = True) -> str:
        from common.pictures import questions as vq

        def validate(text: str) -> None:
            line = vq.scene_text(text, request.scene_id)
            if check:
                vq.check_scene_line(line, request)
            elif line == f"({request.scene_id})":
                raise ValueError("the answer holds no scene line")

        prompt, system = vq.scene_question(request)
        answer = self.client.complete_text(prompt, system=system, validate=validate)  # type: ignore[attr-defined]
        return vq.scene_text(answer, request.scene_id)


_PROPER = re.compile(r"\b(?:[A-Z][a-z'’]+)(?:\s+(?:of\s+|the\s+)?[A-Z][a-z'’]+)*")


def _name_words(story: Story) -> set[str]:
    words: set[str] = set()
    for tag in story.speakers():
        words.update(part.lower() for part in tag.split("_"))
    return words


def proper_phrase(story: Story) -> str | None:
    """The story's most prominent proper name that is not a speaker (a place, usually)."""
    names = _name_words(story)
    counts: Counter[str] = Counter()
    for utterance in story.utterances:
        for sentence in re.split(r"(?<=[.!?])\s+", utterance.text):
            # Skip the sentence's first word: it is capitalised whatever it is.
            body = sentence.split(" ", 1)[1] if " " in sentence else ""
            for match in _PROPER.finditer(body):
                phrase = match.group(0)
                if any(word.lower().strip("'’") in names for word in phrase.split()):
                    continue
                counts[phrase] += 1
    if not counts:
        return None
    return max(counts, key=lambda p: (counts[p] * len(p.split()), len(p.split()), p))


_TRAILING = {"a", "an", "the", "of", "on", "at", "in", "to", "with", "and", "by", "for", "from", "near", "its", "his", "her",
             "inside", "outside", "beside", "under", "over", "behind", "above", "below", "beneath", "across", "through"}


def _location_phrase(description: str | None, max_words: int = 6) -> str | None:
    """A short chapter-title phrase from a location description: its first clause, trimmed
    to `max_words` without ending on a dangling article or preposition."""
    if not description:
        return None
    clause = description.split(",")[0].strip()
    clause = re.sub(r"^(an?|the)\s+", "", clause, flags=re.I)
    words = clause.split()
    for cut, word in enumerate(words):
        if cut >= 2 and word.lower() in _TRAILING:
            words = words[:cut]  # "stone lighthouse on a rocky point" -> "stone lighthouse"
            break
    words = words[:max_words]
    while words and words[-1].lower() in _TRAILING:
        words.pop()
    if not words:
        return None
    phrase = " ".join(words)
    return phrase[:1].upper() + phrase[1:]


def _gist(utterances: Sequence[Utterance], min_words: int = 12, max_sentences: int = 2) -> str:
    """Opening sentences of a passage, skipping fragments, until it says something."""
    chosen: list[str] = []
    for utterance in utterances:
        sentence = first_sentence(utterance.text, 30)
        if len(sentence.split()) < 6:
            continue
        chosen.append(sentence)
        if len(chosen) >= max_sentences or sum(len(c.split()) for c in chosen) >= min_words:
            break
    return " ".join(chosen) or first_sentence(utterances[0].text, 30)


@dataclass
class OfflineTextEngine:
    """Model-free text from the story's own markup: quotes and arranges, never invents."""

    name: str = "offline"
    preview: bool = True

    def identity(self) -> dict[str, object]:
        return {"engine": "offline-text", "version": 4}

    def summarize(self, utterances: Sequence[Utterance]) -> str:
        return _gist(utterances, min_words=10, max_sentences=1)

    def title(self, story: Story, summary: str) -> str:
        phrase = proper_phrase(story)
        if phrase is None:
            locations = story.locations()
            phrase = _location_phrase(next(iter(locations.values()), None)) if locations else None
        if phrase is None:
            phrase = " ".join(first_sentence(story.utterances[0].text, 8).split()[:8])
        return clean_title(phrase)

    def chapter(self, story: Story, section: Section) -> tuple[str, str]:
        title = None
        scene = next((u.scene for u in section.utterances if u.scene is not None), None)
        if scene is not None:
            # A bare {{loc_k}} was described at its first mention, possibly in an earlier part.
            title = _location_phrase(scene.location_description or story.locations().get(scene.location_id))
        title = title or (f"Part {section.part}" if section.part is not None else f"Chapter {section.index}")
        return clean_title(title), _gist(section.utterances)

    # --- 9.media.py (YouTube metadata) ---
    def description_hook(self, story: Story, title: str, summary: str) -> tuple[str, list[str]]:
        from common.publish import media_text

        return media_text.offline_description_hook(story, title, summary)

    def tags(self, story: Story, title: str, summary: str) -> list[str]:
        from common.publish import media_text

        return media_text.offline_tags(story, title, summary)

    def thumbnail_prompt(self, story: Story, title: str, summary: str) -> str:
        from common.publish import media_text

        return media_text.offline_thumbnail_prompt(story, title, summary)

    # --- sound effects: 5.timeline.py and 6.timing.py ---
    def sfx_identity(self) -> dict[str, object]:
        from common.audio import sfx_plan
        from common.offline import sfx

        return {"sfx_vocabulary": sfx.VERSION, "sfx_rules": sfx_plan.RULES_VERSION}

    def sound_effects(self, segments: Sequence["SfxSegment"], *, names: Sequence[str] = ()) -> list[str]:
        """Only what the scene markup names and the offline sound engine can make; else Silence."""
        from common.audio import sfx_plan
        from common.offline import sfx

        return [sfx.describe(found) if (found := sfx.match_sounds(s.scene or "")) else sfx_plan.SILENCE
                for s in segments]

    def effect_timings(self, slots: Sequence["EffectSlot"], *, max_seconds: float) -> list["EffectTiming"]:
        from common.audio import sfx_plan

        return [sfx_plan.rule_timing(slot, max_seconds) for slot in slots]

    # --- gen.video 2.motion.py ---
    def motion_prompt(self, brief: "MotionBrief", image: "Path | None") -> str:
        """The scene line's poses and actions, and the camera move its place in the story suggests."""
        return brief.fallback

    # --- gen.image 1.story.py: the markup's own facts (common.pictures.story_visuals) ---
    def visuals_identity(self) -> dict[str, object]:
        from common.pictures import story_visuals

        return {"visual_wording": story_visuals.OFFLINE_VERSION}

    def character_attributes(self, brief: "CharacterBrief") -> str:
        from common.pictures import story_visuals

        return story_visuals.offline_character_attributes(brief)

    def character_prose(self, brief: "CharacterBrief", attributes: str, *, words: tuple[int, int]) -> str:
        """As long as the facts allow: padding to `words` would mean inventing."""
        from common.pictures import story_visuals

        return story_visuals.offline_character_prose(brief)

    def location_attributes(self, brief: "LocationBrief") -> str:
        from common.pictures import story_visuals

        return story_visuals.offline_location_attributes(brief)

    def location_prose(self, brief: "LocationBrief", attributes: str, *, words: tuple[int, int]) -> str:
        from common.pictures import story_visuals

        return story_visuals.offline_location_prose(brief)

    def scene_line(self, request: "SceneRequest", *, check: bool = True) -> str:
        from common.pictures import story_visuals

        return story_visuals.offline_scene_line(request)
