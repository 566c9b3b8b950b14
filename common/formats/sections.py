"""How a story divides into chapters and summary chunks, shared by the LLM and offline text engines.

Chapters follow the story's parts (the `N` of `scene_N.M`) when it has at least two; a story
without parts is cut into equal shares at utterance boundaries. Each chapter ends at a
percentage of the story's text, the `NN%` of 12.chapters.txt.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from common.formats.story import Story, Utterance

DEFAULT_CHAPTERS = 5


@dataclass(frozen=True)
class Section:
    index: int  # 1-based
    utterances: tuple[Utterance, ...]
    end_percent: int
    part: int | None

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances)


def _with_percents(groups: Sequence[tuple[int | None, Sequence[Utterance]]]) -> list[Section]:
    total = sum(len(u.text) for _, group in groups for u in group) or 1
    sections: list[Section] = []
    running = 0
    for index, (part, group) in enumerate(groups, start=1):
        running += sum(len(u.text) for u in group)
        percent = 100 if index == len(groups) else max(1, min(99, round(100 * running / total)))
        if sections and percent <= sections[-1].end_percent:
            percent = min(100, sections[-1].end_percent + 1)
        sections.append(Section(index, tuple(group), percent, part))
    return sections


def chapter_sections(story: Story, wanted: int = DEFAULT_CHAPTERS) -> list[Section]:
    """One section per story part, or `wanted` equal shares of the text when there are no parts."""
    utterances = list(story.utterances)
    parts = [u.scene.part if u.scene else None for u in utterances]
    known = sorted({p for p in parts if p is not None})
    if len(known) >= 2:
        groups: list[tuple[int | None, list[Utterance]]] = []
        current: int | None = None
        for utterance, part in zip(utterances, parts):
            if part is not None and part != current:
                current = part
                groups.append((part, []))
            if not groups:
                groups.append((part, []))
            groups[-1][1].append(utterance)
        return _with_percents(groups)
    count = max(1, min(wanted, len(utterances)))
    return _with_percents([(None, share) for share in split_evenly(utterances, count)])


def split_evenly(utterances: Sequence[Utterance], count: int) -> list[list[Utterance]]:
    """`count` runs of consecutive utterances with about equal amounts of text."""
    total = sum(len(u.text) for u in utterances) or 1
    runs: list[list[Utterance]] = [[] for _ in range(count)]
    running = 0
    for utterance in utterances:
        slot = min(count - 1, int(count * running / total))
        # Never leave a later run empty when utterances remain for it.
        runs[slot].append(utterance)
        running += len(utterance.text)
    return [run for run in runs if run]


def summary_chunks(story: Story, per_chunk: int) -> list[list[Utterance]]:
    """Consecutive groups of `per_chunk` utterances: one summary sentence each."""
    items = list(story.utterances)
    return [items[i : i + per_chunk] for i in range(0, len(items), per_chunk)]


_SENTENCE = re.compile(r"(?<=[.!?])[\"'”’)]*\s+")


def first_sentence(text: str, max_words: int = 30) -> str:
    """The first sentence of `text`, cut at `max_words` words with an ellipsis."""
    sentence = _SENTENCE.split(text.strip(), maxsplit=1)[0].strip().strip('"“”')
    words = sentence.split()
    if len(words) > max_words:
        sentence = " ".join(words[:max_words]).rstrip(",;:") + "..."
    return sentence
