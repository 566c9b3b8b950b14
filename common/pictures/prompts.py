"""The words sent to the image model for a character, a location and a scene.

The seed system's three scripts each held a "master prompt"; they are here once, shorter, with
the same intent: the art style first, the subject's own description kept verbatim, and for a
scene, each character and the place either described in words (TEXT modes), pointed at in the
stitched reference pictures (IMAGE modes), or both.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from common.formats.story import Scene, SceneCharacter
from common.pictures.stitch import Placement
from common.offline.cards import display_name

# Scene attributes that say what a character is doing, most telling first (offline cards show them).
_ACTION_KEYS = ("Primary Action", "Body Posture", "Facial Expression")


def notes(phrases: Sequence[str]) -> str:
    return " ".join(" ".join(str(p).split()) for p in phrases if str(p).strip())


def truncate_words(text: str, limit: int) -> str:
    """At most `limit` words (the seed cut at limit*6 characters, often mid-word)."""
    words = text.split()
    return " ".join(words) if len(words) <= limit else " ".join(words[:max(0, limit)]) + " ..."


def _join(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def character_prompt(style: str, description: str, *, face_only: bool, phrases: Sequence[str] = ()) -> str:
    framing = ("a portrait of the character's face and shoulders" if face_only
               else "the character's whole body from head to feet, face, hands and clothes all visible")
    return _join(
        f"An extremely detailed character illustration in the style of {style}: {framing}, "
        "nothing cropped or hidden, on a plain black background.",
        f"Character description: {description}",
        f"Follow the {style} style and match every colour, shape, texture and detail of the description exactly.",
        notes(phrases),
    )


def location_prompt(style: str, description: str, *, phrases: Sequence[str] = ()) -> str:
    return _join(
        f"An extremely detailed environment illustration in the style of {style}: an atmospheric, immersive view "
        "of the place with a rich colour palette, natural lighting and depth. No people in it.",
        f"Location description: {description}",
        f"Follow the {style} style and match every colour, shape, texture and detail of the description exactly.",
        notes(phrases),
    )


def scene_cast(scene: Scene) -> list[SceneCharacter]:
    """The scene's characters, each once, in the order the line names them."""
    seen: dict[str, SceneCharacter] = {}
    for character in scene.characters:
        seen.setdefault(character.tag, character)
    return list(seen.values())


def setting_words(scene: Scene) -> str:
    """The scene's time and weather as words: `{Weather/Season/Time: sunny winter morning}` -> "sunny winter morning"."""
    return ", ".join(a.value for a in scene.setting if a.value)


def scene_action(character: SceneCharacter) -> str:
    """What the character does, in a few words: action, posture, expression (else all attributes)."""
    values = [character.attribute(key) for key in _ACTION_KEYS]
    found = [v for v in values if v]
    return ", ".join(found) if found else character.text


def _uses(mode: str, what: str) -> bool:
    return what in {"IMAGE_TEXT": ("IMAGE", "TEXT"), "TEXT": ("TEXT",), "IMAGE": ("IMAGE",)}.get(mode, ())


def _thing(name: str, texts: Mapping[str, str] | None) -> str:
    """An [[object]] in words: its library description, else its name."""
    described = (texts or {}).get(name)
    return f"the {name.replace('_', ' ')} ({described})" if described else f"the {name.replace('_', ' ')}"


def scene_prompt(style: str, scene: Scene, *, place_text: str | None, character_texts: Mapping[str, str],
                 placements: Mapping[tuple[str, str], Placement], character_mode: str, location_mode: str,
                 character_word_limit: int, location_word_limit: int, phrases: Sequence[str] = (),
                 object_texts: Mapping[str, str] | None = None) -> str:
    """One scene's prompt: the shot, the time, the place, then each character and what they do, then the
    [[objects]] the line names (described by the asset library's `object_texts`)."""
    lines = [
        f"An extremely detailed illustration in the style of {style} of one moment of a story, "
        "a wide shot from far away so the whole place and everyone in it are visible, "
        "each person sized true to the place around them."
    ]
    if setting_words(scene):
        lines.append(f"Time and weather: {setting_words(scene)}.")
    if scene.location_id and location_mode != "NONE":
        parts = []
        placed = placements.get(("location", scene.location_id))
        if _uses(location_mode, "IMAGE") and placed:
            parts.append(f"the place shown in {placed.phrase()}, as the background of the whole picture")
        if _uses(location_mode, "TEXT") and place_text:
            parts.append(("which looks like this: " if parts else "") + truncate_words(place_text, location_word_limit))
        if parts:
            lines.append("Location: " + ", ".join(parts) + ("" if parts[-1].endswith(".") else "."))
    for character in scene_cast(scene):
        name = display_name(character.tag)
        who = []
        placed = placements.get(("character", character.tag))
        sheet = placements.get(("sheet", character.tag))
        if _uses(character_mode, "IMAGE") and placed:
            who.append(f"the person in {placed.phrase()}")
        if _uses(character_mode, "IMAGE") and sheet:
            who.append(f"{'drawn as ' if placed else ''}the person of the character sheet in {sheet.phrase()}, "
                       "the same face, hair, build and clothes")
        description = character_texts.get(character.tag)
        if _uses(character_mode, "TEXT") and description:
            who.append("who looks like this: " + truncate_words(description, character_word_limit))
        head = f"{name} ({'; '.join(who)})" if who else name
        lines.append(f"{head}: {character.text}." if character.text else f"{head} is in the picture.")
        if character.objects:
            lines.append(f"{name} has " + ", ".join(_thing(n, object_texts) for n in character.objects) + ".")
    if scene.objects:
        lines.append("Also in the picture: " + ", ".join(_thing(n, object_texts) for n in scene.objects) + ".")
    lines.append(notes(phrases))
    return _join(*lines)



# A character sheet's panels: how each view is framed (common.pictures.sheets).
SHEET_VIEWS = {
    "front": "the whole body from head to feet, facing the viewer, neutral expression, arms relaxed at the sides",
    "three-quarter": "the whole body from head to feet, turned three-quarters to the left, neutral expression",
    "expression": "head and shoulders, facing the viewer",
}


def sheet_panel_prompt(style_text: str, art_style: str, name: str, description: str, view: str,
                       expression: str | None, *, referenced: bool, phrases: Sequence[str] = ()) -> str:
    """One panel of a character sheet: the view, the identity kept exactly, the style bible."""
    return _join(
        f"One panel of a character sheet, in the style of {art_style}: {SHEET_VIEWS[view]}, "
        "on a plain light grey background in even studio light, nothing cropped.",
        "The character is the person in reference image 1: keep their face, hair, build, clothes and colours exactly."
        if referenced else "",
        f"Character: {name}. {description}".strip(),
        f"Facial expression: {expression}." if expression else "",
        f"Style bible: {style_text}." if style_text else "",
        notes(phrases),
    )
