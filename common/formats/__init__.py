"""Readers and writers for the pipeline's text files (SPEC section 5), as the seed writes them.

Every format has `parse_*(text, *, source)`, `read_*(path)`, `format_*(value) -> str` and
`write_*(path, value)` (atomic). Parsed values are frozen dataclasses; a value parsed from a
file and written back unchanged gives the same bytes, because each line keeps its original
spelling (`raw`, reused only while it still says the same) and each file its layout
(blank lines, comments, CRLF, final newline, BOM). Malformed input raises InputError
naming the file, the 1-based line and what was expected.
"""
from common.formats._text import TAG_PATTERN, Layout
from common.formats.chapters import Chapter, Chapters, format_chapters, parse_chapters, read_chapters, write_chapters
from common.formats.descriptions import (
    Description, Descriptions, format_descriptions, motion_id_for, parse_characters,
    parse_descriptions, parse_locations, parse_motions, read_characters, read_descriptions,
    read_locations, read_motions, scene_id_for, write_descriptions,
)
from common.formats.speakers import VoiceEntry, VoiceMap, format_voice_map, parse_voice_map, read_voice_map, write_voice_map
from common.formats.srt import Cue, Srt, format_srt, parse_srt, read_srt, srt_timestamp, write_srt
from common.formats.story import (
    Attribute, Scene, SceneCharacter, SceneList, Story, Utterance, format_scene_line,
    format_scenes, format_story, gender_of, parse_scene_line, parse_scenes, parse_story,
    read_scenes, read_story, write_scenes, write_story,
)
from common.formats.timeline import (
    ScriptEntry, ScriptTimeline, Timeline, TimelineEntry, format_seconds, format_timeline,
    format_timeline_script, parse_timeline, parse_timeline_script, read_timeline,
    read_timeline_script, timeline_total, write_timeline, write_timeline_script,
)
