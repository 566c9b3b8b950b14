"""3.transcribe.py: subtitle rules, the Whisper result conversion, engine choice, and the step for real."""
from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from common.media import ffmpeg as media
from common.run.errors import ConfigError, InputError
from common.formats.srt import read_srt
from common.formats.timeline import read_timeline
from common.audio.quality import load_words, normalise
from common.audio.subtitles import (
    CueRules, Subtitle, Word, break_after, build_cues, check_cues, line_words, plain_text, to_srt,
    to_timeline, whisper_words, words_from_timings, wrap,
)
from common.audio.transcribe import (
    INSTALL_HINT, TIMINGS, WHISPER, WhisperTranscriber, choose_transcriber, import_whisper,
    transcript_from_whisper, whisper_installed,
)
from tests.support.project import REPO, env_for, run_script, spoken_pipeline

RULES = CueRules()
FAKE_WHISPER = REPO / "tests" / "fakes" / "fake_whisper"


def timed_lines(texts: list[str], *, rate: float = 15.0, pause: float = 0.3, lead: float = 0.0) -> list[dict]:
    """story.timings.json-like lines spoken at `rate` characters per second."""
    out, at = [], lead
    for n, text in enumerate(texts, 1):
        end = at + len(text) / rate
        out.append({"line": n, "speaker": "narrator", "text": text, "start": round(at, 4), "end": round(end, 4),
                    "chunk": f"{(n - 1) // 5 * 5 + 1}_{(n - 1) // 5 * 5 + 5}"})
        at = end + pause
    return out


def words_of(cues: list[Subtitle]) -> list[str]:
    return " ".join(c.text for c in cues).split()


# ------------------------------------------------------------------ pure rules


def test_line_words_share_the_span_by_characters() -> None:
    words = line_words("I am extraordinarily late.", 10.0, 12.6)
    assert [w.text for w in words] == ["I", "am", "extraordinarily", "late."]
    assert words[0].start == 10.0 and words[-1].end == pytest.approx(12.6)
    durations = [w.end - w.start for w in words]
    assert durations[2] == pytest.approx(durations[0] * 15)  # 15 letters take 15 times as long as 1
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))


def test_wrap_uses_fewest_even_rows_and_prefers_punctuation() -> None:
    assert wrap("Short and sweet.", 42, 2) == ("Short and sweet.",)
    rows = wrap("The lighthouse on Gull Point had been dark for three nights", 42, 2)
    assert rows is not None and len(rows) == 2 and all(len(r) <= 42 for r in rows)
    assert abs(len(rows[0]) - len(rows[1])) <= 8
    # The evenest cut would be after "the" (29/26); after the comma (25/30) reads better.
    assert wrap("Up in the old tower room, the keeper waited by the lamp.", 42, 2) == (
        "Up in the old tower room,", "the keeper waited by the lamp.")
    assert wrap("x" * 30 + " " + "y" * 30 + " " + "z" * 30, 42, 2) is None
    assert wrap("a " * 50, 42, 2) is None


def test_break_strength_knows_sentences_clauses_and_titles() -> None:
    assert break_after("night.") == 2 and break_after('there?"') == 2 and break_after("Ada!") == 2
    assert break_after("child,") == 1 and break_after("broken;") == 1
    assert break_after("Mr.") == 0 and break_after("Holmes") == 0


STORY = [
    "The lighthouse on Gull Point had been dark for three nights when the keeper's niece rowed out through the autumn fog.",
    "No.",
    "Uncle Silas never misses a night. If the lamp is dark, something is wrong up there.",
    "Yes, Mr. Holmes, I saw no smoke from his chimney either, and the boats in the harbour had not moved since the storm began on Tuesday evening before the bells rang.",
    "Go!",
    "Up here, child. Don't be frightened. The lamp is not broken; I put it out myself.",
    "Next time, Uncle, leave a note for the people who love you.",
]


def test_cues_from_timings_keep_every_rule() -> None:
    lines = timed_lines(STORY)
    cues = build_cues(words_from_timings(lines), RULES)
    assert check_cues(cues, RULES) == []
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2 and all(len(row) <= 42 for row in cue.lines)
        assert cue.end - cue.start >= 1.0
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:]))
    assert words_of(cues) == " ".join(STORY).split()  # nothing lost, nothing reordered
    assert cues[0].start == 0.0
    assert abs(cues[-1].end - lines[-1]["end"]) <= 0.001  # the last cue ends with the speech


