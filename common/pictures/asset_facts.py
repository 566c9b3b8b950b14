"""What the story itself says about each asset: the facts the asset library is built on.

Deterministic, model-free, and the same for the LLM and the offline engine: who appears where
with which expressions and poses (from the scene lines), the times of day each place is shown at,
the poses the story uses, and the objects that recur. A text engine only words what these facts
leave open (common.pictures.assets_text). Each facts class has `identity()`: what its engine
answer depends on, for the answer's checkpoint fingerprint.

Recurring objects, without a language model: an object named `[[name]]` in a scene line always
is one. Otherwise a word a character's attributes put after a determiner or a verb ("Holding *the
lantern* high", "Handing over *a brass lantern*", "folding *newspaper*"), not after a place
preposition ("Standing *on the jetty*"),
that comes back in two or more scenes, and is not fixed furniture (a word the description of
every place it is seen in already names, like the lamp room's chart table).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from common.formats.story import Scene
from common.pictures.story_visuals import HEX_COLOUR, CharacterBrief, LocationBrief

TIMES = ("dawn", "morning", "noon", "afternoon", "day", "dusk", "evening", "night")
UNSPECIFIED = "unspecified"  # a scene whose setting names no time of day
_TIME_WORDS = {"dawn": "dawn", "daybreak": "dawn", "sunrise": "dawn", "morning": "morning", "noon": "noon",
               "midday": "noon", "afternoon": "afternoon", "day": "day", "daytime": "day", "daylight": "day",
               "dusk": "dusk", "sunset": "dusk", "twilight": "dusk", "evening": "evening", "night": "night",
               "nighttime": "night", "midnight": "night", "moonlight": "night"}
_WORD = re.compile(r"[a-z][a-z'-]*")
_DETERMINERS = frozenset("a an the his her their its my your our this that these those".split())
_PLACE_PREPOSITIONS = frozenset("on onto upon in into inside along by near beside across through toward towards "
                                "under behind around within".split())
_STOP = frozenset(
    "to toward towards at on in into onto by with from of for over under up down across along through near beside "
    "behind around off out against between and or but high low away back aside open closed tight tightly slowly "
    "quickly gently firmly again forward forwards upward upwards downward ahead here there now while as it him her "
    "them".split())
_NOT_OBJECTS = frozenset(
    "eyes eye hand hands head face arm arms hair shoulder shoulders fist fists finger fingers lips mouth brow feet foot "
    "knee knees chest leg legs man woman boy girl child children men women people crowd friend uncle aunt mother "
    "father son daughter wife husband sister brother lady gentleman visitor stranger floor ground wall walls window "
    "windows door doors doorway sky sea water street road room stairs steps corner edge side distance horizon way "
    "time moment air light dark darkness other one infant baby table tables chair chairs bench bed sofa desk shelf "
    "shelves counter stall stool fireplace".split())  # body, people, scenery, furniture: never a prop


def time_of_day(text: str) -> str:
    """The first time-of-day word of a setting ("Autumn evening, thick fog" -> "evening"), else UNSPECIFIED."""
    for word in _WORD.findall(text.lower()):
        if word in _TIME_WORDS:
            return _TIME_WORDS[word]
    return UNSPECIFIED


def scene_time(scene: Scene) -> str:
    """The time of day a scene shows (TIMES, or UNSPECIFIED), from its `{...}` setting."""
    return time_of_day(" ".join(a.value for a in scene.setting))


def pose_key(text: str) -> str | None:
    """A pose's library key: "Standing on the jetty" -> "standing_on_the_jetty" (six words at most)."""
    words = re.findall(r"[a-z0-9]+", text.lower())[:6]
    return "_".join(words) or None


