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


def scene_prompt(style: str, scene: Scene, *, place_text: str | None, character_texts: Mapping[str, str],
                 placements: Mapping[tuple[str, str], Placement], character_mode: str, location_mode: str,
                 character_word_limit: int, location_word_limit: int, phrases: Sequence[str] = ()) -> str:
    """One scene's prompt: the shot, the time, the place, then each character and what they do."""
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
        if _uses(character_mode, "IMAGE") and placed:
            who.append(f"the person in {placed.phrase()}")
        description = character_texts.get(character.tag)
        if _uses(character_mode, "TEXT") and description:
            who.append("who looks like this: " + truncate_words(description, character_word_limit))
        head = f"{name} ({'; '.join(who)})" if who else name
        lines.append(f"{head}: {character.text}." if character.text else f"{head} is in the picture.")
    lines.append(notes(phrases))
    return _join(*lines)

