"""Motion prompts (`2.motion.txt`) and the text each animation job is prompted with.

An image-to-video model is told what moves and how the camera moves. A vision LLM writes that
from the scene's picture, grounded in the scene line's action (so it describes the story's
moment, not whatever it imagines); the offline engine writes it from the scene line alone:
each character's pose and action, and a camera move chosen from where the shot sits in the
story (a new part or place opens by pulling back, a part closes by pushing in, shots that
stay in one place pan, alternating). The offline animation then performs that camera move, so
a preview moves as the real animation was told to.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from common.video.animation import CAMERA_PHRASES
from common.formats.story import SceneCharacter, parse_scene_line
from common.video.storyboard import Shot

PROMPT_VERSION = 1
MAX_WORDS = 80
_GENDER_WORDS = {"male", "female", "man", "woman", "boy", "girl", "unknown"}
_KEYS = {
    "action": ("primary action", "action", "activity"),
    "pose": ("body posture", "posture", "pose"),
    "place": ("relative location", "location", "position"),
    "expression": ("facial expression", "expression", "mood"),
}


def speaker_name(tag: str) -> str:
    """`male_doctor_watson` -> `Doctor Watson`: the tag without its gender words, capitalised."""
    words = [w for w in tag.split("_") if w and w.lower() not in _GENDER_WORDS]
    return " ".join(w[:1].upper() + w[1:] for w in (words or tag.split("_")))


@dataclass(frozen=True)
class Figure:
    """What one character does in a scene, read off its `{...}` groups."""

    name: str
    expression: str = ""
    pose: str = ""
    action: str = ""


def _keyed(character: SceneCharacter, kind: str) -> str:
    return next((v for k in _KEYS[kind] if (v := character.attribute(k))), "")


def figure_of(character: SceneCharacter) -> Figure:
    """Expression, pose and action, from `{Key: value}` groups (gen.image's 3.scene.txt) or from
    the story's unkeyed `{expression}, {pose}{action}` order."""
    name = speaker_name(character.tag)
    if any(a.key for a in character.attributes):
        pose, place = _keyed(character, "pose"), _keyed(character, "place")
        if pose and pose.lower() in place.lower():
            pose = ""  # {Body Posture: standing}{Relative Location: standing near fireplace}
        pose = ", ".join(p for p in (pose, place) if p)
        return Figure(name, _keyed(character, "expression"), pose, _keyed(character, "action"))
    values = [a.value for a in character.attributes if a.value]
    if len(values) >= 3:
        return Figure(name, values[0], ", ".join(values[1:-1]), values[-1])
    if len(values) == 2:
        return Figure(name, "", values[0], values[1])
    return Figure(name, "", "", values[0] if values else "")


def figures(shot: Shot) -> list[Figure]:
    scene = parse_scene_line(f"({shot.scene_id}) {shot.scene_line}", source="storyboard")
    return [figure_of(c) for c in scene.characters]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _doing(action: str) -> str:
    """'Reading the newspaper' -> 'keeps reading the newspaper'; 'reads' stays 'reads'."""
    action = _lower_first(action.strip().rstrip("."))
    first = action.split(" ", 1)[0]
    return f"keeps {action}" if first.endswith("ing") else action


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def figure_sentence(figure: Figure) -> str:
    """'a calm Detective Holmes, standing by the window, keeps examining the sill'."""
    head = figure.name
    if figure.expression:
        mood = _lower_first(figure.expression)
        head = f"{_article(mood)} {mood} {figure.name}"
    clause = ", ".join([head, _lower_first(figure.pose)] if figure.pose else [head])
    if figure.action:
        clause += f", {_doing(figure.action)}" if figure.pose else f" {_doing(figure.action)}"
    elif not figure.pose:
        clause += " moves slightly"
    return clause


def camera_for(shot: Shot) -> str:
    """A camera move from the shot's place in the story (a Ken Burns move name)."""
    if shot.first_in_part or not shot.same_location_as_previous:
        return "zoom_out"  # a new part or a new place: reveal it
    if shot.last_in_part:
        return "zoom_in"  # a part closes on its people
    return "pan_left" if shot.number % 2 else "pan_right"  # staying put: keep the eye moving


def offline_motion(shot: Shot) -> str:
    """Two sentences from the scene line: who does what, then the camera."""
    people = [figure_sentence(f) for f in figures(shot)]
    if people:
        first = "; ".join(people)
    else:
        where = _lower_first(shot.setting) if shot.setting else "the place"
        first = f"The scene holds still, with only light and air moving in {where}"
    return f"{first[:1].upper()}{first[1:]}. {CAMERA_PHRASES[camera_for(shot)]}"


# ---------------------------------------------------------------- the LLM question

@dataclass(frozen=True)
class MotionBrief:
    """What the motion prompt must be grounded in; both text engines take it."""

    scene_id: str
    action: str  # who does what, from the scene line
    setting: str
    location: str
    camera: str  # a Ken Burns move name: the camera suggested by the shot's place in the story
    fallback: str  # the offline prompt, for engines that cannot look at the picture

    @classmethod
    def of(cls, shot: Shot) -> "MotionBrief":
        people = "; ".join(figure_sentence(f) for f in figures(shot)) or "no one; the place itself"
        return cls(shot.scene_id, people, shot.setting, shot.location or "", camera_for(shot), offline_motion(shot))


MOTION_SYSTEM = (
    "You write motion prompts for an image-to-video model. Answer with one or two plain sentences in the "
    "present tense: what moves in the picture (people, hands, faces, objects, light, weather) and how the "
    "camera moves. No preamble, no list, no reasoning, no quotes."
)


def motion_question(brief: MotionBrief) -> str:
    lines = [
        f"This picture is {brief.scene_id} of an illustrated story.",
        f"What happens in it: {brief.action}.",
    ]
    if brief.setting:
        lines.append(f"Time and weather: {brief.setting}.")
    if brief.location:
        lines.append(f"Place: {brief.location}.")
    lines.append(
        "Write the motion prompt for this shot: one or two sentences describing the movement that fits this "
        "action and what you see in the picture, and the camera movement (suggested: "
        f"{CAMERA_PHRASES[brief.camera].lower().rstrip('.')}). Answer with the prompt only."
    )
    return "\n".join(lines)


_LABEL = re.compile(r"^\s*(\*\*)?(motion(\s+prompt)?|prompt|answer)\s*(\*\*)?\s*:\s*", re.I)
_REASONING = re.compile(
    r"^(okay|ok\b|alright|sure\b|let me|let's|i will|i'll|i need|i think|i see|we need|first,|the user|"
    r"here is|here's|thinking|hmm|so,|to describe|looking at)", re.I)
_SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bvs)[.!?]+(?=\s|$)")


