"""gen.image 1.story.py's questions: how each character and location looks, and scene lines.

The questions and the checks of their answers are common.pictures.questions'. The offline
engine only rearranges what the markup says: a character nobody described gets a description
built from their tag and the expressions, poses and actions their scenes give them; a location
gets its first description.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from common.engines.text import LLMText, OfflineText
from common.pictures import questions as vq
from common.pictures.story_visuals import (
    HEX_COLOUR, CharacterBrief, LocationBrief, SceneRequest, clean_value, format_attributes, offline_scene_line,
)

OFFLINE_VERSION = 2
SCENE_LINE_TOKENS = 300  # one scene line: a place, and a few characters with what they do


def _prose_tokens(words: tuple[int, int]) -> int:
    """The budget of a paragraph of at most words[1] words: two tokens a word, and some slack."""
    return int(words[1]) * 2 + 64


@dataclass
class LLMLooksText(LLMText):
    def visuals_identity(self) -> dict[str, object]:
        """What besides identity() decides the description answers."""
        return {"visual_prompts": vq.PROMPT_VERSION}

    def _attributes(self, name: str, question: Callable, read: Callable, brief: Any) -> str:
        prompt, system, schema = question(brief)
        answer = self.client.complete_json(prompt, schema, system=system, name=name, temperature=0.8,
                                           validate=lambda value: read(value, brief))
        return read(answer, brief)

    def character_attributes(self, brief: CharacterBrief) -> str:
        """One 2.character.txt entry: `Face: (...), Clothing: (...), Accessories: [...]` style attributes."""
        return self._attributes("character", vq.character_question, vq.read_character_answer, brief)

    def character_prose(self, brief: CharacterBrief, attributes: str, *, words: tuple[int, int]) -> str:
        prompt, system = vq.prose_question(f"the character {brief.display_name.rstrip(',')}", attributes, words)
        answer = self.client.complete_text(prompt, system=system, validate=lambda text: vq.check_prose(text, words),
                                           max_tokens=_prose_tokens(words))
        return vq.clean_prose(answer)

    def location_attributes(self, brief: LocationBrief) -> str:
        """One 2.location.txt entry: `Place: (...), Ground: (...), Objects: [...]`, colours as hex where known."""
        return self._attributes("location", vq.location_question, vq.read_location_answer, brief)

    def location_prose(self, brief: LocationBrief, attributes: str, *, words: tuple[int, int]) -> str:
        """One 3.location.txt paragraph from the attributes, keeping the story's hex colours."""
        prompt, system = vq.prose_question(f"the location {brief.location_id}", attributes, words)
        answer = self.client.complete_text(
            prompt, system=system, validate=lambda text: vq.check_prose(text, words, brief.colours),
            max_tokens=_prose_tokens(words))
        return vq.clean_prose(answer)

    def scene_line(self, request: SceneRequest, *, check: bool = True) -> str:
        """`(scene_X.Y) {{loc_k...}}, {...}; ((tag)){...};` for one utterance; `check=False`
        (--bypass-validation) skips the checks of its names (known locations, the story's characters)
        but never the format: an answer that does not parse ("Sure! Here is...") is asked again,
        since a line 3.scene.py cannot read would fail every night (issue 13)."""
        def validate(text: str) -> None:
            line = vq.scene_text(text, request.scene_id)
            if check:
                vq.check_scene_line(line, request)
            elif line == f"({request.scene_id})":
                raise ValueError("the answer holds no scene line")
            else:
                vq.parse_scene_answer(line)

        prompt, system = vq.scene_question(request)
        answer = self.client.complete_text(prompt, system=system, validate=validate, max_tokens=SCENE_LINE_TOKENS)
        return vq.scene_text(answer, request.scene_id)


def _series(values: Sequence[str]) -> str:
    values = [v.lower() for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def _clauses(description: str) -> list[str]:
    text = HEX_COLOUR.sub("", description)
    text = re.sub(r"\b(colou?rs?)\b\s*$", "", text.strip(), flags=re.I)
    return [c for c in (" ".join(p.split()) for p in text.split(",")) if c and not re.fullmatch(r"colou?rs?", c, re.I)]


@dataclass
class OfflineLooksText(OfflineText):
    """The markup's own facts; prose as long as the facts allow (padding to `words` would mean inventing)."""

    def visuals_identity(self) -> dict[str, object]:
        return {"visual_wording": OFFLINE_VERSION}

    def character_attributes(self, brief: CharacterBrief) -> str:
        """`Identity: (Name: Watson, Role: doctor, Gender: male), Expressions: [...], Poses: [...], Actions: [...]`."""
        called = {"name": brief.name, "role": brief.role} if brief.name else {"called": brief.display_name}
        return format_attributes({
            "identity": {**called, "gender": brief.gender_word}, "expressions": list(brief.most("expression")),
            "poses": list(brief.most("pose")), "actions": list(brief.most("action")),
        })

    def character_prose(self, brief: CharacterBrief, attributes: str, *, words: tuple[int, int]) -> str:
        who = brief.display_name
        noun = {"m": "man", "f": "woman"}.get(brief.gender or "", "character")
        subject = {"m": "He", "f": "She"}.get(brief.gender or "", "They")
        verb = "is" if subject != "They" else "are"
        sentences = [f"{who} is a {noun} in this story."]
        poses, actions, looks = brief.most("pose"), brief.most("action"), brief.most("expression")
        if poses:
            sentences.append(f"In the scenes {subject.lower()} {verb} mostly {_series(poses)}.")
        if actions:
            sentences.append(f"{subject} can be seen {_series(actions)}.")
        if looks:
            sentences.append(f"{subject} {'looks' if verb == 'is' else 'look'} {_series(looks)}.")
        if not brief.appearances:
            sentences.append(f"{subject} {verb} heard in {len(brief.lines)} line(s) of the story.")
        return " ".join(sentences)

    def location_attributes(self, brief: LocationBrief) -> str:
        """`Place: (Description: ...), Details: [...], Colors: [#...], Seen: [...]` from the first description."""
        clauses = _clauses(brief.description or "")
        place = {"description": clauses[0]} if clauses and clean_value(clauses[0]) else {"id": brief.location_id}
        return format_attributes({"place": place, "details": clauses[1:], "colors": list(brief.colours),
                                  "seen": list(brief.settings)})

    def location_prose(self, brief: LocationBrief, attributes: str, *, words: tuple[int, int]) -> str:
        """A place never described says what is known of it."""
        if brief.description:
            text = " ".join(brief.description.split())
            text = text[:1].upper() + text[1:]
            return text if text.endswith((".", "!", "?")) else text + "."
        sentences = [f"A place of the story ({brief.location_id})."]
        if brief.settings:
            sentences.append(f"Seen at: {_series(brief.settings)}.")
        if brief.characters:
            sentences.append(f"Characters seen here: {', '.join(t.replace('_', ' ') for t in brief.characters)}.")
        return " ".join(sentences)

    def scene_line(self, request: SceneRequest, *, check: bool = True) -> str:
        return offline_scene_line(request)
