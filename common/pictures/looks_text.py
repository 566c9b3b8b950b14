"""gen.image 1.story.py's questions: how each character and location looks, and scene lines.

The questions and the checks of their answers are common.pictures.questions'; the offline
engine's wording is the story's own markup (common.pictures.story_visuals).
"""
from __future__ import annotations

from dataclasses import dataclass

from common.engines.text import LLMText, OfflineText
from common.pictures import questions as vq
from common.pictures import story_visuals
from common.pictures.story_visuals import CharacterBrief, LocationBrief, SceneRequest


@dataclass
class LLMLooksText(LLMText):
    def visuals_identity(self) -> dict[str, object]:
        """What besides identity() decides the description answers."""
        return {"visual_prompts": vq.PROMPT_VERSION}

    def character_attributes(self, brief: CharacterBrief) -> str:
        """One 2.character.txt entry: `Face: (...), Clothing: (...), Accessories: [...]` style attributes."""
        prompt, system, schema = vq.character_question(brief)
        answer = self.client.complete_json(
            prompt, schema, system=system, name="character", temperature=0.8,
            validate=lambda value: vq.read_character_answer(value, brief),
        )
        return vq.read_character_answer(answer, brief)

    def character_prose(self, brief: CharacterBrief, attributes: str, *, words: tuple[int, int]) -> str:
        prompt, system = vq.prose_question(f"the character {brief.display_name.rstrip(',')}", attributes, words)
        answer = self.client.complete_text(prompt, system=system, validate=lambda text: vq.check_prose(text, words))
        return vq.clean_prose(answer)

    def location_attributes(self, brief: LocationBrief) -> str:
        """One 2.location.txt entry: `Place: (...), Ground: (...), Objects: [...]`, colours as hex where known."""
        prompt, system, schema = vq.location_question(brief)
        answer = self.client.complete_json(
            prompt, schema, system=system, name="location", temperature=0.8,
            validate=lambda value: vq.read_location_answer(value, brief),
        )
        return vq.read_location_answer(answer, brief)

    def location_prose(self, brief: LocationBrief, attributes: str, *, words: tuple[int, int]) -> str:
        """One 3.location.txt paragraph from the attributes, keeping the story's hex colours."""
        prompt, system = vq.prose_question(f"the location {brief.location_id}", attributes, words)
        answer = self.client.complete_text(
            prompt, system=system, validate=lambda text: vq.check_prose(text, words, brief.colours))
        return vq.clean_prose(answer)

    def scene_line(self, request: SceneRequest, *, check: bool = True) -> str:
        """`(scene_X.Y) {{loc_k...}}, {...}; ((tag)){...};` for one utterance; `check=False`
        (--bypass-validation) keeps the line as written, without the format check."""
        def validate(text: str) -> None:
            line = vq.scene_text(text, request.scene_id)
            if check:
                vq.check_scene_line(line, request)
            elif line == f"({request.scene_id})":
                raise ValueError("the answer holds no scene line")

        prompt, system = vq.scene_question(request)
        answer = self.client.complete_text(prompt, system=system, validate=validate)
        return vq.scene_text(answer, request.scene_id)


@dataclass
class OfflineLooksText(OfflineText):
    """The markup's own facts; prose as long as the facts allow (padding to `words` would mean inventing)."""

    def visuals_identity(self) -> dict[str, object]:
        return {"visual_wording": story_visuals.OFFLINE_VERSION}

    def character_attributes(self, brief: CharacterBrief) -> str:
        return story_visuals.offline_character_attributes(brief)

    def character_prose(self, brief: CharacterBrief, attributes: str, *, words: tuple[int, int]) -> str:
        return story_visuals.offline_character_prose(brief)

    def location_attributes(self, brief: LocationBrief) -> str:
        return story_visuals.offline_location_attributes(brief)

    def location_prose(self, brief: LocationBrief, attributes: str, *, words: tuple[int, int]) -> str:
        return story_visuals.offline_location_prose(brief)

    def scene_line(self, request: SceneRequest, *, check: bool = True) -> str:
        return story_visuals.offline_scene_line(request)
