"""common.formats against the seed system's real files, and against hostile input."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import pytest

import common.formats as F
from common.run.errors import InputError

from tests.support.seed import FIXTURES

# Fixture file -> (parse, format, read). Every text file of the fixtures is listed here or in PLAIN.
FORMATS: dict[str, tuple[Callable[..., Any], Callable[[Any], str], Callable[[Path], Any]]] = {
    "gen.audio/input/1.story.txt": (F.parse_story, F.format_story, F.read_story),
    "gen.image/input/1.story.txt": (F.parse_story, F.format_story, F.read_story),
    "gen.video/input/1.story.txt": (F.parse_story, F.format_story, F.read_story),
    "gen.audio/input/1.story.speakers.txt": (F.parse_voice_map, F.format_voice_map, F.read_voice_map),
    "gen.audio/input/12.chapters.txt": (F.parse_chapters, F.format_chapters, F.read_chapters),
    "gen.audio/input/2.story.srt": (F.parse_srt, F.format_srt, F.read_srt),
    "gen.audio/input/2.timeline.txt": (F.parse_timeline, F.format_timeline, F.read_timeline),
    "gen.audio/input/3.timing.txt": (F.parse_timeline, F.format_timeline, F.read_timeline),
    "gen.audio/input/4.sfx.txt": (F.parse_timeline, F.format_timeline, F.read_timeline),
    "gen.audio/input/2.timeline.script.txt": (F.parse_timeline_script, F.format_timeline_script, F.read_timeline_script),
    "gen.image/input/2.character.txt": (F.parse_characters, F.format_descriptions, F.read_characters),
    "gen.image/input/3.character.txt": (F.parse_characters, F.format_descriptions, F.read_characters),
    "gen.image/input/2.location.txt": (F.parse_locations, F.format_descriptions, F.read_locations),
    "gen.image/input/3.location.txt": (F.parse_locations, F.format_descriptions, F.read_locations),
    "gen.image/input/3.scene.txt": (F.parse_scenes, F.format_scenes, F.read_scenes),
    "gen.video/input/2.motion.txt": (F.parse_motions, F.format_descriptions, F.read_motions),
}
# Free text with no markup: read and written whole by the scripts that use them.
PLAIN = {
    "gen.audio/input/10.thumbnail.txt", "gen.audio/input/10.title.txt",
    "gen.audio/input/2.story.str.txt", "gen.audio/input/9.summary.txt",
    "gen.audio/voices/narrator.reference.txt",
}
WRITERS: dict[Callable[..., Any], Callable[..., Path]] = {
    F.format_story: F.write_story, F.format_voice_map: F.write_voice_map,
    F.format_chapters: F.write_chapters, F.format_srt: F.write_srt,
    F.format_timeline: F.write_timeline, F.format_timeline_script: F.write_timeline_script,
    F.format_descriptions: F.write_descriptions, F.format_scenes: F.write_scenes,
}


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


def story(name: str = "gen.video/input/1.story.txt") -> F.Story:
    return F.read_story(FIXTURES / name)


def without_raw(value: Any) -> Any:
    """The same value with every remembered spelling dropped, to exercise the canonical writer."""
    if isinstance(value, tuple):
        return tuple(without_raw(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: (None if f.name in ("raw", "layout") else without_raw(getattr(value, f.name)))
            for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **changes)
    return value


# ---------------------------------------------------------------- round trips

def test_every_fixture_text_file_has_a_format() -> None:
    found = {
        p.relative_to(FIXTURES).as_posix()
        for p in FIXTURES.rglob("*") if p.suffix in {".txt", ".srt"}
    }
    assert found == set(FORMATS) | PLAIN


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_fixture_round_trips_byte_for_byte(name: str, tmp_path: Path) -> None:
    # No normalisation at all: final newline (or its absence), blank lines, comments,
    # column alignment and number spellings all come back as they were.
    parse, fmt, read = FORMATS[name]
    data = (FIXTURES / name).read_bytes()
    value = parse(data.decode("utf-8"), source=name)
    assert fmt(value).encode("utf-8") == data
    assert read(FIXTURES / name) == value
    out = WRITERS[fmt](tmp_path / Path(name).name, value)
    assert out.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == [Path(name).name]  # no temp file left behind


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_fixture_canonical_spelling_keeps_the_values(name: str) -> None:
    parse, fmt, _ = FORMATS[name]
    value = parse(fixture_text(name), source=name)
    canonical = fmt(without_raw(value))
    assert parse(canonical, source="canonical") == value


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_fixture_round_trips_with_crlf(name: str) -> None:
    parse, fmt, _ = FORMATS[name]
    crlf = fixture_text(name).replace("\n", "\r\n")
    value = parse(crlf, source=name)
    assert value == parse(fixture_text(name), source=name)
    assert fmt(value) == crlf


# ---------------------------------------------------------------- the story, semantically

def test_audio_story_speakers_match_voice_map() -> None:
    s = story("gen.audio/input/1.story.txt")
    voices = F.read_voice_map(FIXTURES / "gen.audio/input/1.story.speakers.txt")
    assert len(s.utterances) == 210
    assert s.speakers() == (
        "male_doctor_watson", "male_detective_holmes", "female_housekeeper_mrs_hudson",
        "male_nobleman_mr_ashcroft", "female_housekeeper_mrs_dalrymple", "male_mysterious_scientist",
    )
    assert set(s.speakers()) == set(voices.speakers())
    assert voices.voice_for("female_housekeeper_mrs_dalrymple") == "ayesha_en"
    assert [F.gender_of(t) for t in s.speakers()] == ["m", "m", "f", "m", "f", "m"]
    assert s.scenes() == () and s.parts() == () and s.locations() == {}
    assert s.utterances[0].line_no == 1 and s.utterances[-1].line_no == 210
    rtl = next(u for u in s.utterances if u.line_no == 192)
    assert "سرعة" in rtl.text  # Arabic inside English text is kept as is


def test_image_story_quoted_text_and_keyed_attributes() -> None:
    s = story("gen.image/input/1.story.txt")
    assert len(s.utterances) == 56 and all(u.scene is not None for u in s.utterances)
    first = s.utterances[0]
    assert first.text.startswith("It was upon a crisp winter morning")
    assert first.text.endswith("adult folly.")  # the `"...";` wrapper is not spoken
    scene = first.scene
    assert scene is not None and scene.scene_id == "scene_1.1" and scene.line_no == 2
    assert (scene.part, scene.index) == (1, 1)
    assert (scene.location_id, scene.location_description) == ("loc_1", "Victorian sitting room sofa fireplace")
    assert scene.setting == (F.Attribute("Weather/Season/Time", "sunny winter morning"),)
    (watson,) = scene.characters
    assert watson.tag == "male_doctor_watson"
    assert watson.attribute("body posture") == "sitting"
    assert watson.attribute("Facial Expression") == "contemplative"
    assert s.parts() == (1, 2, 3)
    locations = F.read_locations(FIXTURES / "gen.image/input/2.location.txt")
    assert set(s.locations()) == set(locations.keys()) == {f"loc_{n}" for n in range(1, 7)}
    characters = F.read_characters(FIXTURES / "gen.image/input/2.character.txt")
    assert set(characters.keys()) == set(s.characters())
    scenes = F.read_scenes(FIXTURES / "gen.image/input/3.scene.txt")
    assert [x.scene_id for x in scenes.scenes] == [x.scene_id for x in s.scenes()]
    assert scenes.scenes[0].location_description is None  # 3.scene.txt mentions loc_1 bare
    assert scenes.parts() == s.parts()


def test_video_story_quirks() -> None:
    s = story()
    assert len(s.utterances) == 85 and len(s.scenes()) == 85
    assert s.speakers() == ("male_doctor_watson", "male_detective_holmes", "female_lady_unknown", "unknown_male_shadow")
    assert F.gender_of("unknown_male_shadow") == "m" and F.gender_of("female_lady_unknown") == "f"
    # `[tag]text` with no space after the tag
    no_space = next(u for u in s.utterances if u.line_no == 106)
    assert no_space.text.startswith("The cab wheels rattled")
    # a tag alone on its line, the words on the next one
    split = next(u for u in s.utterances if u.line_no == 163)
    assert split.speaker == "male_doctor_watson" and split.text.startswith("The first rays of dawn")
    assert split.scene is not None and split.scene.line_no == 165
    # first mention describes a location, later ones are bare
    assert s.scenes()[1].location_id == "loc_1" and s.scenes()[1].location_description is None
    assert s.locations()["loc_1"].startswith("A British Victorian living room")
    assert len(s.locations()) == 26 and all(s.locations().values())
    assert s.parts() == (1, 2, 3, 4, 5)
    # `{setting}, ((tag))` with a comma instead of `;`, and a free setting with a comma in it
    odd = next(x for x in s.scenes() if x.scene_id == "scene_4.12")
    assert odd.setting == (F.Attribute(None, "Late Morning, Sunlight Piercing Fog"),)
    assert odd.character_tags() == ("female_lady_unknown", "male_detective_holmes", "male_doctor_watson")
    assert odd.characters[0].text == "Joyful, Leaning forward, Lifting journal"


def test_scene_ids_give_parts_and_motion_ids() -> None:
    motions = F.read_motions(FIXTURES / "gen.video/input/2.motion.txt")
    assert len(motions.entries) == 35
    assert F.scene_id_for("motion_2.18") == "scene_2.18" and F.motion_id_for("scene_2.18") == "motion_2.18"
    assert {F.scene_id_for(k) for k in motions.keys()} <= {x.scene_id for x in story().scenes()}
    assert motions.get("motion_1.1", ).startswith("{The person")  # prose: an unclosed { is not markup


# ---------------------------------------------------------------- timelines, srt, chapters

def test_timelines_add_up_to_the_audio_length() -> None:
    srt = F.read_srt(FIXTURES / "gen.audio/input/2.story.srt")
    timeline = F.read_timeline(FIXTURES / "gen.audio/input/2.timeline.txt")
    timing = F.read_timeline(FIXTURES / "gen.audio/input/3.timing.txt")
    sfx = F.read_timeline(FIXTURES / "gen.audio/input/4.sfx.txt")
    assert len(srt.cues) == len(timeline.entries) == len(timing.entries) == 481
    assert all(c.index is None for c in srt.cues)  # the seed writes SRT without cue numbers
    assert srt.cues[1] == F.Cue(None, 2.919, 6.82, "the sort of afternoon where even the restless pulse of London")
    length = srt.cues[-1].end
    for t in (timeline, timing, sfx):
        assert math.isclose(t.total(), length, abs_tol=0.01)
    assert timeline.entries[0] == F.TimelineEntry(2.92, "It was a languid summer afternoon in Baker Street,")
    assert timing.entries[2].text == "Silence"
    starts = timeline.starts()
    assert starts[0] == 0 and math.isclose(starts[2], 2.92 + 3.9)
    assert F.timeline_total(timeline.entries) == timeline.total()


def test_timeline_script_pauses_and_scenes() -> None:
    script = F.read_timeline_script(FIXTURES / "gen.audio/input/2.timeline.script.txt")
    pause = script.entries[4]
    assert pause.is_pause and pause.line_no == 5 and pause.seconds == 1.6 and pause.text == ".."
    assert sum(e.is_pause for e in script.entries) == 28
    s = story()
    utterances = {(u.speaker, u.text) for u in s.utterances}
    scene_ids = {x.scene_id for x in s.scenes()}
    for entry in script.entries:
        if entry.is_pause:
            assert entry.scene() is None
            continue
        assert entry.scene_id in scene_ids
        assert (entry.speaker, entry.text) in utterances
        scene = entry.scene()
        assert scene is not None and scene.scene_id == entry.scene_id and scene.location_id in s.locations()


def test_chapters_fixture() -> None:
    chapters = F.read_chapters(FIXTURES / "gen.audio/input/12.chapters.txt").chapters
    assert [c.percent for c in chapters] == [20, 40, 60, 80, 100]
    assert chapters[0].title == "The Urgent Visitor"
    assert chapters[0].summary.endswith("deep dread in the叙述")  # CJK kept as is
    assert chapters[-1].title == "Justice and Reflection"


# ---------------------------------------------------------------- editing keeps the file's look

def test_edited_values_keep_their_file_spelling() -> None:
    name = "gen.audio/input/2.timeline.txt"
    timeline = F.read_timeline(FIXTURES / name)
    edited = dataclasses.replace(timeline, entries=(dataclasses.replace(timeline.entries[0], seconds=3.5),) + timeline.entries[1:])
    lines = F.format_timeline(edited).split("\n")
    assert lines[0] == "3.500000: It was a languid summer afternoon in Baker Street,"
    assert lines[1:] == fixture_text(name).split("\n")[1:]

    s = story("gen.image/input/1.story.txt")
    changed = dataclasses.replace(s.utterances[0], text="Changed words.")
    text = F.format_story(dataclasses.replace(s, utterances=(changed,) + s.utterances[1:]))
    assert text.split("\n")[0] == '[male_doctor_watson] "Changed words.";'
    assert text.split("\n")[1:] == fixture_text("gen.image/input/1.story.txt").split("\n")[1:]

    v = story()
    changed = dataclasses.replace(v.utterances[0], speaker="male_narrator")
    assert F.format_story(dataclasses.replace(v, utterances=(changed,) + v.utterances[1:])).startswith("[male_narrator] It was one")


def test_new_files_are_written_in_canonical_form(tmp_path: Path) -> None:
    scene = F.Scene(
        "scene_2.3", "loc_4", "Dock at night", (F.Attribute(None, "Fog"),),
        (F.SceneCharacter("male_a", (F.Attribute("Pose", "standing"), F.Attribute(None, "Waving"))),),
    )
    new = F.Story((F.Utterance("male_a", "Hello.", scene), F.Utterance("female_b", "Hi.")))
    text = F.format_story(new)
    assert text == (
        "[male_a] Hello.\n"
        "(scene_2.3) {{loc_4, Dock at night}}, {Fog}; ((male_a)){Pose: standing}{Waving};\n"
        "\n"
        "[female_b] Hi.\n"
    )
    assert F.parse_story(text, source="new") == new
    assert F.format_scenes(F.SceneList((scene,))) == text.split("\n")[1] + "\n"

    assert F.format_seconds(2.92) == "2.920" and F.format_seconds(-0.0) == "0.000"
    assert F.format_seconds(1 / 3, places=6) == "0.333333"
    with pytest.raises(ValueError):
        F.format_seconds(float("nan"))
    entries = (F.TimelineEntry(2.92, "Silence"), F.TimelineEntry(0.0005, "x"))
    assert F.format_timeline(F.Timeline(entries)) == "2.920: Silence\n0.001: x\n"
    script = F.ScriptTimeline((
        F.ScriptEntry(1.5, "scene_1.1", "{{loc_1}}, {Fog};", "male_a", "Hello."),
        F.ScriptEntry(0.4, None, None, None, "."),
    ))
    assert F.format_timeline_script(script) == "1.500: scene_1.1 = {{loc_1}}, {Fog};, male_a = Hello.\n0.400 : .\n"

    srt = F.Srt((F.Cue(1, 0, 1.5, "One"), F.Cue(2, 1.5, 3661.25, "Two\nlines")))
    srt_text = F.format_srt(srt)
    assert srt_text == "1\n00:00:00,000 --> 00:00:01,500\nOne\n\n2\n00:00:01,500 --> 01:01:01,250\nTwo\nlines\n\n"
    assert F.parse_srt(srt_text, source="new") == srt

    chapters = F.Chapters((F.Chapter(50, "First"), F.Chapter(100, "Last", "It ends.")))
    assert F.format_chapters(chapters) == "50%: First\n100%: Last\nSHORT_SUMMARY : It ends.\n"

    voices = F.VoiceMap((F.VoiceEntry("male_a", "alok_en"), F.VoiceEntry("female_longer_tag", "aisha_en")))
    path = F.write_voice_map(tmp_path / "1.story.speakers.txt", voices, header=("Generated by a test",))
    assert path.read_text() == (
        "# Generated by a test\n\nmale_a             alok_en\nfemale_longer_tag  aisha_en\n"
    )
    assert F.read_voice_map(path).comments() == ("Generated by a test",)

    chars = F.Descriptions("character", (F.Description("male_a", "Tall."),))
    locs = F.Descriptions("location", (F.Description("loc_1", "A room."),))
    motions = F.Descriptions("motion", (F.Description("motion_1.1", "Pan left."),))
    assert F.format_descriptions(chars) == "((male_a)): Tall.\n"
    assert F.format_descriptions(locs) == "{{loc_1}} A room.\n"
    assert F.format_descriptions(motions) == "(motion_1.1) Pan left.\n"


def test_constructors_refuse_values_that_cannot_be_written() -> None:
    with pytest.raises(ValueError):
        F.Utterance("Male_A", "x")
    with pytest.raises(ValueError):
        F.Utterance("male_a", "two\nlines")
    with pytest.raises(ValueError):
        F.Scene("scene_1")
    with pytest.raises(ValueError):
        F.Cue(None, 2.0, 1.0, "backwards")
    with pytest.raises(ValueError):
        F.Descriptions("location", (F.Description("room_1", "x"),))
    with pytest.raises(ValueError):
        F.VoiceEntry("male_a", "../../etc/passwd")
    with pytest.raises(ValueError):
        F.parse_descriptions("x", source="d", kind="prop")


# ---------------------------------------------------------------- hostile input

def error_of(parse: Callable[..., Any], text: str, source: str = "1.story.txt") -> str:
    with pytest.raises(InputError) as caught:
        parse(text, source=source)
    return str(caught.value)


@pytest.mark.parametrize("text", ["", "\n", "  \n\n\t\n", "\r\n\r\n", "\ufeff"])
def test_empty_story_is_an_error(text: str) -> None:
    message = error_of(F.parse_story, text)
    assert message.startswith("1.story.txt: the story is empty")


def test_malformed_speaker_line_names_file_line_and_fix() -> None:
    text = "\n".join(f"[male_a] line {n}." for n in range(1, 7)) + "\nHolmes said nothing at all.\n"
    message = error_of(F.parse_story, text)
    assert message == (
        '1.story.txt line 7: expected "[speaker_tag] text" but found "Holmes said nothing at all."; '
        "fix the line or remove it."
    )


@pytest.mark.parametrize(("text", "line", "expected"), [
    ("[Male_Doctor] Hi.\n", 1, 'write "male_doctor" instead of "Male_Doctor"'),
    ("[male doctor] Hi.\n", 1, "is not a speaker tag"),
    ("[] Hi.\n", 1, "speaker tag is empty"),
    ("[male_a Hi.\n", 1, 'unbalanced "["'),
    ("[male_a]\n", 1, '"[male_a]" has no text'),
    ("[male_a]\n\n[male_b] Hi.\n", 1, '"[male_a]" has no text'),
    ('[male_a] "";\n', 1, "has no text"),
    ("(scene_1.1) {{loc_1}};\n[male_a] Hi.\n", 1, "scene line comes before any utterance"),
    ("[male_a] Hi.\n(scene_1.1) {{loc_1, room};\n", 2, 'unbalanced "{{"'),
    ("[male_a] Hi.\n(scene_1.1) {{loc_1}}; ((male_a){Calm};\n", 2, 'unbalanced "(("'),
    ("[male_a] Hi.\n(scene_1.1) {{loc_1}}, {Fog;\n", 2, 'unbalanced "{"'),
    ("[male_a] Hi.\n(scene_1.1) {{loc_1}}, {Fog}};\n", 2, 'unbalanced "}"'),
    ("[male_a] Hi.\n(scene_1.1) {{loc_1}}, Fog;\n", 2, 'text "Fog" at column 24 of the scene line: scene lines hold only'),
    ("[male_a] Hi.\n(scene_1.1) {Fog}, {{loc_1}};\n", 2, "must come first"),
    ("[male_a] Hi.\n(scene_1.1) {{kitchen}};\n", 2, "is not a location"),
    ("[male_a] Hi.\n(scene_1.1) ((Holmes)){x};\n", 2, "speaker tags are lowercase"),
    ("[male_a] Hi.\n(scene_one) {{loc_1}};\n", 2, "is not a scene id"),
    ("[male_a] Hi.\n(scene_1.1) {{loc_1}};\n(scene_1.2) {{loc_1}};\n", 3, "second scene line for the utterance on line 1"),
    ("[male_a] Hi.\n(scene_1.1) {{loc_1}};\n[male_a] Ho.\n(scene_1.1) {{loc_1}};\n", 4, "already used on line 2"),
    ("[male_a] Hi.\n{{loc_1}} a room\n", 2, "unknown markup"),
    ("[male_a] Hi.\n((male_a)): tall\n", 2, "unknown markup"),
])
def test_story_errors(text: str, line: int, expected: str) -> None:
    message = error_of(F.parse_story, text)
    assert message.startswith(f"1.story.txt line {line}: ")
    assert expected in message


def test_scene_error_names_the_column() -> None:
    message = error_of(F.parse_story, "[male_a] Hi.\n(scene_1.1) {{loc_1}}, {Fog;\n")
    assert 'unbalanced "{" at column 24 of the scene line' in message


@pytest.mark.parametrize(("reader", "content"), [
    (F.read_story, "[male_a] Fine.\n[male_b] caf\xe9 au lait\n"),
    (F.read_voice_map, "# map\nmale_a  caf\xe9\n"),
    (F.read_timeline, "1.0: ok\n2.0: caf\xe9\n"),
    (F.read_srt, "00:00:00,000 --> 00:00:01,000\ncaf\xe9\n"),
])
def test_non_utf8_names_file_and_line(tmp_path: Path, reader: Callable[[Path], Any], content: str) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(InputError) as caught:
        reader(path)
    assert str(caught.value).startswith(f"{path} line 2: byte 0xe9")
    assert "not UTF-8" in str(caught.value)


def test_missing_and_folder_inputs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        F.read_story(tmp_path / "1.story.txt")
    with pytest.raises(InputError, match="is a folder"):
        F.read_story(tmp_path)


def test_rtl_emoji_and_unicode_line_separators_are_text() -> None:
    text = "[male_a] مرحبا 👋🏽 שלום\n[female_b] one\u2028still one line \u00e9\u0301\n"
    s = F.parse_story(text, source="s")
    assert [u.text for u in s.utterances] == ["مرحبا 👋🏽 שלום", "one\u2028still one line \u00e9\u0301"]
    assert F.format_story(s) == text


def test_crlf_bom_and_blank_lines() -> None:
    lf = "[male_a] Hi.\n\n\n   \n[female_b] Ho.\n\n"
    crlf = "\ufeff" + lf.replace("\n", "\r\n")
    a, b = F.parse_story(lf, source="lf"), F.parse_story(crlf, source="crlf")
    assert a == b and [u.line_no for u in b.utterances] == [1, 5]
    assert F.format_story(b) == crlf and F.format_story(a) == lf


def test_quotes_and_colons_around_speech() -> None:
    text = '[male_a] "Hi," he said, "bye."\n[male_b] "Wrapped";\n[male_c] "Just quoted"\n[male_d]: Colon.\n[male_e]:-) smile\n'
    s = F.parse_story(text, source="s")
    assert [u.text for u in s.utterances] == ['"Hi," he said, "bye."', "Wrapped", "Just quoted", "Colon.", ":-) smile"]
    assert F.format_story(s) == text


@pytest.mark.parametrize(("parse", "text", "line", "expected"), [
    (F.parse_timeline, "1.0: a\nabc: b\n", 2, 'expected "<seconds>: <text>"'),
    (F.parse_timeline, "-1.0: a\n", 1, 'expected "<seconds>: <text>"'),
    (F.parse_timeline, "1,5: a\n", 1, 'expected "<seconds>: <text>"'),
    (F.parse_timeline_script, "1.0: scene_1.1 = {{loc_1}};\n", 1, "<scene_id> = <scene description>"),
    (F.parse_timeline_script, "1.0 : ..x\n", 1, "or a pause"),
    (F.parse_srt, "1\n00:00:01 --> 00:00:02\nHi\n", 2, "expected a subtitle timing"),
    (F.parse_srt, "00:00:02,000 --> 00:00:01,000\nHi\n", 1, "ends (00:00:01,000) before it starts"),
    (F.parse_chapters, "SHORT_SUMMARY : orphan\n", 1, 'no "NN%: Title" line before it'),
    (F.parse_chapters, "50%: A\n40%: B\n", 2, "does not come after the previous chapter's 50%"),
    (F.parse_chapters, "150%: A\n", 1, "more than 100%"),
    (F.parse_chapters, "50%:\n", 1, "has no title"),
    (F.parse_chapters, "50%: A\nSHORT_SUMMARY : a\nSHORT_SUMMARY : b\n", 3, 'no "NN%: Title" line before it'),
    (F.parse_chapters, "Intro at the start\n", 1, 'expected "NN%: Title"'),
    (F.parse_voice_map, "male_a\n", 1, 'expected "<speaker_tag>  <voice_stem>"'),
    (F.parse_voice_map, "male_a alok_en extra\n", 1, 'expected "<speaker_tag>  <voice_stem>"'),
    (F.parse_voice_map, "male_a alok_en\nmale_a ramesh_en\n", 2, "already has a voice on line 1"),
    (F.parse_voice_map, "male_a ../alok_en\n", 1, "is not a voice file stem"),
    (F.parse_voice_map, "Male_A alok_en\n", 1, "speaker tags are lowercase"),
    (F.parse_characters, "((male_a)): tall\n((male_a)): short\n", 2, "already described on line 1"),
    (F.parse_characters, "((male_a)):\n", 1, "has no description"),
    (F.parse_characters, "male_a: tall\n", 1, 'expected "((speaker_tag)): description"'),
    (F.parse_locations, "{{kitchen}} a room\n", 1, "is not a location id"),
    (F.parse_locations, "{{loc_1 a room\n", 1, 'expected "{{loc_<n>}} description"'),
    (F.parse_motions, "(scene_1.1) pan\n", 1, "is not a motion id"),
    (F.parse_scenes, "[male_a] Hi.\n", 1, 'expected a scene line "(scene_<part>.<n>) ..."'),
    (F.parse_scenes, "(scene_1.1) {{loc_1}};\n\n(scene_1.1) {{loc_2}};\n", 3, "already used on line 1"),
    (F.parse_scenes, "(scene_1.1) {{loc_1}}, {a}} ;\n", 1, 'unbalanced "}"'),
])
def test_other_format_errors(parse: Callable[..., Any], text: str, line: int, expected: str) -> None:
    message = error_of(parse, text, source="f.txt")
    assert message.startswith(f"f.txt line {line}: ")
    assert expected in message


def test_lenient_where_safe() -> None:
    voices = F.parse_voice_map("male_a\talok_en   # a comment\n", source="v")
    assert voices.as_dict() == {"male_a": "alok_en"}
    srt = F.parse_srt("00:00:00.500 --> 00:00:01.000\nDot separated\n\n\n", source="s")
    assert srt.cues == (F.Cue(None, 0.5, 1.0, "Dot separated"),)
    assert F.format_srt(srt) == "00:00:00.500 --> 00:00:01.000\nDot separated\n\n\n"
    added = dataclasses.replace(srt, cues=srt.cues + (F.Cue(None, 1.0, 2.0, "Added"),))
    assert F.parse_srt(F.format_srt(added), source="s") == added  # a blank line separates added cues
    chapters = F.parse_chapters("25%: Only a title\n\n100%: End\n", source="c")
    assert [c.summary for c in chapters.chapters] == [None, None]
    assert F.format_chapters(chapters) == "25%: Only a title\n\n100%: End\n"
    assert F.parse_timeline("", source="t").entries == ()
    assert F.gender_of("narrator") is None and F.gender_of("woman_in_red") == "f"
