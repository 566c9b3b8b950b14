"""9.media.py and common.publish.metadata: YouTube's rules for titles, descriptions, chapters and tags."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from common.run.errors import InputError
from common.formats.chapters import read_chapters
from common.formats.story import read_story
from common.publish.metadata import (
    AudioTimeline, ChapterMark, chapter_marks, chapter_start_lines, clean_tag, compose_description,
    fit_tags, format_timestamp, load_timeline, parse_tags, plan_chapters, read_tags, tag_cost, tags_length,
    title_problem,
)
from tests.fakes.llm_helpers import start_fake_llm
from tests.support.project import copy_pipeline, env_for, run_script

OFFLINE = env_for(PIPELINE_ENGINE="offline")
_STAMP = re.compile(r"^(?:(\d+):)?(\d+):(\d\d) (\S.*)$")


def youtube_chapters(description: str) -> list[tuple[int, str]]:
    """The chapter lines of a description, read the way YouTube reads them (independently of our code)."""
    found = []
    for line in description.splitlines():
        match = _STAMP.match(line)
        if match:
            hours, minutes, seconds = int(match.group(1) or 0), int(match.group(2)), int(match.group(3))
            assert seconds < 60 and (not match.group(1) or minutes < 60), line
            found.append((hours * 3600 + minutes * 60 + seconds, match.group(4)))
    return found


def assert_youtube_accepts(chapters: list[tuple[int, str]], duration: float) -> None:
    assert len(chapters) >= 3, chapters
    assert chapters[0][0] == 0
    ends = [start for start, _ in chapters[1:]] + [int(duration)]
    for (start, title), end in zip(chapters, ends):
        assert end - start >= 10, (title, start, end)
        assert title.strip() and "<" not in title and ">" not in title


def synthetic_timings(story_file: Path, out: Path, chars_per_second: float = 15.0, pause: float = 0.3) -> float:
    """A story.timings.json as 2.story.py writes it, with lines timed by their length."""
    story = read_story(story_file)
    lines, at = [], 0.0
    for number, utterance in enumerate(story.utterances, start=1):
        end = at + len(utterance.text) / chars_per_second
        lines.append({"line": number, "speaker": utterance.speaker, "text": utterance.text, "start": round(at, 4),
                      "end": round(end, 4), "chunk": "x", "timing": "exact"})
        at = end + pause
    duration = round(lines[-1]["end"], 4)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"story_wav": "story.wav", "duration": duration, "lines": lines}), encoding="utf-8")
    return duration


def fixture_pipeline(tmp_path: Path, fixtures_dir: Path) -> tuple[Path, float]:
    """gen.audio with the seed system's own inputs and a synthetic audio timeline (no audio needed)."""
    pipeline = copy_pipeline(tmp_path)
    source = fixtures_dir / "gen.audio" / "input"
    for name in ("1.story.txt", "9.summary.txt", "10.title.txt", "12.chapters.txt", "10.thumbnail.txt"):
        shutil.copy2(source / name, pipeline / "input" / name)
    duration = synthetic_timings(pipeline / "input" / "1.story.txt", pipeline / "output" / "story.timings.json")
    return pipeline, duration


# ---------------------------------------------------------------- rules, as units

def test_tags_are_counted_the_way_youtube_counts_them() -> None:
    assert tag_cost("Foo-Baz") == 7 and tag_cost("Foo Baz") == 9  # the API reference's own example
    assert tags_length(["Foo Baz", "Foo-Baz", "x"]) == 9 + 7 + 1 + 2
    assert tags_length([]) == 0
    many = [f"tag number {i}" for i in range(200)]
    fitted = fit_tags(many)
    assert 480 < tags_length(fitted) <= 500
    assert fitted == many[: len(fitted)]  # order kept: most important first


def test_tags_are_cleaned_and_deduplicated() -> None:
    assert clean_tag('<"Sherlock, Holmes">') == "Sherlock Holmes"
    assert clean_tag("#mystery") == "mystery"
    assert clean_tag("x") is None and clean_tag("a" * 31) is None
    tags = fit_tags(["Mystery", "mystery", "MYSTERY ", "a" * 40, "Baker Street", "<>", "ok"])
    assert tags == ["Mystery", "Baker Street", "ok"]
    assert parse_tags("a, b\nc d\n\n") == ["a", "b", "c d"]


