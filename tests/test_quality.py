"""4.quality.py: the line-by-line check on transcripts we corrupt, and --retake for real."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from common.media import ffmpeg as media
from common.run.errors import ConfigError, JobError
from common.audio.quality import (
    GARBLED, OK, REPEATED, SKIPPED, Report, assign_words, check_lines, chunk_size_of, failing_chunks,
    format_table, normalise, redo_command, similarity, verdict,
)
from common.audio.subtitles import Word, line_words, words_from_timings
from tests.support.project import REPO, env_for, run_script, spoken_pipeline

FAKE_WHISPER = REPO / "tests" / "fakes" / "fake_whisper"
THRESHOLD = 0.80

LINES = [
    {"line": 1, "speaker": "narrator", "text": "The lighthouse on Gull Point had been dark for three nights.", "start": 0.0, "end": 4.0, "chunk": "1_2"},
    {"line": 2, "speaker": "female_ada", "text": "Uncle Silas never misses a night.", "start": 4.3, "end": 6.5, "chunk": "1_2"},
    {"line": 3, "speaker": "male_bram", "text": "I saw no smoke from his chimney either, Ada.", "start": 6.8, "end": 9.6, "chunk": "3_4"},
    {"line": 4, "speaker": "narrator", "text": "The door at the foot of the tower stood open, and the stairs smelled of salt.", "start": 9.9, "end": 14.8, "chunk": "3_4"},
    {"line": 5, "speaker": "male_silas", "text": "Up here, child. Don't be frightened.", "start": 15.1, "end": 17.4, "chunk": "5_5"},
]


def heard(lines: list[dict]) -> list[Word]:
    return words_from_timings(lines)


def without_line(words: list[Word], line: int) -> list[Word]:
    return [w for w in words if w.line != line]


def replace_line(words: list[Word], entry: dict, text: str) -> list[Word]:
    kept = without_line(words, entry["line"])
    return sorted(kept + line_words(text, entry["start"], entry["end"]), key=lambda w: w.start)


def verdicts(words: list[Word]) -> dict[int, str]:
    return {c.line: c.verdict for c in check_lines(LINES, words, THRESHOLD)}


# ------------------------------------------------------------------ text comparison


def test_normalise_ignores_case_punctuation_apostrophes_and_hyphens() -> None:
    assert normalise("Don't be frightened, Mr. Holmes!") == ["dont", "be", "frightened", "mr", "holmes"]
    assert normalise("half-lidded “eyes”") == ["half", "lidded", "eyes"]
    assert normalise("Don’t") == normalise("don't") == ["dont"]


def test_similarity_and_verdicts_on_words() -> None:
    line = normalise("The door at the foot of the tower stood open")
    assert similarity(line, line) == 1.0 and similarity([], []) == 1.0
    assert verdict(line, line, THRESHOLD) == (1.0, OK)
    assert verdict(line, [], THRESHOLD)[1] == SKIPPED
    assert verdict(line, line + line, THRESHOLD)[1] == REPEATED
    one_off = normalise("The door at the foot of the power stood open")
    assert verdict(line, one_off, THRESHOLD)[1] == OK  # one misheard word is not a failure
    garbled = normalise("The bore and a foot of tea flower stood over")
    score, judged = verdict(line, garbled, THRESHOLD)
    assert judged == GARBLED and 0 < score < THRESHOLD


def test_words_are_assigned_by_their_middle_and_pauses_split_halfway() -> None:
    spans = [(0.0, 1.0), (2.0, 3.0)]
    words = [Word("a", 0.1, 0.5), Word("b", 1.1, 1.3), Word("c", 1.6, 1.9), Word("d", 2.5, 2.9), Word("e", 3.5, 3.6)]
    buckets = assign_words(spans, words)
    assert [[w.text for w in b] for b in buckets] == [["a", "b"], ["c", "d", "e"]]


# ------------------------------------------------------------------ corrupted transcripts


def test_a_faithful_transcript_passes_every_line() -> None:
    assert set(verdicts(heard(LINES)).values()) == {OK}


def test_a_skipped_line_is_found_and_names_its_chunk() -> None:
    words = without_line(heard(LINES), 3)
    checks = check_lines(LINES, words, THRESHOLD)
    assert {c.line: c.verdict for c in checks} == {1: OK, 2: OK, 3: SKIPPED, 4: OK, 5: OK}
    assert failing_chunks(checks) == ["3_4"]
    assert checks[2].heard == "" and checks[2].similarity == 0.0


def test_a_skipped_line_with_a_stray_neighbouring_word_is_still_skipped() -> None:
    words = without_line(heard(LINES), 2) + [Word("Uncle", 4.4, 4.6)]
    assert verdicts(words)[2] == SKIPPED


def test_a_repeated_line_is_found() -> None:
    entry = LINES[1]
    words = replace_line(heard(LINES), entry, f"{entry['text']} {entry['text']} {entry['text']}")
    result = verdicts(words)
    assert result[2] == REPEATED and [v for n, v in result.items() if n != 2] == [OK] * 4


def test_garbled_words_fail_the_line() -> None:
    entry = LINES[3]
    words = replace_line(heard(LINES), entry, "The floor and the boot of the power stood over, and stares melted a salt.")
    result = verdicts(words)
    assert result[4] == GARBLED and result[3] == OK and result[5] == OK


def test_timing_noise_at_line_edges_does_not_fail_lines() -> None:
    words = [Word(w.text, w.start + 0.15, w.end + 0.15) for w in heard(LINES)]
    assert set(verdicts(words).values()) == {OK}


def test_report_table_and_json() -> None:
    words = without_line(heard(LINES), 5)
    report = Report(tuple(check_lines(LINES, words, THRESHOLD)), THRESHOLD, "test")
    table = format_table(report)
    assert "skipped" in table and "heard: (nothing)" in table
    assert "4 of 5 lines ok" in table and "failing chunks: 5_5" in table
    assert "1_2" in format_table(report) and "1_2" not in format_table(report, only_failed=True)
    data = report.to_json()
    assert data["counts"] == {"ok": 4, "skipped": 1, "repeated": 0, "garbled": 0}
    assert data["lines"][4] == {**{k: LINES[4][k] for k in ("line", "speaker", "chunk", "start", "end", "text")},
                                "heard": "", "similarity": 0.0, "verdict": SKIPPED}
    assert Report.from_json(json.loads(json.dumps(data))) == report
    assert redo_command(["5_5"]) == "python 4.quality.py --retake --chunk 5_5"
    assert chunk_size_of(LINES) == 2


# ------------------------------------------------------------------ the step, for real

OFFLINE = env_for(PIPELINE_ENGINE="offline")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample story spoken once by the offline engine (steps 1 and 2); tests work on copies."""
    return spoken_pipeline(tmp_path_factory.mktemp("spoken"))


