"""Sound-effect planning: which sound goes with each transcript segment (5.timeline.py), and how
long each sound lasts and where it sits in its segment (6.timing.py).

Why it is shaped like this:
- The text engine answers in batches (SFX_BATCH_SIZE segments per question) so a long story
  is a few dozen questions, each checkpointed, and a bad answer costs one batch. An LLM's
  answer is a JSON list of {index, sound} (or {index, start, seconds}) checked here: every
  index of the batch exactly once, a short description of a sound (not a sentence about the
  story, not reasoning), or "Silence"; timings that fit their segment. A failed check is
  told to the model, which answers again (common.services.llm).
- The offline engine needs to know which story line a segment belongs to, because its only
  source is the story's own scene markup: segments are mapped to utterances through
  output/story.timings.json (time overlap) or, when that is missing or stale, by matching
  words in story order.
- 4.sfx.txt must add up to the audio's length exactly. Durations are done in integer units
  of the input's own precision (milliseconds for the seed's files), so splitting a segment
  into lead silence + effect + trailing silence and merging silences never drifts, however
  many lines there are (the seed's own 4.sfx.txt was 5 ms short).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, TypeVar

from common.formats.story import Story
from common.formats.timeline import Timeline, TimelineEntry, written_places, written_seconds

T = TypeVar("T")

SILENCE = "Silence"
PROMPT_VERSION = 1  # bump when a question or its checks change: the LLM's answers are asked again
RULES_VERSION = 1  # bump when the offline timing rules change
MAX_WORDS = 12  # what the model is asked for
HARD_MAX_WORDS = 16  # what is accepted: a few words too many are not worth a retry
MIN_EFFECT_SECONDS = 0.1
FIT_SLACK = 0.05  # seconds an answer may overshoot its segment by (rounding), then clamped
_MAX_PLACES = 9

_SILENT_WORDS = {"silence", "silent", "none", "no sound", "no sound effect", "nothing", "n/a", "-", ""}
_LABEL = re.compile(r"^\s*(?:sound(?:\s*effect)?|sfx|effect|description|answer)\s*[:\-–]\s*", re.I)
_REASONING = re.compile(
    r"\b(?:because|since|therefore|thus|i|i'm|i'd|we|let's|segment|segments|narrat\w*|story|"
    r"characters?|speakers?|implies|implied|suggests?|reflects?|represents?|symboli[sz]\w*|emphasi[sz]\w*|"
    r"conveys?|conveying|indicat\w*|would\s+be|should\s+be|fits?\s+the)\b",
    re.I,
)
_COLOURS = re.compile(r",?\s*\bcolou?rs?\b(?:\s*#[0-9a-fA-F]{3,8})+|#[0-9a-fA-F]{6}\b")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


# ---------------------------------------------------------------- items

@dataclass(frozen=True)
class SfxSegment:
    """One line of 2.timeline.txt, with the scene it belongs to (None when unknown)."""

    index: int  # 1-based line among the timeline's entries
    seconds: float
    text: str
    scene: str | None = None


@dataclass(frozen=True)
class EffectSlot:
    """One non-silent line of 3.timing.txt: a sound that needs a length and a place."""

    index: int  # 1-based line among 3.timing.txt's entries
    seconds: float  # the segment's length
    description: str


@dataclass(frozen=True)
class EffectTiming:
    """Where the sound sits in its segment: `start` seconds in, lasting `seconds`."""

    index: int
    start: float
    seconds: float


def is_silence(text: str) -> bool:
    return " ".join(text.lower().split()).strip(" .!\"'") in _SILENT_WORDS


def batches(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive runs of at most `size` items (a size below 1 is taken as 1)."""
    size = max(1, int(size))
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


# ---------------------------------------------------------------- story context

def person_names(story: Story | None) -> tuple[str, ...]:
    """Speakers' names (the last word of each tag, `male_doctor_watson` -> Watson): a sound
    description that names one is about the story, not a sound."""
    if story is None:
        return ()
    found = {tag.split("_")[-1].capitalize() for tag in story.characters()}
    return tuple(sorted(name for name in found if len(name) >= 3 and name.lower() != "narrator"))