def test_title_rules() -> None:
    assert title_problem("The Crimson Rose of Rosemund Valley") is None
    assert title_problem("x" * 100) is None
    assert "101" in title_problem("x" * 101)
    assert title_problem("A <b>bold</b> title")
    assert title_problem("   ")
    assert title_problem("two\nlines")


def test_timestamps_use_youtube_forms() -> None:
    assert [format_timestamp(s) for s in (0, 9, 75, 3599, 3600, 3725)] == ["0:00", "0:09", "1:15", "59:59", "1:00:00", "1:02:05"]


def test_fixture_chapters_on_a_synthetic_timeline(fixtures_dir: Path) -> None:
    story = read_story(fixtures_dir / "gen.audio" / "input" / "1.story.txt")
    chapters = read_chapters(fixtures_dir / "gen.audio" / "input" / "12.chapters.txt")
    starts = [float(i) * 7.0 for i in range(len(story.utterances))]
    timeline = AudioTimeline(len(story.utterances) * 7.0, tuple(starts))
    marks, how = chapter_marks(story, chapters, timeline)
    assert how == "lines"
    assert [m.title for m in marks] == [c.title for c in chapters.chapters]
    lines = chapter_start_lines(story, chapters)
    assert [m.start for m in marks] == [int(starts[i]) for i in lines] and lines[0] == 0
    # Each chapter begins at the line where the previous one's share of the text ends (20%, 40%, ...).
    total = sum(len(u.text) for u in story.utterances)
    for chapter, line in zip(chapters.chapters, lines[1:]):
        share = 100 * sum(len(u.text) for u in story.utterances[:line]) / total
        assert abs(share - chapter.percent) < 2
    assert_youtube_accepts([(m.start, m.title) for m in marks], timeline.duration)


def test_short_chapters_merge_and_few_chapters_split() -> None:
    # A short chapter joins its shorter neighbour; the longer of the two names the result.
    merged = plan_chapters([0, 50, 53, 120, 124, 200], ["Intro", "Blip", "Middle", "Flash", "Late", "End"], 300)
    assert [(m.start, m.title) for m in merged] == [(0, "Intro"), (53, "Middle"), (124, "Late"), (200, "End")]
    assert [m.title for m in plan_chapters([0, 4, 60, 200], ["Cold open", "Arrival", "Middle", "End"], 300)][0] == "Arrival"
    one = plan_chapters([0], ["The Whole Story"], 120, line_starts=[0, 13.5, 31, 58.2, 71, 90, 104])
    assert [m.title for m in one] == ["The Whole Story (part 1)", "The Whole Story (part 2)", "The Whole Story (part 3)"]
    assert all(m.start in (0, 13, 31, 58, 71, 90, 104) for m in one)
    assert_youtube_accepts([(m.start, m.title) for m in one], 120)
    no_lines = plan_chapters([0, 50], ["A", "B"], 100)
    assert len(no_lines) == 3 and no_lines[0].start == 0
    assert plan_chapters([0, 10, 20], ["a", "b", "c"], 25) == []  # 25 s cannot hold three chapters of 10 s
    late = plan_chapters([3, 1800, 4000], ["a", "b", "c"], 5000)
    assert [format_timestamp(m.start) for m in late] == ["0:00", "30:00", "1:06:40"]


def test_timings_that_do_not_match_the_story_fall_back_to_percentages(fixtures_dir: Path) -> None:
    story = read_story(fixtures_dir / "gen.audio" / "input" / "1.story.txt")
    chapters = read_chapters(fixtures_dir / "gen.audio" / "input" / "12.chapters.txt")
    marks, how = chapter_marks(story, chapters, AudioTimeline(1000.0, (0.0, 5.0)))
    assert how == "percent"
    assert [m.start for m in marks] == [0, 200, 400, 600, 800]


def test_description_stays_under_5000_bytes_and_keeps_every_chapter() -> None:
    marks = [ChapterMark(i * 60, f"Chapter {i} — über den Wolken") for i in range(30)]
    huge = "Ein sehr langer Satz über alles, was geschah. " * 400
    text = compose_description(huge, [huge] * 40, marks)
    assert len(text.encode("utf-8")) <= 5000
    assert [(m.start, m.title) for m in marks] == youtube_chapters(text)
    small = compose_description("A hook. Second. Third sentence.", ["one", "two", "three"], marks[:3])
    assert small.startswith("A hook. Second.\n\n\u2022 one\n\u2022 two\n\u2022 three\n\nChapters:\n0:00 ")
    with pytest.raises(InputError, match="chapter list"):
        compose_description("", [], [ChapterMark(i * 10, "x" * 60) for i in range(200)])