def test_cues_break_at_sentences_and_do_not_cross_lines() -> None:
    lines = timed_lines(STORY)
    cues = build_cues(words_from_timings(lines), RULES)
    texts = [c.text for c in cues]
    assert "Uncle Silas never misses a night." in texts  # a sentence long enough to stand alone does
    # Lines 3 and 6 hold several sentences each; their cues start and end inside the line's span.
    for line in (lines[2], lines[5]):
        inside = [c for c in cues if line["start"] - 0.001 <= c.start and c.end <= line["end"] + 0.001]
        assert " ".join(c.text for c in inside) == line["text"]


def test_long_clauses_are_split_by_words_into_even_pieces() -> None:
    text = ("The lighthouse on Gull Point had been dark for three nights when the keeper's niece rowed "
            "out through the autumn fog and nobody knew why")
    cues = build_cues(line_words(text, 0.0, 9.0), RULES)
    assert check_cues(cues, RULES) == [] and len(cues) == 2
    assert abs(len(cues[0].text) - len(cues[1].text)) <= 10
    assert cues[0].end <= cues[1].start and cues[0].end == pytest.approx(4.5, abs=0.3)  # time follows the characters
    # A word longer than a row is never cut: it gets a cue of its own.
    cues = build_cues(line_words("Short. " + "x" * 60 + " then more words here.", 0.0, 6.0), RULES)
    assert [c.lines for c in cues][1] == ("x" * 60,)
    # A very long run-on line still comes out in readable pieces.
    run_on = " ".join(["the keeper of the extraordinarily bright lamp"] * 200)
    cues = build_cues(line_words(run_on, 0.0, len(run_on) / 15), RULES)
    assert check_cues(cues, RULES) == [] and words_of(cues) == run_on.split()


def test_short_lines_get_a_full_second_by_lingering_or_joining() -> None:
    lines = timed_lines(["It was late.", "No.", "The sea beat against the rocks below the tower."], rate=15, pause=0.3)
    cues = build_cues(words_from_timings(lines), RULES)
    assert check_cues(cues, RULES) == []
    no = next(c for c in cues if "No." in c.text)
    assert no.start <= lines[1]["start"] + 0.001  # never shown after it is said
    # A lone short line at the very end cannot linger past the speech: it starts earlier or joins.
    lines = timed_lines(["The sea beat against the rocks below the tower.", "Go!"], rate=15, pause=0.3)
    cues = build_cues(words_from_timings(lines), RULES)
    assert check_cues(cues, RULES) == []
    assert cues[-1].end == pytest.approx(lines[-1]["end"], abs=0.001)


def test_random_stories_keep_the_rules() -> None:
    vocabulary = ("the", "keeper", "lamp", "tower", "extraordinary", "a", "of", "night", "sea", "Ada", "said",
                  "lighthouse", "harbour", "boats", "I", "fog", "slowly", "understand")
    marks = ("", "", "", "", ",", ".", "?", ";")
    rng = random.Random(1234)
    for _ in range(60):
        texts = []
        for _ in range(rng.randint(1, 8)):
            words = [rng.choice(vocabulary) + rng.choice(marks) for _ in range(rng.randint(1, 45))]
            texts.append(" ".join(words))
        lines = timed_lines(texts, rate=rng.uniform(11, 18), pause=rng.choice((0.3, 0.5, 1.0)), lead=rng.choice((0, 0.4)))
        cues = build_cues(words_from_timings(lines), RULES, total=lines[-1]["end"] + 0.7)
        if lines[-1]["end"] < RULES.min_duration:  # all the speech is shorter than one cue may be
            assert len(cues) == 1 and cues[0].start == 0.0
        else:
            assert check_cues(cues, RULES) == [], texts
        assert words_of(cues) == " ".join(texts).split()
        assert cues[-1].end == pytest.approx(lines[-1]["end"], abs=0.001)
        total = lines[-1]["end"] + 0.7
        timeline = to_timeline(cues, total)
        assert round(timeline.total() * 1000) == round(total * 1000)