def utterance_scenes(story: Story) -> list[str | None]:
    """What each utterance's scene says about the place, weather and action, in one line.

    Place and weather carry over to utterances without a scene line (the place does not change
    until a new scene says so); actions belong to their own utterance only.
    """
    locations = story.locations()
    out: list[str | None] = []
    place: str | None = None
    for utterance in story.utterances:
        scene = utterance.scene
        actions: list[str] = []
        if scene is not None:
            parts = []
            described = scene.location_description or (locations.get(scene.location_id) if scene.location_id else None)
            if described:
                parts.append(_COLOURS.sub("", described).strip(" ,;"))
            if scene.setting_text:
                parts.append(scene.setting_text)
            place = "; ".join(p for p in parts if p) or None
            actions = [c.text for c in scene.characters if c.text]
        text = "; ".join([p for p in [place] if p] + actions)
        out.append(text or None)
    return out


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _starts_ends(timeline: Timeline) -> tuple[list[float], list[float]]:
    starts = list(timeline.starts())
    return starts, [s + e.seconds for s, e in zip(starts, timeline.entries)]


def _timings_usable(story: Story, timings: Mapping[str, Any] | None) -> list[tuple[int, float, float]] | None:
    """(utterance index, start, end) per line of story.timings.json, or None if it is missing or
    describes another version of the story (then its times would point at the wrong lines)."""
    if not isinstance(timings, Mapping) or not isinstance(timings.get("lines"), list):
        return None
    out = []
    for line in timings["lines"]:
        try:
            number, start, end, text = int(line["line"]), float(line["start"]), float(line["end"]), str(line["text"])
        except (KeyError, TypeError, ValueError):
            return None
        if not 1 <= number <= len(story.utterances) or story.utterances[number - 1].text != text:
            return None
        out.append((number - 1, start, end))
    return out or None


def map_by_time(timeline: Timeline, spans: Sequence[tuple[int, float, float]]) -> list[int | None]:
    """The utterance each segment overlaps most (nearest when it overlaps none, e.g. a pause)."""
    starts, ends = _starts_ends(timeline)
    out: list[int | None] = []
    for a, b in zip(starts, ends):
        best, best_key = None, None
        for index, start, end in spans:
            overlap = min(b, end) - max(a, start)
            distance = 0.0 if overlap > 0 else min(abs(a - end), abs(start - b))
            key = (-max(overlap, 0.0), distance)
            if best_key is None or key < best_key:
                best, best_key = index, key
        out.append(best)
    return out


def map_by_text(segment_texts: Sequence[str], utterance_texts: Sequence[str], window: int = 6) -> list[int | None]:
    """The utterance holding each segment's words, searched forward from the last match.

    Segments come in story order and are pieces of utterances (a transcriber splits long
    lines), so the search never goes back and looks only a few utterances ahead.
    """
    vocab = [set(_words(text)) for text in utterance_texts]
    out: list[int | None] = []
    pointer = 0
    for text in segment_texts:
        words = _words(text)
        if not words or not vocab:
            out.append(None)
            continue
        best, best_score = None, 0.0
        for index in range(pointer, min(len(vocab), pointer + window)):
            score = sum(1 for w in words if w in vocab[index]) / len(words)
            if score > best_score + 1e-9:
                best, best_score = index, score
        if best is not None and best_score >= 0.5:
            pointer = best
            out.append(best)
        else:
            out.append(None)
    return out


def segment_scenes(timeline: Timeline, story: Story | None,
                   timings: Mapping[str, Any] | None = None) -> tuple[list[str | None], str]:
    """Each segment's scene text and how segments were matched to the story ('timings',
    'text' or 'none')."""
    if story is None:
        return [None] * len(timeline.entries), "none"
    scenes = utterance_scenes(story)
    spans = _timings_usable(story, timings)
    if spans is not None:
        indices, how = map_by_time(timeline, spans), "timings"
    else:
        indices, how = map_by_text([e.text for e in timeline.entries], [u.text for u in story.utterances]), "text"
    return [scenes[i] if i is not None else None for i in indices], how


def segments_of(timeline: Timeline, scenes: Sequence[str | None]) -> list[SfxSegment]:
    return [SfxSegment(n, e.seconds, e.text, scene) for n, (e, scene) in enumerate(zip(timeline.entries, scenes), start=1)]


# ---------------------------------------------------------------- 5.timeline.py: which sound

