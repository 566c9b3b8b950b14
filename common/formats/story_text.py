"""The story's own text questions for gen.audio's 1.character.py: a sentence summarising a run of
utterances, a title, a chapter's title and short summary; one item at a time, so every answer is
checkpointed. The offline engine invents nothing: it quotes and arranges the story.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from common.engines.text import LLMText, OfflineText
from common.formats.sections import Section, first_sentence
from common.formats.story import Story, Utterance

MAX_TITLE_CHARS = 100
# What sizes a chapter question (common.formats.sections), told when it overflows the model's context.
CHAPTER_SIZE = ("split the story into more parts (the N of scene_N.M: one chapter each; a story without parts "
                "has five)")


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


def _passage(utterances: Sequence[Utterance]) -> str:
    return "\n".join(f"{u.speaker}: {u.text}" for u in utterances)


@dataclass
class LLMStoryText(LLMText):
    def summarize(self, utterances: Sequence[Utterance]) -> str:
        return self.client.complete_text(
            "Summarise what happens in this passage of a story in ONE plain sentence of at most "
            f"25 words, in the past tense, naming the people involved.\n\nPASSAGE:\n{_passage(utterances)}",
            system="You write short, factual story summaries. Answer with the sentence only.",
            validate=lambda text: _check_sentence(text, 45), max_tokens=120,
        ).strip()

    def title(self, story: Story, summary: str) -> str:
        def check(text: str) -> None:
            title = clean_title(text)
            if not title or len(title.split()) > 12:
                raise ValueError("answer with a title of at most 10 words and nothing else")

        answer = self.client.complete_text(
            "Write a title for a narrated story video, at most 8 words, evocative and specific to "
            f"this story. Answer with the title only.\n\nSUMMARY:\n{summary}",
            system="You name stories. Answer with the title only, no quotes.",
            validate=check, max_tokens=60,
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
        answer = self.client.complete_json(
            "This is one chapter of a narrated story. Give it a short chapter title (2-6 words) and a "
            f"summary of two or three short sentences.\n\nCHAPTER {section.index}:\n{_passage(section.utterances)}",
            schema,
            system="You title and summarise story chapters. Answer in JSON.",
            name="chapter", shrink=[CHAPTER_SIZE],
        )
        return clean_title(answer["title"]), " ".join(answer["summary"].split())


_PROPER = re.compile(r"\b(?:[A-Z][a-z'’]+)(?:\s+(?:of\s+|the\s+)?[A-Z][a-z'’]+)*")


def proper_phrase(story: Story) -> str | None:
    """The story's most prominent proper name that is not a speaker (a place, usually)."""
    names = {part.lower() for tag in story.speakers() for part in tag.split("_")}
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


def location_phrase(description: str | None, max_words: int = 6) -> str | None:
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


def gist(utterances: Sequence[Utterance], min_words: int = 12, max_sentences: int = 2) -> str:
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
class OfflineStoryText(OfflineText):
    def summarize(self, utterances: Sequence[Utterance]) -> str:
        return gist(utterances, min_words=10, max_sentences=1)

    def title(self, story: Story, summary: str) -> str:
        phrase = proper_phrase(story)
        if phrase is None:
            locations = story.locations()
            phrase = location_phrase(next(iter(locations.values()), None)) if locations else None
        if phrase is None:
            phrase = " ".join(first_sentence(story.utterances[0].text, 8).split()[:8])
        return clean_title(phrase)

    def chapter(self, story: Story, section: Section) -> tuple[str, str]:
        title = None
        scene = next((u.scene for u in section.utterances if u.scene is not None), None)
        if scene is not None:
            # A bare {{loc_k}} was described at its first mention, possibly in an earlier part.
            title = location_phrase(scene.location_description or story.locations().get(scene.location_id))
        title = title or (f"Part {section.part}" if section.part is not None else f"Chapter {section.index}")
        return clean_title(title), gist(section.utterances)