def clean_motion(text: str) -> str:
    """The answer without a `Prompt:` label, wrapping quotes or markdown emphasis."""
    text = _LABEL.sub("", text.strip())
    text = text.strip().strip('"“”\'*`').strip()
    return text


def check_motion(text: str) -> None:
    """Raise ValueError (the LLM client then asks again) unless it is a usable motion prompt."""
    if not text:
        raise ValueError("the answer is empty")
    if "\n" in text:
        raise ValueError("answer on one line: one or two sentences, no list")
    if "<think" in text.lower() or "</think" in text.lower() or _REASONING.match(text):
        raise ValueError("answer with the motion prompt itself, without reasoning or preamble")
    words = len(text.split())
    if words < 4:
        raise ValueError("the prompt is too short; describe what moves and how the camera moves")
    if words > MAX_WORDS:
        raise ValueError(f"the answer has {words} words; use one or two sentences of at most {MAX_WORDS} words")
    sentences = len(_SENTENCE_END.findall(text)) or 1
    if sentences > 2:
        raise ValueError(f"the answer has {sentences} sentences; use one or two")
    if text.lstrip().startswith(("-", "*", "1.", "#")):
        raise ValueError("answer with plain sentences, not a list or heading")


def motion_line(text: str) -> str:
    """A prompt as one 2.motion.txt line: whitespace collapsed, so it never breaks the file."""
    return " ".join(text.split())


# ---------------------------------------------------------------- the animation prompt

def scene_prose(shot: Shot) -> str:
    """The scene line as plain words: setting, then each character and what they do."""
    parts = []
    if shot.setting:
        parts.append(shot.setting)
    parts += [f"{speaker_name(tag)}: {attrs}" if attrs else speaker_name(tag) for tag, attrs in shot.characters]
    return "; ".join(parts)


def clip_prompt(shot: Shot, motion: str, *, art_style: str, enable_motion: bool = True,
                enable_scene: bool = True, enable_location: bool = True) -> str:
    """The animation prompt: ART_STYLE, then what ENABLE_MOTION / _SCENE / _LOCATION let in."""
    parts: list[str] = []
    if art_style.strip():
        parts.append(f"{art_style.strip()} style")
    if enable_motion and motion.strip():
        parts.append(motion.strip())
    if enable_scene and (prose := scene_prose(shot)):
        parts.append(prose)
    if enable_location and shot.location:
        parts.append(shot.location)
    return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts)
