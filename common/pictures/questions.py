"""The LLM's questions for gen.image's 1.story.py, and the checks its answers must pass.

Structured attributes are asked as JSON with a schema (LM Studio's strict json_schema) and
written in the seed's `Face: (Head Shape: oval, ...), Clothing: (Tops: (Type: ..., Color: ...))`
style; prose is one paragraph within a word range; a scene line must parse with the story
format's own parser and may only name known characters and known (or the next new)
locations. A check raises ValueError with the reason, which the LLM client sends back
with its retry.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from common.run.errors import InputError
from common.formats.story import Scene, parse_scene_line
from common.pictures.story_visuals import (
    CharacterBrief, LocationBrief, SceneRequest, clean_value, format_attributes,
)

PROMPT_VERSION = 1
MAX_VALUE_WORDS = 10
_SCENE_HEAD = re.compile(r"\s*\(\s*scene[^)]*\)\s*")


def _short(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": 40, "description": description}


def _object(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties), "required": list(properties), "additionalProperties": False}


def _item(*names: str) -> dict[str, Any]:
    return _object({name: _short(name.replace("_", " ")) for name in names})


# ---------------------------------------------------------------- formatting

def _check_values(value: Any, path: str = "") -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_values(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, f"{path}[{index}]")
    elif isinstance(value, str):
        words = clean_value(value).split()
        if not words:
            raise ValueError(f"{path} is empty; give a short value")
        if len(words) > MAX_VALUE_WORDS:
            raise ValueError(f"{path} has {len(words)} words; use at most {MAX_VALUE_WORDS} (a short value, not a sentence)")


# ---------------------------------------------------------------- characters

def character_schema(brief: CharacterBrief) -> dict[str, Any]:
    gender = [brief.gender_word] if brief.gender_word else ["male", "female"]
    face = {name: _short(name.replace("_", " ")) for name in (
        "head_shape", "skin_tone", "eyes_color", "hair_color", "hair_texture", "hair_style")}
    face["age"] = {"type": "string", "enum": ["child", "young", "adult", "middle_aged", "elderly"]}
    face["gender"] = {"type": "string", "enum": gender}
    face["body_type"] = _short("body type")
    face["facial_hair"] = _short("facial hair, or none")
    clothing = {part: _item("type", "color") for part in ("tops", "bottoms", "outerwear", "footwear")}
    return _object({
        "face": _object(face),
        "clothing": _object(clothing),
        "accessories": {"type": "array", "minItems": 0, "maxItems": 3, "items": _item("type", "location", "color")},
    })


CHARACTER_SYSTEM = (
    "You are a character designer for an illustrated story video. You decide how a character looks, "
    "consistently with the story's time and place, for an image model. Only visible features: "
    "no names, no personality, no story events. Every value is a short phrase of one to four words."
)


def _appearances(brief: CharacterBrief, limit: int = 8) -> str:
    rows = [f"- {a.setting + '; ' if a.setting else ''}{a.text}" for a in brief.appearances[:limit]]
    return "\n".join(rows) or "- (no scene lines)"


def character_question(brief: CharacterBrief) -> tuple[str, str, dict[str, Any]]:
    said = "\n".join(f'- "{line}"' for line in brief.lines) or "- (says nothing)"
    prompt = (
        f"Design the look of the character [{brief.tag}] ({brief.display_name.rstrip(',')}"
        f"{', ' + brief.gender_word if brief.gender_word else ''}).\n\n"
        + (f"STORY SUMMARY:\n{brief.summary}\n\n" if brief.summary else "")
        + f"THE CHARACTER IN THE SCENES:\n{_appearances(brief)}\n\nWHAT THE CHARACTER SAYS:\n{said}\n\n"
        "Give face, clothing (tops, bottoms, outerwear, footwear, each with a type and a colour) and up to "
        "three accessories that fit the story's era and the character's role."
    )
    return prompt, CHARACTER_SYSTEM, character_schema(brief)


def read_character_answer(value: Any, brief: CharacterBrief) -> str:
    """The answer as the seed's attribute line; raises ValueError when it is unusable."""
    if not isinstance(value, Mapping) or not isinstance(value.get("face"), Mapping):
        raise ValueError("the answer needs a face object")
    _check_values(value)
    if brief.gender_word and str(value["face"].get("gender", "")).lower() != brief.gender_word:
        raise ValueError(f"[{brief.tag}] is {brief.gender_word}; set face.gender to {brief.gender_word}")
    return format_attributes(value)