def test_timeline_folds_pauses_and_adds_up_to_the_audio() -> None:
    lines = timed_lines(STORY, lead=0.8)
    total = lines[-1]["end"] + 1.2345
    cues = build_cues(words_from_timings(lines), RULES, total=total)
    timeline = to_timeline(cues, total)
    assert len(timeline.entries) == len(cues)
    assert round(timeline.total() * 1000) == round(total * 1000)  # exact to the millisecond
    starts = timeline.starts()
    assert starts[0] == 0.0  # leading silence belongs to the first segment
    for start, cue in zip(starts[1:], cues[1:]):
        assert start == pytest.approx(cue.start, abs=1e-9)  # each segment starts with its words
    assert [e.text for e in timeline.entries] == [c.text for c in cues]
    empty = to_timeline([], 3.5)
    assert empty.total() == 3.5 and len(empty.entries) == 1


def test_srt_and_text_outputs() -> None:
    cues = build_cues(words_from_timings(timed_lines(STORY[:3])), RULES)
    srt = to_srt(cues)
    assert [c.index for c in srt.cues] == list(range(1, len(cues) + 1))
    assert srt.cues[0].text == "\n".join(cues[0].lines)
    assert plain_text(cues) == " ".join(STORY[:3])


# ------------------------------------------------------------------ Whisper, without Whisper

WHISPER_RESULT = {
    "text": " Up here, child. Don't be frightened. The lamp is not broken. Ada!",
    "language": "en",
    "segments": [
        {"id": 0, "start": 0.0, "end": 2.4, "text": " Up here, child. Don't be frightened.", "words": [
            {"word": " Up", "start": 0.12, "end": 0.3, "probability": 0.9},
            {"word": " here,", "start": 0.3, "end": 0.62, "probability": 0.9},
            {"word": " child.", "start": 0.62, "end": 1.0, "probability": 0.8},
            {"word": " Don't", "start": 1.2, "end": 1.44, "probability": 0.9},
            {"word": " be", "start": 1.44, "end": 1.58, "probability": 0.9},
            {"word": " frightened.", "start": 1.58, "end": 2.3, "probability": 0.9},
        ]},
        # Whisper sometimes leaves a segment without word timings.
        {"id": 1, "start": 2.3, "end": 4.1, "text": " The lamp is not broken."},
        {"id": 2, "start": 6.0, "end": 6.5, "text": " Ada!", "words": [
            {"word": " Ada!", "start": 6.02, "end": 6.4, "probability": 0.7},
        ]},
    ],
}


def test_whisper_result_becomes_words_and_cues() -> None:
    words = whisper_words(WHISPER_RESULT)
    assert [w.text for w in words] == ["Up", "here,", "child.", "Don't", "be", "frightened.",
                                       "The", "lamp", "is", "not", "broken.", "Ada!"]
    assert words[0].start == 0.12 and words[5].end == 2.3
    assert words[6].start == pytest.approx(2.3) and words[10].end == pytest.approx(4.1)  # shared out by characters
    cues = build_cues(words, RULES, total=7.0)
    assert check_cues(cues, RULES) == []
    assert words_of(cues) == [w.text for w in words]
    assert cues[-1].text == "Ada!" and cues[-1].end == pytest.approx(6.4)  # a long pause ends a cue
    assert cues[-1].start <= 6.02 + 0.001
    transcript = transcript_from_whisper(WHISPER_RESULT, engine="whisper:base")
    assert transcript.text == "Up here, child. Don't be frightened. The lamp is not broken. Ada!"
    assert transcript.engine == "whisper:base" and len(transcript.words) == 12


def test_whisper_words_out_of_order_never_overlap() -> None:
    words = [Word("one", 0.0, 0.5), Word("two", 0.45, 0.9), Word("three.", 0.4, 1.6), Word("Four", 3.0, 3.1)]
    cues = build_cues(words, RULES)
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:]))
    assert words_of(cues) == ["one", "two", "three.", "Four"]