@pytest.fixture
def pipeline(spoken: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "gen.audio"
    shutil.copytree(spoken, copy)
    return copy


def whisper_env(pipeline: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The offline engine for speech, the Whisper stand-in (which hears only sound) for transcription."""
    env = env_for(PIPELINE_ENGINE="offline", TRANSCRIBE_ENGINE="whisper",
                  FAKE_WHISPER_SCRIPT=str(pipeline / "output" / "story.timings.json"),
                  FAKE_WHISPER_LOG=str(tmp_path / "whisper.log"), **extra)
    env["PYTHONPATH"] = str(FAKE_WHISPER) + os.pathsep + env["PYTHONPATH"]
    return env


def state(pipeline: Path, script: str) -> dict:
    return json.loads((pipeline / "output" / "tracking" / f"{script}.state.json").read_text())


def timings(pipeline: Path) -> dict:
    return json.loads((pipeline / "output" / "story.timings.json").read_text())


def silence_line(pipeline: Path, number: int) -> str:
    """Silence one line inside story.wav, as a TTS that skipped it would; returns the line's chunk."""
    line = timings(pipeline)["lines"][number - 1]
    wav = pipeline / "output" / "story.wav"
    samples, rate = media.read_wav(wav)
    samples = samples.copy()
    samples[int(line["start"] * rate):int(line["end"] * rate)] = 0
    media.write_wav(wav, samples, rate)
    return line["chunk"]


def mark_story_checkpoint(pipeline: Path) -> None:
    """Tag every 2.story entry, so a test can tell a replaced entry (tag gone) from one left alone."""
    path = pipeline / "output" / "tracking" / "2.story.state.json"
    data = json.loads(path.read_text())
    for entry in data["items"].values():
        entry.setdefault("data", {})["test_marker"] = "original"
    path.write_text(json.dumps(data))


def test_offline_report_passes_and_rerun_is_cached(pipeline: Path) -> None:
    assert run_script(pipeline, "3.transcribe.py", env=OFFLINE).returncode == 0
    result = run_script(pipeline, "4.quality.py", env=OFFLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 of 11 lines ok" in result.stdout and "every line passes" in result.stdout
    report = json.loads((pipeline / "output" / "quality.json").read_text())
    assert [l["verdict"] for l in report["lines"]] == [OK] * 11
    assert report["lines"][5]["chunk"] == "6_10" and report["threshold"] == 0.8
    again = run_script(pipeline, "4.quality.py", env=OFFLINE)
    assert again.returncode == 0 and "0 made, 1 already done" in again.stdout


def test_strict_fails_when_the_transcript_is_the_story_itself(pipeline: Path, tmp_path: Path) -> None:
    """Without Whisper the "transcript" is the story text, so every line passes: --strict must not call that a check."""
    assert run_script(pipeline, "3.transcribe.py", env=OFFLINE).returncode == 0
    strict = run_script(pipeline, "4.quality.py", "--strict", env=OFFLINE)
    assert strict.returncode == ConfigError.exit_code, strict.stdout + strict.stderr
    message = strict.stderr.strip().splitlines()[-1]
    assert "nothing was heard" in message and "pip install -e .[whisper]" in message and "--strict" in message
    assert "Traceback" not in strict.stderr
    assert json.loads((pipeline / "output" / "quality.json").read_text())["counts"]["ok"] == 11  # the report is kept
    # With a transcript Whisper heard, --strict checks for real and passes.
    env = whisper_env(pipeline, tmp_path)
    assert run_script(pipeline, "3.transcribe.py", env=env).returncode == 0
    heard = run_script(pipeline, "4.quality.py", "--strict", env=env)
    assert heard.returncode == 0 and "11 of 11 lines ok" in heard.stdout, heard.stdout + heard.stderr


def test_a_failing_line_is_reported_and_strict_fails(pipeline: Path) -> None:
    assert run_script(pipeline, "3.transcribe.py", env=OFFLINE).returncode == 0
    # Corrupt what was "heard": drop line 4's words from the transcript.
    path = pipeline / "output" / "transcript.json"
    transcript = json.loads(path.read_text())
    transcript["words"] = [w for w in transcript["words"] if w.get("line") != 4]
    path.write_text(json.dumps(transcript))
    result = run_script(pipeline, "4.quality.py", env=OFFLINE)
    assert result.returncode == 0, result.stderr
    assert "10 of 11 lines ok" in result.stdout and "skipped" in result.stdout
    assert "python 4.quality.py --retake --chunk 1_5" in result.stdout
    report = json.loads((pipeline / "output" / "quality.json").read_text())
    assert report["failing_chunks"] == ["1_5"] and report["counts"]["skipped"] == 1
    strict = run_script(pipeline, "4.quality.py", "--strict", env=OFFLINE)
    assert strict.returncode == JobError.exit_code
    assert "failed the quality check" in strict.stderr and "Traceback" not in strict.stderr


def test_retake_regenerates_only_the_failing_chunk(pipeline: Path, tmp_path: Path) -> None:
    env = whisper_env(pipeline, tmp_path)
    chunk = silence_line(pipeline, 7)  # line 7 is in chunk 6_10
    assert chunk == "6_10"
    first = run_script(pipeline, "3.transcribe.py", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    mark_story_checkpoint(pipeline)
    wavs = {p.name: p.stat().st_mtime_ns for p in (pipeline / "output" / "story").glob("*.wav")}

    result = run_script(pipeline, "4.quality.py", "--retake", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retake 1: regenerating chunk(s) 6_10 for failing line(s) 7" in result.stdout
    assert "after retake 1: 11 of 11 lines ok" in result.stdout

    items = state(pipeline, "2.story")["items"]
    assert "test_marker" not in items["6_10"]["data"]  # regenerated
    assert items["1_5"]["data"]["test_marker"] == "original"  # left alone
    assert items["11_11"]["data"]["test_marker"] == "original"
    assert "test_marker" not in items.get("story.wav", {}).get("data", {})  # rejoined
    now = {p.name: p.stat().st_mtime_ns for p in (pipeline / "output" / "story").glob("*.wav")}
    assert [name for name in wavs if now[name] != wavs[name]] == ["6_10.wav"]

    report = json.loads((pipeline / "output" / "quality.json").read_text())
    assert report["counts"]["ok"] == 11
    retakes = state(pipeline, "4.quality")["items"]["retakes"]["data"]
    assert retakes["chunks"]["6_10"]["attempts"] == 1
    assert retakes["rounds"] == [{"round": 1, "chunks": ["6_10"], "failing_after": []}]
    assert (tmp_path / "whisper.log").read_text().count("load_model") == 2  # once per transcription run


def test_a_chunk_that_keeps_failing_is_listed_with_the_command_to_redo_it(pipeline: Path, tmp_path: Path) -> None:
    env = whisper_env(pipeline, tmp_path, FAKE_WHISPER_DEAF="11", QUALITY_MAX_RETAKES="1")
    assert run_script(pipeline, "3.transcribe.py", env=env).returncode == 0
    result = run_script(pipeline, "4.quality.py", "--retake", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retake 1: regenerating chunk(s) 11_11" in result.stdout and "retake 2" not in result.stdout
    assert "still failing: line(s) 11 in chunk(s) 11_11" in result.stdout
    assert "python 4.quality.py --retake --chunk 11_11" in result.stdout
    # The budget is kept in the checkpoint: running again spends nothing more ...
    again = run_script(pipeline, "4.quality.py", "--retake", env=env)
    assert again.returncode == 0 and "already had 1 retake(s)" in again.stdout and "regenerating" not in again.stdout
    # ... unless the chunk is asked for by name, and --strict then fails the run.
    named = run_script(pipeline, "4.quality.py", "--retake", "--chunk", "11_11", "--strict", env=env)
    assert "retake 1: regenerating chunk(s) 11_11" in named.stdout
    assert named.returncode == JobError.exit_code
    attempts = state(pipeline, "4.quality")["items"]["retakes"]["data"]["chunks"]["11_11"]["attempts"]
    assert attempts == 1


def test_retake_flags_are_checked(pipeline: Path) -> None:
    assert run_script(pipeline, "3.transcribe.py", env=OFFLINE).returncode == 0
    alone = run_script(pipeline, "4.quality.py", "--chunk", "1_5", env=OFFLINE)
    assert alone.returncode == 4 and "--retake" in alone.stderr
    unknown = run_script(pipeline, "4.quality.py", "--retake", "--chunk", "2_9", env=OFFLINE)
    assert unknown.returncode == 3 and "1_5, 6_10, 11_11" in unknown.stderr