def clean_sound(text: Any, names: Iterable[str] = ()) -> str:
    """A usable description ('Silence' included), or ValueError saying what is wrong with it."""
    if not isinstance(text, str):
        raise ValueError("each sound must be a string")
    if "\n" in text.strip():
        raise ValueError("each sound must be one line")
    line = _LABEL.sub("", " ".join(text.split())).strip().strip("\"'“”‘’*`").strip()
    if is_silence(line):
        return SILENCE
    words = line.split()
    if len(words) > HARD_MAX_WORDS:
        raise ValueError(f"the sound '{line[:60]}…' has {len(words)} words; use at most {MAX_WORDS}")
    if len(re.split(r"(?<=[.!?])\s+(?=[A-Z])", line)) > 1:
        raise ValueError(f"the sound '{line[:60]}' is several sentences; describe one sound in one phrase")
    found = _REASONING.search(line)
    if found:
        raise ValueError(f"the sound '{line[:60]}' explains or tells the story ('{found.group(0)}'); "
                         "describe only what is heard")
    for name in names:
        if re.search(rf"\b{re.escape(name)}\b", line):
            raise ValueError(f"the sound '{line[:60]}' names {name}; describe the sound, not the people")
    return line.rstrip(".")


def sound_question(segments: Sequence[SfxSegment]) -> tuple[str, str, dict[str, Any]]:
    """(prompt, system message, JSON schema) asking for one sound per segment."""
    first, last = segments[0].index, segments[-1].index
    lines, shown = [], None
    for segment in segments:
        lines.append(f"[{segment.index}] ({segment.seconds:.2f} s) {segment.text}")
        if segment.scene and segment.scene != shown:
            lines.append(f"     scene: {segment.scene}")
            shown = segment.scene
    prompt = (
        "Below are consecutive segments of a narrated story's transcript, numbered, with their length in "
        "seconds and, where known, the scene they belong to. For each segment give the ONE sound effect that "
        "would really be heard in the story's world while it is spoken, as a short prompt for a sound-effect "
        f"generator: at most {MAX_WORDS} words naming the sound's source, texture, loudness and distance "
        "(e.g. \"Heavy rain on a window, distant thunder\" or \"Three sharp knocks on a wooden door\"). "
        f"Answer exactly \"{SILENCE}\" when nothing fits. Most segments should be {SILENCE}: add a sound only "
        "where the words or the scene clearly imply one. Never describe speech, music, feelings or what "
        "happens in the story, never name people, never explain.\n\n"
        "SEGMENTS:\n" + "\n".join(lines) + "\n\n"
        f"Answer with one item per segment, indices {first} to {last} in order: "
        '{"sounds": [{"index": ' + str(first) + ', "sound": "..."}, ...]}'
    )
    system = "You are a sound designer for narrated audio stories. You answer in JSON only."
    return prompt, system, _list_schema("sounds", len(segments), {
        "index": {"type": "integer", "minimum": first, "maximum": last},
        "sound": {"type": "string", "minLength": 1, "maxLength": 160},
    })