def test_choosing_the_transcriber() -> None:
    assert choose_transcriber("auto", preview=True, has_timings=True, installed=True).engine == TIMINGS
    assert choose_transcriber("auto", preview=False, has_timings=True, installed=True).engine == WHISPER
    assert choose_transcriber("auto", preview=None, has_timings=True, installed=False).engine == TIMINGS
    assert choose_transcriber("whisper", preview=True, has_timings=True, installed=True).engine == WHISPER
    assert choose_transcriber("timings", preview=False, has_timings=True, installed=True).engine == TIMINGS
    with pytest.raises(ConfigError, match=r"pip install -e \.\[whisper\]"):
        choose_transcriber("whisper", preview=False, has_timings=True, installed=False)
    with pytest.raises(InputError, match="story.timings.json"):
        choose_transcriber("auto", preview=None, has_timings=False, installed=False)
    with pytest.raises(InputError, match="story.timings.json"):
        choose_transcriber("timings", preview=None, has_timings=False, installed=True)


def test_missing_whisper_is_a_clear_config_error() -> None:
    if whisper_installed():
        pytest.skip("a whisper package is installed here")
    with pytest.raises(ConfigError) as caught:
        import_whisper()
    assert INSTALL_HINT in str(caught.value) and "TRANSCRIBE_ENGINE=timings" in str(caught.value)


def test_whisper_transcriber_loads_its_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rate = 44100
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * rate) / rate)).astype(np.float32)
    wav = media.write_wav(tmp_path / "story.wav", tone, rate)
    script = tmp_path / "timings.json"
    script.write_text(json.dumps({"lines": [{"line": 1, "text": "A tone, heard.", "start": 0.2, "end": 1.8}]}))
    log = tmp_path / "loads.txt"
    monkeypatch.setenv("FAKE_WHISPER_SCRIPT", str(script))
    monkeypatch.setenv("FAKE_WHISPER_LOG", str(log))
    monkeypatch.syspath_prepend(str(FAKE_WHISPER))
    sys.modules.pop("whisper", None)
    try:
        transcriber = WhisperTranscriber("tiny", "en")
        first = transcriber.transcribe(wav)
        second = transcriber.transcribe(wav)
    finally:
        sys.modules.pop("whisper", None)  # the stand-in must not outlive this test
    assert first == second and [w.text for w in first.words] == ["A", "tone,", "heard."]
    assert log.read_text().splitlines() == ["load_model tiny"]


# ------------------------------------------------------------------ the seed system's files


def test_seed_subtitles_and_timeline_are_readable(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "gen.audio" / "input"
    srt = read_srt(folder / "2.story.srt")
    timeline = read_timeline(folder / "2.timeline.txt")
    assert len(srt.cues) == len(timeline.entries) > 400
    # The seed's timeline is its subtitles as durations: same texts, gaps folded in, same total.
    assert [e.text for e in timeline.entries] == [c.text.replace("\n", " ") for c in srt.cues]
    assert timeline.total() == pytest.approx(srt.cues[-1].end, abs=0.05)
    # What the quality check reads off a subtitle file is the whole transcript, in order.
    words, label = load_words(folder / "2.story.srt")
    assert label == "2.story.srt"
    assert normalise(" ".join(w.text for w in words)) == normalise((folder / "2.story.str.txt").read_text(encoding="utf-8"))
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))


# ------------------------------------------------------------------ the step, for real (offline engine)

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


def _outputs(pipeline: Path) -> dict[str, bytes]:
    return {name: (pipeline / "input" / name).read_bytes() for name in ("2.story.srt", "2.story.str.txt", "2.timeline.txt")}