def _first_seen(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


# ---------------------------------------------------------------- characters

@dataclass(frozen=True)
class CharacterFacts:
    brief: CharacterBrief
    attributes: str  # the character's 2.character.txt entry (the user's, when they wrote one)
    voice: str | None
    expressions: tuple[str, ...]  # every one the scenes give them, most frequent first
    poses: tuple[str, ...]  # pose keys
    objects: tuple[str, ...]
    scenes: tuple[str, ...]

    @property
    def tag(self) -> str:
        return self.brief.tag

    def identity(self) -> list[object]:
        """What the engine's identity description is written from."""
        return [self.brief.identity(), self.attributes]


def character_facts(briefs: Sequence[CharacterBrief], attributes: Mapping[str, str], voices: Mapping[str, str],
                    scenes: Sequence[Scene], objects: Sequence["ObjectFacts"]) -> list[CharacterFacts]:
    found = []
    for brief in briefs:
        poses = _first_seen(k for a in brief.appearances for p in a.pose if (k := pose_key(p)))
        held = tuple(o.name for o in objects if brief.tag in o.characters)
        found.append(CharacterFacts(brief, attributes.get(brief.tag, ""), voices.get(brief.tag),
                                    brief.most("expression", limit=None), poses, held,
                                    _first_seen(a.scene_id for a in brief.appearances)))
    return found


# ---------------------------------------------------------------- locations

@dataclass(frozen=True)
class LocationFacts:
    brief: LocationBrief
    attributes: str  # its 2.location.txt entry
    times: tuple[str, ...]
    settings: dict[str, tuple[str, ...]]  # time of day -> the scene lines' own words for it
    scenes: tuple[str, ...]

    @property
    def location_id(self) -> str:
        return self.brief.location_id

    def identity(self) -> list[object]:
        return [self.brief.identity(), self.attributes, list(self.times),
                {t: list(s) for t, s in sorted(self.settings.items())}]


def location_facts(briefs: Sequence[LocationBrief], attributes: Mapping[str, str],
                   scenes: Sequence[Scene]) -> list[LocationFacts]:
    found = []
    for brief in briefs:
        here = [s for s in scenes if s.location_id == brief.location_id]
        settings: dict[str, dict[str, None]] = {}
        for scene in here:
            words = ", ".join(a.value for a in scene.setting if a.value)
            settings.setdefault(scene_time(scene), {}).update({words: None} if words else {})
        found.append(LocationFacts(brief, attributes.get(brief.location_id, ""), tuple(settings),
                                   {t: tuple(w) for t, w in settings.items()}, tuple(s.scene_id for s in here)))
    return found


# ---------------------------------------------------------------- poses

@dataclass(frozen=True)
class PoseFacts:
    key: str
    description: str  # the story's own words, as first written
    characters: tuple[str, ...]
    scenes: tuple[str, ...]


def pose_facts(briefs: Sequence[CharacterBrief]) -> list[PoseFacts]:
    words: dict[str, str] = {}
    who: dict[str, dict[str, None]] = {}
    where: dict[str, dict[str, None]] = {}
    for brief in briefs:
        for appearance in brief.appearances:
            for pose in appearance.pose:
                key = pose_key(pose)
                if key is None:
                    continue
                words.setdefault(key, " ".join(pose.split()))
                who.setdefault(key, {})[brief.tag] = None
                where.setdefault(key, {})[appearance.scene_id] = None
    order = {s: n for n, s in enumerate(dict.fromkeys(a.scene_id for b in briefs for a in b.appearances))}
    keys = sorted(words, key=lambda k: min(order.get(s, 0) for s in where[k]))
    return [PoseFacts(k, words[k], tuple(who[k]), tuple(sorted(where[k], key=lambda s: order.get(s, 0)))) for k in keys]


# ---------------------------------------------------------------- objects

@dataclass(frozen=True)
class ObjectFacts:
    name: str
    phrases: tuple[str, ...]  # the story's words around it ("Handing over a brass lantern")
    characters: tuple[str, ...]
    locations: tuple[str, ...]
    scenes: tuple[str, ...]
    tagged: bool  # named as [[name]] in a scene line

    @property
    def noun_phrase(self) -> str:
        """The longest phrase of the story that ends in the name: "brass lantern"."""
        best = self.name
        for phrase in self.phrases:
            words = _WORD.findall(phrase.lower())
            for start, word in enumerate(words):
                if word not in _DETERMINERS:
                    continue
                run = []
                for token in words[start + 1:start + 4]:
                    if token in _STOP or token in _DETERMINERS:
                        break
                    run.append(token)
                    if token == self.name and len(run) > len(best.split()):
                        best = " ".join(run)
        return best

    def identity(self) -> list[object]:
        return [self.name, list(self.phrases), list(self.characters), list(self.locations), self.tagged]


def _opens_noun(words: Sequence[str], index: int) -> bool:
    """Does a thing follow words[index]: a determiner not after a place preposition ("the" of "holding the
    lantern", not of "on the jetty"), or a verb's -ing form not after a determiner ("folding newspaper")?"""
    word, before = words[index], words[index - 1] if index > 0 else ""
    if word in _DETERMINERS:
        return before not in _PLACE_PREPOSITIONS and not (
            before == "at" and index > 1 and words[index - 2] in ("up", "out", "down"))
    return word.endswith("ing") and len(word) > 4 and before not in _DETERMINERS


def _candidates(text: str) -> list[str]:
    """Words that follow a determiner or a verb (up to three, to the next stop word): `_opens_noun`."""
    words = _WORD.findall(text.lower())
    found = []
    for index, word in enumerate(words):
        if not _opens_noun(words, index):
            continue
        for token in words[index + 1:index + 4]:
            if token in _STOP or token in _DETERMINERS:
                break
            if len(token) >= 3 and token not in _NOT_OBJECTS and not token.endswith(("'s", "ly")):
                found.append(token)
    return found


def recurring_objects(scenes: Sequence[Scene], places: Mapping[str, str | None],
                      people: Iterable[str] = ()) -> list[ObjectFacts]:
    """The objects of the story, in order of first appearance: every [[name]], and every word that recurs
    as a thing characters handle (module docstring). `places` maps a location id to its description."""
    names_of_people = {w for tag in people for w in tag.split("_")}
    seen: dict[str, dict[str, dict[str, None]]] = {}  # name -> scenes / characters / locations / phrases

    def note(name: str, scene: Scene, tag: str | None, phrase: str | None) -> None:
        record = seen.setdefault(name, {"scenes": {}, "characters": {}, "locations": {}, "phrases": {}})
        record["scenes"][scene.scene_id] = None
        if tag:
            record["characters"][tag] = None
        if scene.location_id:
            record["locations"][scene.location_id] = None
        if phrase:
            record["phrases"][phrase] = None

    tagged: set[str] = set()
    for scene in scenes:
        for name in scene.objects:
            tagged.add(name)
            note(name, scene, None, None)
        for character in scene.characters:
            for name in character.objects:
                tagged.add(name)
                note(name, scene, character.tag, None)
            for attribute in character.attributes:
                for word in _candidates(attribute.value):
                    if word not in names_of_people:
                        note(word, scene, character.tag, " ".join(attribute.value.split()))
    for name in [n for n in seen if n.endswith("s") and n[:-1] in seen]:  # "lanterns" joins "lantern"
        for part, values in seen.pop(name).items():
            seen[name[:-1]][part].update(values)
    found = []
    for name, record in seen.items():
        if name not in tagged:
            if len(record["scenes"]) < 2:
                continue
            where = list(record["locations"])
            if where and all(re.search(rf"\b{re.escape(name)}\b", (places.get(loc) or "").lower()) for loc in where):
                continue  # fixed furniture of the place(s) it is seen in
        found.append(ObjectFacts(name, tuple(record["phrases"]), tuple(record["characters"]),
                                 tuple(record["locations"]), tuple(record["scenes"]), name in tagged))
    return found


# ---------------------------------------------------------------- the style

@dataclass(frozen=True)
class StyleFacts:
    art_style: str  # ART_STYLE
    colours: tuple[str, ...]  # the story's own hex colours, most used first
    times: tuple[str, ...]  # the times of day the story shows
    weather: tuple[str, ...]  # the scene lines' setting words, most used first
    summary: str

    def identity(self) -> list[object]:
        return [self.art_style, list(self.colours), list(self.times), list(self.weather), self.summary]


def style_facts(art_style: str, scenes: Sequence[Scene], places: Mapping[str, str | None], summary: str) -> StyleFacts:
    colours: Counter[str] = Counter()
    for description in places.values():
        colours.update(c.lower() for c in HEX_COLOUR.findall(description or ""))
    times = _first_seen(t for s in scenes if (t := scene_time(s)) != UNSPECIFIED)
    weather: Counter[str] = Counter()
    for scene in scenes:
        for attribute in scene.setting:
            weather.update(p.strip().lower() for p in attribute.value.split(",")
                           if p.strip() and time_of_day(p) == UNSPECIFIED)
    return StyleFacts(art_style, tuple(c for c, _ in colours.most_common(6)), times,
                      tuple(w for w, _ in weather.most_common(4)), summary)