def _list_schema(name: str, count: int, properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema for `{name: [exactly count objects with these properties]}`."""
    item = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {
        "type": "object",
        "properties": {name: {"type": "array", "minItems": count, "maxItems": count, "items": item}},
        "required": [name],
        "additionalProperties": False,
    }


def _by_index(items: Any, wanted: Sequence[int], what: str) -> dict[int, Mapping[str, Any]]:
    if not isinstance(items, list):
        raise ValueError(f"'{what}' must be a list")
    found: dict[int, Mapping[str, Any]] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("index"), int):
            raise ValueError(f"every item of '{what}' needs an integer index")
        if item["index"] in found:
            raise ValueError(f"index {item['index']} appears twice")
        found[item["index"]] = item
    missing = [i for i in wanted if i not in found]
    extra = sorted(set(found) - set(wanted))
    if missing or extra:
        parts = ([f"missing indices {missing}"] if missing else []) + ([f"unknown indices {extra}"] if extra else [])
        raise ValueError(f"give exactly one item per index {wanted[0]}..{wanted[-1]}: " + ", ".join(parts))
    return found


def read_sound_answer(value: Any, segments: Sequence[SfxSegment], names: Iterable[str] = ()) -> list[str]:
    """The batch's sounds in segment order, or ValueError with what to fix (told to the model)."""
    if not isinstance(value, Mapping):
        raise ValueError('answer with an object {"sounds": [...]}')
    found = _by_index(value.get("sounds"), [s.index for s in segments], "sounds")
    names = tuple(names)
    out = []
    for segment in segments:
        try:
            out.append(clean_sound(found[segment.index].get("sound"), names))
        except ValueError as exc:
            raise ValueError(f"index {segment.index}: {exc}") from None
    return out


def sound_timeline(timeline: Timeline, sounds: Sequence[str]) -> Timeline:
    """3.timing.txt: the timeline's durations, spelled as they were, with the sounds as text."""
    if len(sounds) != len(timeline.entries):
        raise ValueError("one sound per timeline entry is needed")
    entries = tuple(TimelineEntry(e.seconds, s, raw=e.raw) for e, s in zip(timeline.entries, sounds))
    return Timeline(entries, source="3.timing.txt", layout=timeline.layout)


# ---------------------------------------------------------------- 6.timing.py: how long, where

def effect_slots(timing: Timeline) -> list[EffectSlot]:
    return [EffectSlot(n, e.seconds, e.text.strip()) for n, e in enumerate(timing.entries, start=1)
            if not is_silence(e.text)]


def timing_question(slots: Sequence[EffectSlot], max_seconds: float) -> tuple[str, str, dict[str, Any]]:
    """(prompt, system message, JSON schema) asking for each effect's length and start."""
    lines = [f"[{s.index}] segment of {s.seconds:.2f} s: {s.description}" for s in slots]
    prompt = (
        "A sound designer put these sound effects into segments of a narrated story. For each effect say how "
        "long the sound itself naturally lasts and when it starts, in seconds from the start of its segment. "
        "A knock or a click lasts about 1 s, a door opening about 2 s, footsteps across a room about 3 s; an "
        "ambience or continuous background (rain, wind, a crowd, room tone, a crackling fire) lasts the whole "
        "segment and starts at 0. Every effect must fit inside its segment (start + seconds <= the segment's "
        f"length) and lasts at most {max_seconds:g} s.\n\n"
        "EFFECTS:\n" + "\n".join(lines) + "\n\n"
        'Answer with one item per effect: {"timings": [{"index": ' + str(slots[0].index)
        + ', "start": 0.5, "seconds": 1.5}, ...]}'
    )
    system = "You are a sound designer timing sound effects. You answer in JSON only."
    return prompt, system, _list_schema("timings", len(slots), {
        "index": {"type": "integer", "minimum": slots[0].index, "maximum": slots[-1].index},
        "start": {"type": "number", "minimum": 0},
        "seconds": {"type": "number", "minimum": 0},
    })


def fit_timing(slot: EffectSlot, start: float, seconds: float, max_seconds: float) -> EffectTiming:
    """The timing clamped into the segment and under `max_seconds` (lengths first, then start)."""
    length = min(seconds, slot.seconds, max_seconds)
    start = min(max(0.0, start), max(0.0, slot.seconds - length))
    return EffectTiming(slot.index, round(start, 3), round(length, 3))


def read_timing_answer(value: Any, slots: Sequence[EffectSlot], max_seconds: float) -> list[EffectTiming]:
    """The batch's timings in slot order, or ValueError with what to fix (told to the model)."""
    if not isinstance(value, Mapping):
        raise ValueError('answer with an object {"timings": [...]}')
    found = _by_index(value.get("timings"), [s.index for s in slots], "timings")
    out = []
    for slot in slots:
        item = found[slot.index]
        start, seconds = item.get("start"), item.get("seconds")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (start, seconds)):
            raise ValueError(f"index {slot.index}: start and seconds must be numbers")
        if seconds < MIN_EFFECT_SECONDS:
            raise ValueError(f"index {slot.index}: {seconds:g} s is too short for a sound; give its real length")
        if seconds > max_seconds + FIT_SLACK:
            raise ValueError(f"index {slot.index}: {seconds:g} s is longer than the {max_seconds:g} s an effect may last")
        if start < 0 or start + seconds > slot.seconds + FIT_SLACK:
            raise ValueError(f"index {slot.index}: start {start:g} s + {seconds:g} s does not fit its "
                             f"{slot.seconds:.2f} s segment")
        out.append(fit_timing(slot, float(start), float(seconds), max_seconds))
    return out


def words_re(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.I)