def test_transcribe_offline_end_to_end(pipeline: Path) -> None:
    result = run_script(pipeline, "3.transcribe.py", env=OFFLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transcriber: line timings" in result.stdout and "offline preview" in result.stdout
    timings = json.loads((pipeline / "output" / "story.timings.json").read_text())
    duration = media.audio_duration(pipeline / "output" / "story.wav")

    srt = read_srt(pipeline / "input" / "2.story.srt")
    cues = [Subtitle(c.start, c.end, tuple(c.text.split("\n"))) for c in srt.cues]
    assert check_cues(cues, RULES) == []
    assert abs(srt.cues[-1].end - timings["lines"][-1]["end"]) <= 0.1
    assert srt.cues[0].start <= timings["lines"][0]["start"] + 0.1
    assert " ".join(c.text for c in cues).split() == " ".join(l["text"] for l in timings["lines"]).split()

    timeline = read_timeline(pipeline / "input" / "2.timeline.txt")
    assert abs(timeline.total() - duration) <= 0.001
    assert len(timeline.entries) == len(srt.cues)
    text = (pipeline / "input" / "2.story.str.txt").read_text(encoding="utf-8")
    assert text == " ".join(l["text"] for l in timings["lines"])

    state = json.loads((pipeline / "output" / "tracking" / "3.transcribe.state.json").read_text())
    assert set(state["items"]) == {"transcript", "2.story.srt", "2.story.str.txt", "2.timeline.txt"}
    assert all(item["preview"] for item in state["items"].values())


def test_rerun_is_a_no_op_and_a_changed_story_wav_is_redone(pipeline: Path) -> None:
    assert run_script(pipeline, "3.transcribe.py", env=OFFLINE).returncode == 0
    state_file = pipeline / "output" / "tracking" / "3.transcribe.state.json"
    before, state_before = _outputs(pipeline), state_file.read_bytes()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (pipeline / "input").glob("2.*")}
    again = run_script(pipeline, "3.transcribe.py", env=OFFLINE)
    assert again.returncode == 0, again.stderr
    assert "1 items: 0 made, 1 already done" in again.stdout and "3 items: 0 made, 3 already done" in again.stdout
    assert _outputs(pipeline) == before and state_file.read_bytes() == state_before
    assert {p.name: p.stat().st_mtime_ns for p in (pipeline / "input").glob("2.*")} == mtimes

    # A longer story.wav (new content) is transcribed again, and the timeline follows its length.
    wav = pipeline / "output" / "story.wav"
    samples, rate = media.read_wav(wav)
    media.write_wav(wav, np.concatenate([samples, np.zeros(rate // 2, dtype=np.int16)]), rate)
    third = run_script(pipeline, "3.transcribe.py", env=OFFLINE)
    assert third.returncode == 0 and "1 items: 1 made" in third.stdout
    assert abs(read_timeline(pipeline / "input" / "2.timeline.txt").total() - media.audio_duration(wav)) <= 0.001


def test_selecting_whisper_without_the_package_says_how_to_install_it(pipeline: Path) -> None:
    if whisper_installed():
        pytest.skip("a whisper package is installed here")
    result = run_script(pipeline, "3.transcribe.py", env=env_for(PIPELINE_ENGINE="offline", TRANSCRIBE_ENGINE="whisper"))
    assert result.returncode == ConfigError.exit_code
    assert "pip install -e .[whisper]" in result.stderr and "Traceback" not in result.stderr
    assert not (pipeline / "input" / "2.story.srt").exists()


def test_whisper_path_through_the_script_with_a_stand_in(pipeline: Path, tmp_path: Path) -> None:
    log = tmp_path / "loads.txt"
    env = env_for(PIPELINE_ENGINE="offline", TRANSCRIBE_ENGINE="whisper", WHISPER_MODEL="small",
                  FAKE_WHISPER_SCRIPT=str(pipeline / "output" / "story.timings.json"), FAKE_WHISPER_LOG=str(log))
    env["PYTHONPATH"] = str(FAKE_WHISPER) + os.pathsep + env["PYTHONPATH"]
    result = run_script(pipeline, "3.transcribe.py", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transcriber: Whisper" in result.stdout
    assert log.read_text().splitlines() == ["load_model small"]
    transcript = json.loads((pipeline / "output" / "transcript.json").read_text())
    assert transcript["engine"] == "whisper:small"
    srt = read_srt(pipeline / "input" / "2.story.srt")
    timings = json.loads((pipeline / "output" / "story.timings.json").read_text())
    assert abs(srt.cues[-1].end - timings["lines"][-1]["end"]) <= 0.1
    assert abs(read_timeline(pipeline / "input" / "2.timeline.txt").total()
               - media.audio_duration(pipeline / "output" / "story.wav")) <= 0.001