# ---------------------------------------------------------------- locations

def location_schema() -> dict[str, Any]:
    place = {"type": _short("kind of place"), "size": {"type": "string", "enum": ["tiny", "small", "medium", "large", "vast"]},
             "style": _short("architectural or natural style")}
    obj = _object({
        "type": _short("object"), "color": _short("hex colour like #6b4f3a"),
        "material": _short("material"), "position": _short("where it stands, relative to the place or a larger object"),
    })
    return _object({
        "place": _object(place),
        "ground": _item("type", "material", "color"),
        "surroundings": _item("type", "material", "color"),
        "objects": {"type": "array", "minItems": 3, "maxItems": 10, "items": obj},
    })


LOCATION_SYSTEM = (
    "You are a location designer for an illustrated story video. You describe a place for an image "
    "model: its kind, ground, surroundings and the objects that can be seen there, each with a "
    "colour, a material and a position (large objects relative to the place, smaller ones relative "
    "to larger ones). No people. Colours are hex codes like #6b4f3a. Every value is a short phrase."
)


def location_question(brief: LocationBrief) -> tuple[str, str, dict[str, Any]]:
    known = brief.description or f"(the story names {brief.location_id} but never describes it)"
    colours = f"\nKeep these colours of the story: {', '.join(brief.colours)}." if brief.colours else ""
    prompt = (
        f"Describe the location {brief.location_id} of the story.\n\nTHE STORY SAYS: {known}{colours}\n"
        + (f"SEEN AT: {'; '.join(brief.settings)}\n" if brief.settings else "")
        + (f"\nSTORY SUMMARY:\n{brief.summary}\n" if brief.summary else "")
        + "\nGive the place, its ground, its surroundings and 3 to 10 objects that belong there."
    )
    return prompt, LOCATION_SYSTEM, location_schema()


def read_location_answer(value: Any, brief: LocationBrief) -> str:
    """The answer as the seed's location line; the story's own hex colours are always kept."""
    if not isinstance(value, Mapping) or not isinstance(value.get("place"), Mapping):
        raise ValueError("the answer needs a place object")
    _check_values(value)
    line = format_attributes(value)
    missing = [c for c in brief.colours if c not in line.lower()]
    if missing:
        line += f", Colors: [{', '.join(missing)}]"
    return line


# ---------------------------------------------------------------- prose

PROSE_SYSTEM = (
    "You write one paragraph of plain visual description for an image model. Keep every detail and "
    "colour you are given (hex codes too, e.g. #5b6770), describe only what can be seen, and answer "
    "with the paragraph only: no title, no list, no preamble."
)


def prose_question(subject: str, attributes: str, words: tuple[int, int], extra: str = "") -> tuple[str, str]:
    low, high = words
    prompt = (
        f"Turn these attributes of {subject} into one continuous paragraph of {low}-{high} words, like "
        f"\"a black tight cotton jeans and a white loose cotton t-shirt with a pair of black leather shoes\".\n\n"
        f"ATTRIBUTES: {attributes}{extra}"
    )
    return prompt, PROSE_SYSTEM


def clean_prose(text: str) -> str:
    return " ".join(text.strip().strip('"“”').split())


def check_prose(text: str, words: tuple[int, int], colours: tuple[str, ...] = ()) -> None:
    """One paragraph within the word range (10 % slack: models miscount), every given colour kept."""
    if "\n\n" in text.strip():
        raise ValueError("answer with one paragraph only")
    cleaned = clean_prose(text)
    count = len(cleaned.split())
    low, high = words
    if count < int(low * 0.9) or count > int(high * 1.1 + 0.5):
        raise ValueError(f"the paragraph has {count} words; write {low}-{high} words")
    if re.match(r"(here is|here's|sure|certainly)\b", cleaned, re.I):
        raise ValueError("answer with the paragraph itself, no preamble")
    lower = cleaned.lower()
    missing = [c for c in colours if c.lower() not in lower]
    if missing:
        raise ValueError(f"keep the colours {', '.join(missing)} in the paragraph")