def test_load_timeline_reports_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="2.story.py"):
        load_timeline(tmp_path)
    (tmp_path / "story.timings.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="run 2.story.py again"):
        load_timeline(tmp_path)


# ---------------------------------------------------------------- 9.media.py, as a user runs it

def test_fixture_inputs_are_accepted_and_kept(tmp_path: Path, fixtures_dir: Path) -> None:
    pipeline, duration = fixture_pipeline(tmp_path, fixtures_dir)
    thumbnail_before = (pipeline / "input" / "10.thumbnail.txt").read_bytes()
    result = run_script(pipeline, "9.media.py", env=OFFLINE, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept input/10.thumbnail.txt" in result.stdout
    assert (pipeline / "input" / "10.thumbnail.txt").read_bytes() == thumbnail_before
    assert (pipeline / "input" / "10.title.txt").read_text() == "The Crimson Rose of Rosemund Valley"
    description = (pipeline / "output" / "description.txt").read_text(encoding="utf-8")
    chapters = youtube_chapters(description)
    assert [t for _, t in chapters] == ["The Urgent Visitor", "Journey to the Valley", "The Secret Lab",
                                        "Confrontation in Shadows", "Justice and Reflection"]
    assert_youtube_accepts(chapters, duration)
    assert len(description.encode("utf-8")) <= 5000 and "<" not in description
    tags = read_tags(pipeline / "output" / "tags.txt")
    assert tags and tags_length(tags) <= 500 and all(len(t) <= 30 for t in tags)
    assert "Rosemund Valley" in tags


def test_a_title_youtube_would_refuse_is_repaired(tmp_path: Path, fixtures_dir: Path) -> None:
    pipeline, _ = fixture_pipeline(tmp_path, fixtures_dir)
    (pipeline / "input" / "10.title.txt").write_text("The <Crimson> Rose " + "x" * 120, encoding="utf-8")
    result = run_script(pipeline, "9.media.py", env=OFFLINE, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    title = (pipeline / "input" / "10.title.txt").read_text().strip()
    assert title_problem(title) is None and title.startswith("The Crimson Rose")


def test_a_huge_summary_still_gives_a_description_youtube_takes(tmp_path: Path, fixtures_dir: Path) -> None:
    pipeline, duration = fixture_pipeline(tmp_path, fixtures_dir)
    (pipeline / "input" / "9.summary.txt").write_text("Holmes über alles und noch viel mehr " * 6000, encoding="utf-8")
    result = run_script(pipeline, "9.media.py", env=OFFLINE, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    description = (pipeline / "output" / "description.txt").read_text(encoding="utf-8")
    assert len(description.encode("utf-8")) <= 5000
    assert_youtube_accepts(youtube_chapters(description), duration)


def test_missing_chapters_is_one_sentence(tmp_path: Path, fixtures_dir: Path) -> None:
    pipeline, _ = fixture_pipeline(tmp_path, fixtures_dir)
    (pipeline / "input" / "12.chapters.txt").unlink()
    result = run_script(pipeline, "9.media.py", env=OFFLINE, timeout=60)
    assert result.returncode == 3
    assert "12.chapters.txt" in result.stderr and "1.character.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_sample_story_offline_then_rerun_is_a_no_op(tmp_path: Path) -> None:
    pipeline = copy_pipeline(tmp_path)
    for step in ("1.character.py", "2.story.py", "9.media.py"):
        result = run_script(pipeline, step, env=OFFLINE, timeout=120)
        assert result.returncode == 0, step + result.stdout + result.stderr
    timings = json.loads((pipeline / "output" / "story.timings.json").read_text())
    description = (pipeline / "output" / "description.txt").read_text(encoding="utf-8")
    chapters = youtube_chapters(description)
    assert_youtube_accepts(chapters, timings["duration"])
    # The story has three parts: chapters 2 and 3 start where their parts' first lines start.
    line_starts = {int(line["start"]) for line in timings["lines"]}
    assert all(start in line_starts for start, _ in chapters)
    prompt = (pipeline / "input" / "10.thumbnail.txt").read_text(encoding="utf-8")
    assert "lighthouse" in prompt and "Gull Point" in prompt
    state_file = pipeline / "output" / "tracking" / "9.media.state.json"
    state = json.loads(state_file.read_text())["items"]
    assert {"hook", "tags", "thumbnail_prompt"} <= set(state) and all(item["preview"] for item in state.values())

    outputs = [pipeline / "output" / "description.txt", pipeline / "output" / "tags.txt",
               pipeline / "input" / "10.thumbnail.txt", pipeline / "input" / "10.title.txt"]
    stamps = [p.stat().st_mtime_ns for p in outputs]
    again = run_script(pipeline, "9.media.py", env=OFFLINE, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "1 items: 0 made, 1 already done" in again.stdout and " made, 0 already" not in again.stdout
    assert [p.stat().st_mtime_ns for p in outputs] == stamps
    assert json.loads(state_file.read_text())["items"] == state

    # A hand edit survives a rerun; --force replaces it.
    (pipeline / "output" / "description.txt").write_text("My own words.\n", encoding="utf-8")
    kept = run_script(pipeline, "9.media.py", env=OFFLINE, timeout=60)
    assert "kept output/description.txt" in kept.stdout
    assert (pipeline / "output" / "description.txt").read_text() == "My own words.\n"
    forced = run_script(pipeline, "9.media.py", "--force", env=OFFLINE, timeout=60)
    assert forced.returncode == 0 and (pipeline / "output" / "description.txt").read_text() == description


def test_llm_answers_are_checkpointed(tmp_path: Path, fixtures_dir: Path) -> None:
    pipeline, duration = fixture_pipeline(tmp_path, fixtures_dir)
    (pipeline / "input" / "10.thumbnail.txt").unlink()
    with start_fake_llm(tmp_path) as llm:
        env = env_for(PIPELINE_ENGINE="offline", PIPELINE_TEXT_ENGINE="llm", LM_STUDIO_BASE_URL=llm.base_url,
                      LM_STUDIO_MODEL="auto")
        first = run_script(pipeline, "9.media.py", env=env, timeout=60)
        assert first.returncode == 0, first.stdout + first.stderr
        asked = llm.chat_count()
        second = run_script(pipeline, "9.media.py", env=env, timeout=60)
        assert second.returncode == 0, second.stderr
        assert llm.chat_count() == asked == 3  # hook, tags, thumbnail prompt; the title was kept
        prompts = [r.get("last_user", "") for r in llm.chat_requests()]
    assert any("Rosemund Valley" in p or "Crimson Rose" in p for p in prompts)
    state = json.loads((pipeline / "output" / "tracking" / "9.media.state.json").read_text())["items"]
    assert not any(item.get("preview") for item in state.values())
    assert len((pipeline / "input" / "10.thumbnail.txt").read_text().strip()) >= 150
    assert_youtube_accepts(youtube_chapters((pipeline / "output" / "description.txt").read_text()), duration)
    tags = read_tags(pipeline / "output" / "tags.txt")
    assert tags and tags_length(tags) <= 500 and all(2 <= len(t) <= 30 and "<" not in t for t in tags)


def test_a_kill_between_writing_a_file_and_its_checkpoint_does_not_make_it_look_hand_made(tmp_path: Path) -> None:
    """The process dies right after 10.thumbnail.txt is on disk, before its checkpoint: the rerun
    must know the file is its own (and record it), not keep it for ever as a person's edit."""
    pipeline = copy_pipeline(tmp_path)
    for step in ("1.character.py", "2.story.py"):
        assert run_script(pipeline, step, env=OFFLINE, timeout=120).returncode == 0
    (pipeline / "input" / "10.thumbnail.txt").unlink(missing_ok=True)
    hook = tmp_path / "die-after-write"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\nfrom common.publish import metadata\n_write = metadata.write_if_changed\n\n"
        "def write_if_changed(path, text):\n    changed = _write(path, text)\n"
        "    if path.name == '10.thumbnail.txt':\n        os._exit(137)\n    return changed\n\n"
        "metadata.write_if_changed = write_if_changed\n", encoding="utf-8")
    dying = {**OFFLINE, "PYTHONPATH": str(hook) + os.pathsep + OFFLINE["PYTHONPATH"]}
    killed = run_script(pipeline, "9.media.py", env=dying, timeout=60)
    assert killed.returncode == 137 and (pipeline / "input" / "10.thumbnail.txt").is_file()
    again = run_script(pipeline, "9.media.py", env=OFFLINE, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "kept input/10.thumbnail.txt" not in again.stdout
    state = json.loads((pipeline / "output" / "tracking" / "9.media.state.json").read_text())["items"]
    assert state["10.thumbnail.txt"]["fingerprint"] == "written"