# A sound that goes on (weather, water, fire, crowds, machines, any "ambience") fills its segment.
_AMBIENCE = words_re(
    r"ambien\w*", r"atmospher\w*", "background", "room tone", "hum", "humming", "drone", "droning", "continuous",
    "constant", "steady", r"rain\w*", "drizzle", "downpour", r"wind\w*", "breeze", "gale", r"gusts?", r"gusting",
    "waves", "surf", "sea", "ocean", "shore", "tide", "river", "stream", "brook", "waterfall", "fire", "fireplace",
    "hearth", "crackling", "flames", r"crowds?", r"murmur\w*", r"chatter\w*", "traffic", "birdsong", "birds",
    r"crickets?", "insects", r"cicadas?", "ticking", "clock", "engine", "machinery", "forest", "city", "tavern",
    "market", r"storm\w*", "howling",
)
# Typical lengths of one-off sounds; a description naming several takes the longest.
_EVENTS: tuple[tuple[re.Pattern[str], float], ...] = (
    (words_re(r"knock\w*"), 1.5), (words_re(r"click\w*", r"snap\w*", r"taps?", "tapping"), 0.7),
    (words_re(r"clink\w*", r"jingl\w*", r"clatter\w*"), 1.3),
    (words_re(r"thuds?", r"slam\w*", r"bang\w*", r"cough\w*"), 1.0),
    (words_re(r"gunshots?", r"shots?", r"gasps?", r"whoosh\w*", r"swoosh\w*"), 1.0),
    (words_re(r"crash\w*", r"clang\w*", r"groan\w*", r"whistl\w*", r"scream\w*", r"bark\w*"), 2.0),
    (words_re("footstep", "footfall"), 1.0),
    (words_re("footsteps", "footfalls", "steps", "walking", "running", "pacing"), 3.0),
    (words_re(r"doors?"), 2.0), (words_re(r"creak\w*", r"scrap\w*", r"splash\w*", r"sighs?", r"pages?", "paper"), 1.5),
    (words_re(r"rustl\w*", r"breath\w*", r"chirp\w*"), 2.0),
    (words_re(r"laugh\w*", r"voices?", r"vocali[sz]\w*", r"moan\w*"), 2.5),
    (words_re(r"chimes?"), 3.0), (words_re(r"bells?", r"hooves", r"horses?"), 4.0),
    (words_re(r"pour\w*", r"rumbl\w*"), 3.0),
    (words_re(r"thunder\w*", r"carriages?", r"wheels", r"trains?"), 5.0),
)
DEFAULT_EVENT_SECONDS = 2.5


def is_ambience(description: str) -> bool:
    return _AMBIENCE.search(description) is not None


def typical_seconds(description: str) -> float | None:
    """How long a one-off sound like this lasts (None for an ambience: it fills its segment)."""
    if is_ambience(description):
        return None
    lengths = [seconds for pattern, seconds in _EVENTS if pattern.search(description)]
    return max(lengths) if lengths else DEFAULT_EVENT_SECONDS


def rule_timing(slot: EffectSlot, max_seconds: float) -> EffectTiming:
    """The rules' timing: an ambience fills its segment, an event lasts its typical length, centred."""
    seconds = typical_seconds(slot.description)
    if seconds is None:
        return fit_timing(slot, 0.0, slot.seconds, max_seconds)
    length = min(seconds, slot.seconds, max_seconds)
    return fit_timing(slot, (slot.seconds - length) / 2.0, length, max_seconds)


# ---------------------------------------------------------------- 4.sfx.txt

def places_of(timeline: Timeline) -> int:
    """Decimal places to work in: the most any line uses (at least 3, the millisecond)."""
    places = max([3, *(written_places(written_seconds(entry)) for entry in timeline.entries)])
    return min(places, _MAX_PLACES)


def spell(units: int, places: int) -> str:
    """`units` of 10^-places seconds written exactly, with no float in between."""
    whole, part = divmod(units, 10 ** places)
    return f"{whole}.{part:0{places}d}"


def plan_effects(timing: Timeline, placed: Mapping[int, EffectTiming], max_seconds: float) -> Timeline:
    """4.sfx.txt: each effect between its lead and trailing silence, silences merged.

    Adjacent pieces with the same text are merged too: silences always, an effect only while
    it stays under `max_seconds` (a rain bed over three segments is one clip, not three with
    seams). Every duration is an exact integer number of units, so the total is the total of
    3.timing.txt to the unit.
    """
    places = places_of(timing)
    unit = 10 ** places
    max_units = max(1, int(max_seconds * unit))
    pieces: list[list[Any]] = []

    def add(units: int, text: str) -> None:
        if units <= 0:
            return
        if pieces and pieces[-1][1] == text and (text == SILENCE or pieces[-1][0] + units <= max_units):
            pieces[-1][0] += units
        else:
            pieces.append([units, text])

    for number, entry in enumerate(timing.entries, start=1):
        segment = round(entry.seconds * unit)
        if is_silence(entry.text):
            add(segment, SILENCE)
            continue
        if number not in placed:
            raise ValueError(f"no timing for effect {number} ({entry.text!r})")
        where = placed[number]
        length = min(segment, max_units, max(1, round(where.seconds * unit)))
        start = min(max(0, round(where.start * unit)), segment - length)
        add(start, SILENCE)
        add(length, entry.text.strip())
        add(segment - start - length, SILENCE)
    entries = tuple(TimelineEntry(units / unit, text, raw=f"{spell(units, places)}: {text}") for units, text in pieces)
    return Timeline(entries, source="4.sfx.txt")
