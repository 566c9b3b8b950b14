"""The asset library's questions: how each character, place and object looks, and the style bible.

The LLM answers each as JSON against a schema (bounded strings and lists, so every question's
token budget follows from its schema); the answers are checked and a bad one is asked again with
the reason (common.services.llm). The offline engine only rearranges the story's own facts
(common.pictures.asset_facts): a character is their name, gender and role, a place its first
description with the scene lines' own time and weather words, an object the story's phrase for it.
Either way the answer is plain data that common.pictures.assets merges into input/assets.json.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from common.engines.text import LLMText, OfflineText
from common.offline.cards import palette_from_text
from common.pictures.asset_facts import CharacterFacts, LocationFacts, ObjectFacts, StyleFacts
from common.pictures.story_visuals import HEX_COLOUR

PROMPT_VERSION = 1
OFFLINE_VERSION = 1
DEFAULT_LENS = "a 35 mm lens at eye level: wide shots for places, medium shots for people"


def _string(description: str, longest: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": longest, "description": description}


def _object(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties), "required": list(properties), "additionalProperties": False}


def _words(text: Any, most: int, what: str) -> str:
    if not isinstance(text, str) or not text.split():
        raise ValueError(f"{what} is empty; write it")
    count = len(text.split())
    if count > most:
        raise ValueError(f"{what} has {count} words; use at most {most}")
    return " ".join(text.split())


def _series(values: Any) -> str:
    values = [str(v).lower() for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


# ---------------------------------------------------------------- LLM

IDENTITY_SYSTEM = (
    "You keep a character the same in every picture of an illustrated story video. From a character's "
    "design you write their identity: the visible features an illustrator must never change (face, hair, "
    "build, age, clothes, colours), as one sentence of short phrases. No names, no personality, no story events."
)
LOCATION_SYSTEM = (
    "You describe the places of an illustrated story video as background plates: the empty place, no people, "
    "and how its light looks at each time of day the story shows it."
)
STYLE_SYSTEM = (
    "You are the art director of an illustrated story video. You write its style bible: one art style, a colour "
    "palette of hex codes, one lens and framing habit, one lighting approach and one mood, so every picture looks "
    "like part of the same film."
)
OBJECT_SYSTEM = (
    "You keep the props of an illustrated story video the same in every picture: you describe one object's "
    "visible look (shape, material, colour, size) as one short phrase."
)


@dataclass
class LLMAssetsText(LLMText):
    def assets_identity(self) -> dict[str, object]:
        """What besides identity() decides the library's answers."""
        return {"asset_prompts": PROMPT_VERSION}

    def _ask(self, name: str, prompt: str, system: str, schema: dict[str, Any],
             read: Callable[[Any], Any]) -> Any:
        answer = self.client.complete_json(prompt, schema, system=system, name=name, temperature=0.4,
                                           validate=lambda value: read(value))
        return read(answer)

    def character_identity(self, facts: CharacterFacts) -> str:
        brief = facts.brief
        looks = "; ".join(facts.expressions[:6]) or "(none given)"
        prompt = (f"Write the identity of the character [{brief.tag}] ({brief.display_name.rstrip(',')}"
                  f"{', ' + brief.gender_word if brief.gender_word else ''}).\n\n"
                  f"THEIR DESIGN: {facts.attributes or '(not designed yet: keep to what the story implies)'}\n"
                  f"EXPRESSIONS IN THE STORY: {looks}\n"
                  + (f"STORY SUMMARY: {brief.summary}\n" if brief.summary else "")
                  + "\nAnswer with the identity in at most 60 words.")
        schema = _object({"identity": _string("visible features that never change, one sentence", 480)})
        return self._ask("character_identity", prompt, IDENTITY_SYSTEM, schema,
                         lambda v: _words(v.get("identity") if isinstance(v, dict) else None, 60, "identity"))

    def location_look(self, facts: LocationFacts) -> dict[str, Any]:
        brief = facts.brief
        times = [t for t in facts.times]
        seen = "\n".join(f"- {t}: {'; '.join(facts.settings.get(t, ())) or t}" for t in times) or "- (no time given)"
        prompt = (f"Describe the location {brief.location_id} of the story as a background plate.\n\n"
                  f"THE STORY SAYS: {brief.description or '(never described)'}\n"
                  f"ITS DESIGN: {facts.attributes or '(none)'}\n"
                  f"THE STORY SHOWS IT AT:\n{seen}\n"
                  + (f"Keep these colours of the story: {', '.join(brief.colours)}.\n" if brief.colours else "")
                  + "\nGive a short name, the empty place in at most 60 words, and for each time of day above "
                    "how its light looks then in at most 20 words.")
        times_schema = _object({t: _string(f"the light at {t}", 160) for t in times})
        schema = _object({"name": _string("a short name for the place", 60),
                          "description": _string("the empty place, no people", 480), "lighting": times_schema})

        def read(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise ValueError("the answer must be an object with name, description and lighting")
            given = value.get("lighting") if isinstance(value.get("lighting"), dict) else {}
            lighting = {t: _words(given.get(t), 20, f"the lighting at {t}") for t in times}
            description = _words(value.get("description"), 60, "description")
            lost = [c for c in brief.colours if c not in description.lower()]
            if lost:
                raise ValueError(f"keep the story's colours {', '.join(lost)} in the description")
            return {"name": _words(value.get("name"), 12, "name"), "description": description, "lighting": lighting}

        return self._ask("location_look", prompt, LOCATION_SYSTEM, schema, read)

    def style_bible(self, facts: StyleFacts) -> dict[str, Any]:
        prompt = (f"Write the style bible of this story's video. Its art style is {facts.art_style}.\n\n"
                  + (f"STORY SUMMARY: {facts.summary}\n" if facts.summary else "")
                  + (f"THE STORY'S OWN COLOURS: {', '.join(facts.colours)} (use them)\n" if facts.colours else "")
                  + (f"TIMES OF DAY: {', '.join(facts.times)}\n" if facts.times else "")
                  + (f"WEATHER AND LIGHT IN THE SCENES: {'; '.join(facts.weather)}\n" if facts.weather else "")
                  + "\nGive 3 to 6 palette colours as #rrggbb, and lens, lighting and mood in at most 20 words each.")
        schema = _object({"palette": {"type": "array", "minItems": 3, "maxItems": 6, "items": _string("#rrggbb", 7)},
                          "lens": _string("lens and framing", 160), "lighting": _string("lighting approach", 160),
                          "mood": _string("mood", 160)})

        def read(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise ValueError("the answer must be an object with palette, lens, lighting and mood")
            palette = [str(c).lower() for c in value.get("palette") or []]
            bad = [c for c in palette if not re.fullmatch(r"#[0-9a-f]{6}", c)]
            if bad or not 3 <= len(palette) <= 6:
                raise ValueError(f"the palette needs 3 to 6 colours written #rrggbb{f' ({bad[0]} is not)' if bad else ''}")
            return {"art_style": facts.art_style, "palette": palette,
                    **{k: _words(value.get(k), 20, k) for k in ("lens", "lighting", "mood")}}

        return self._ask("style_bible", prompt, STYLE_SYSTEM, schema, read)

    def object_look(self, facts: ObjectFacts) -> str:
        seen = "\n".join(f"- {p}" for p in facts.phrases[:8]) or "- (named in the scene lines)"
        prompt = (f"Describe the recurring object [[{facts.name}]] of the story.\n\nTHE STORY SHOWS IT:\n{seen}\n"
                  "\nAnswer with its visible look in at most 20 words.")
        schema = _object({"description": _string("its visible look", 160)})
        return self._ask("object_look", prompt, OBJECT_SYSTEM, schema,
                         lambda v: _words(v.get("description") if isinstance(v, dict) else None, 20, "description"))


# ---------------------------------------------------------------- offline

@dataclass
class OfflineAssetsText(OfflineText):
    """The story's own facts, rearranged; never invented (the lens, which no story states, is a fixed default)."""

    def assets_identity(self) -> dict[str, object]:
        return {"asset_wording": OFFLINE_VERSION}

    def character_identity(self, facts: CharacterFacts) -> str:
        brief = facts.brief
        noun = {"m": "man", "f": "woman"}.get(brief.gender or "", "character")
        text = brief.display_name.rstrip(",")
        if brief.name and brief.role and brief.role not in text.lower():
            text += f", the {brief.role}"
        text += f", a {noun} of this story"
        if facts.objects:
            text += f", seen with the {_series(facts.objects)}"
        return text + "."

    def location_look(self, facts: LocationFacts) -> dict[str, Any]:
        brief = facts.brief
        description = " ".join((brief.description or f"a place of the story ({brief.location_id})").split())
        name = re.split(r"[,.;]", HEX_COLOUR.sub("", description))[0].strip() or brief.location_id
        lighting = {t: "; ".join(facts.settings.get(t, ())) or t for t in facts.times}
        return {"name": " ".join(name.split()[:8]), "description": description, "lighting": lighting}

    def style_bible(self, facts: StyleFacts) -> dict[str, Any]:
        palette = list(facts.colours) or ["#%02x%02x%02x" % c for c in palette_from_text(facts.summary or facts.art_style, 4)[:4]]
        lighting = (f"the natural light of each scene's time of day ({', '.join(facts.times)})" if facts.times
                    else "natural light") + (f"; {', '.join(facts.weather)} as the scenes say" if facts.weather else "")
        return {"art_style": facts.art_style, "palette": palette, "lens": DEFAULT_LENS, "lighting": lighting,
                "mood": ", ".join(facts.weather[:2]) or "as each scene says"}

    def object_look(self, facts: ObjectFacts) -> str:
        phrase = facts.noun_phrase
        return f"the {phrase}" if phrase == facts.name or not facts.phrases else f"a {phrase}"