# ---------------------------------------------------------------- scene lines

SCENE_SYSTEM = (
    "You are a storyboard artist. For one line of a dialogue story you write the scene line that "
    "tells an illustrator what the picture shows, in an exact markup. Answer with that one line only."
)


def scene_question(request: SceneRequest) -> tuple[str, str]:
    new_id = request.next_location_id()
    known = "\n".join(f"- {{{{{loc}}}}}: {description}" for loc, description in request.locations)
    cast = ", ".join(f"(({tag}))" for tag in request.characters) or "(none)"
    context = []
    if request.previous_text:
        context.append(f"BEFORE: {request.previous_text}")
    context.append(f"THIS LINE, said by [{request.speaker}]: {request.text}")
    if request.next_text:
        context.append(f"AFTER: {request.next_text}")
    speaker_rule = ("The narrator is not in the picture; show the people the line is about, or nobody."
                    if request.narrator else f"(({request.speaker})) speaks and must be in the picture.")
    prompt = (
        "Write the scene line for the picture shown while this line is spoken.\n\n"
        + "\n".join(context) + "\n\n"
        + f"KNOWN LOCATIONS:\n{known or '- (none yet)'}\n"
        + (f"The previous picture was in {{{{{request.previous_location}}}}}; stay there unless the story moves.\n"
           if request.previous_location else "")
        + f"CHARACTERS YOU MAY SHOW: {cast}. {speaker_rule}\n\n"
        "FORMAT (one line):\n"
        "{{loc_k}}, {time of day, weather}; ((speaker_tag)){expression}, {pose}{action}; ((other_tag)){expression}, {pose}{action};\n"
        f"Use a known location as a bare {{{{loc_k}}}}. For a new place write {{{{{new_id}, short description of the place}}}}.\n"
        "Every value in braces is a short phrase. No other text."
    )
    return prompt, SCENE_SYSTEM


def scene_text(answer: str, scene_id: str) -> str:
    """The answer as a full scene line with our id: the model may add the id, a different one, or none."""
    line = next((l for l in answer.strip().splitlines() if l.strip()), "").strip().strip("`")
    return f"({scene_id}) {_SCENE_HEAD.sub('', line, count=1) if _SCENE_HEAD.match(line) else line}".rstrip()


def parse_scene_answer(line: str) -> Scene:
    """Parse with the story format's parser; ValueError says what is wrong (for the model to fix)."""
    try:
        return parse_scene_line(line, source="the answer", line_no=1)
    except InputError as exc:
        raise ValueError(str(exc).removeprefix("the answer line 1: ")) from None


def check_scene_line(line: str, request: SceneRequest) -> Scene:
    """Parse with the story format's parser and check the names it uses; ValueError says what is wrong."""
    scene = parse_scene_answer(line)
    known = dict(request.locations)
    if scene.location_id is None:
        raise ValueError("the line must start with a location, {{loc_k}}")
    if scene.location_id not in known:
        new_id = request.next_location_id()
        if scene.location_id != new_id:
            raise ValueError(f"{{{{{scene.location_id}}}}} is not a known location; use a known one or {{{{{new_id}, description}}}}")
        if not scene.location_description:
            raise ValueError(f"the new location {{{{{new_id}}}}} needs a description: {{{{{new_id}, description}}}}")
    allowed = set(request.characters)
    strangers = [tag for tag in scene.character_tags() if tag not in allowed]
    if strangers:
        raise ValueError(f"(({strangers[0]})) is not a character of the story; use only {', '.join(sorted(allowed)) or 'no characters'}")
    if not request.narrator and request.speaker in allowed and request.speaker not in scene.character_tags():
        raise ValueError(f"(({request.speaker})) speaks this line and must be in the picture")
    return scene

