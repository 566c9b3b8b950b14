"""Sound-effect planning (common.audio.sfx_plan), the text engines' SFX answers, the offline synthesiser
(common.offline.sfx) and the sfx.wav layout (common.audio.sfx_track), without running the scripts."""
from __future__ import annotations

import random
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from common.media import ffmpeg as media
from common.audio import sfx_plan
from common.audio import sfx_track
from common.audio.sfx_text import LLMSoundText as LLMTextEngine, OfflineSoundText as OfflineTextEngine
from common.formats.story import parse_story, read_story
from common.formats.timeline import Timeline, TimelineEntry, parse_timeline, read_timeline
from common.services.llm import LLMClient
from common.offline import sfx
from common.audio.sfx_plan import EffectSlot, EffectTiming, SfxSegment
from tests.fakes.llm_helpers import start_fake_llm

REPO = Path(__file__).resolve().parent.parent
SEED_INPUT = ("gen.audio", "input")


def _exact_total(timeline: Timeline) -> Fraction:
    return sum((Fraction(e.raw.split(":")[0].strip()) for e in timeline.entries), Fraction(0))


def _seed(fixtures_dir: Path, name: str) -> Path:
    return fixtures_dir.joinpath(*SEED_INPUT, name)


# ---------------------------------------------------------------- 6.timing.py's plan

def _check_plan(timing: Timeline, plan: Timeline, placed: dict[int, EffectTiming]) -> None:
    assert _exact_total(plan) == _exact_total(timing)  # exact, not approximately
    assert all(e.seconds > 0 for e in plan.entries)
    texts = [e.text for e in plan.entries]
    assert not any(a == b == sfx_plan.SILENCE for a, b in zip(texts, texts[1:]))
    # every effect lies inside the segment it came from, and every segment's effect is there
    seg_starts = [Fraction(0)]
    for e in timing.entries:
        seg_starts.append(seg_starts[-1] + Fraction(e.raw.split(":")[0].strip()))
    at = Fraction(0)
    covered: set[int] = set()
    for entry in plan.entries:
        length = Fraction(entry.raw.split(":")[0])
        if entry.text != sfx_plan.SILENCE:
            owners = [n for n in range(1, len(seg_starts)) if seg_starts[n - 1] <= at < seg_starts[n]]
            last = [n for n in range(1, len(seg_starts)) if seg_starts[n - 1] < at + length <= seg_starts[n]]
            assert owners and last, entry
            for n in range(owners[0], last[0] + 1):
                assert timing.entries[n - 1].text.strip() == entry.text
                covered.add(n)
        at += length
    assert covered == set(placed)


def test_seed_3_timing_plans_to_an_exact_4_sfx(fixtures_dir: Path) -> None:
    timing = read_timeline(_seed(fixtures_dir, "3.timing.txt"))
    slots = sfx_plan.effect_slots(timing)
    assert len(slots) == 113  # the seed's 481 segments hold 113 effects
    placed = {s.index: sfx_plan.rule_timing(s, 47.0) for s in slots}
    plan = sfx_plan.plan_effects(timing, placed, 47.0)
    _check_plan(timing, plan, placed)
    assert plan.entries[0].raw == "2.920: Low distant city ambience with faint car hum"  # an ambience fills its segment
    knock = next(e for e in plan.entries if e.text.startswith("Soft footstep, quiet door click"))
    assert knock.seconds == 2.0  # a door is about two seconds, not its whole 5.22 s segment


def test_seed_4_sfx_reads_and_every_seed_sound_passes_the_checks(fixtures_dir: Path) -> None:
    plan = read_timeline(_seed(fixtures_dir, "4.sfx.txt"))
    jobs = sfx_track.clip_jobs(plan)
    assert len(jobs) == len({(e.text, e.seconds) for e in plan.entries if e.text != "Silence"})
    for entry in read_timeline(_seed(fixtures_dir, "3.timing.txt")).entries:
        assert sfx_plan.clean_sound(entry.text, ("Holmes", "Watson", "Hudson"))


@pytest.mark.parametrize("seed", range(25))
def test_random_plans_add_up_exactly(seed: int) -> None:
    rng = random.Random(seed)
    places = rng.choice((2, 3, 6))
    entries, placed = [], {}
    for n in range(1, rng.randint(1, 40) + 1):
        seconds = round(rng.uniform(0.0, 30.0) if rng.random() > 0.05 else 0.0, places)
        text = rng.choice(["Silence", "Silence", "rain on a roof", "a knock", "wind"])
        entries.append(TimelineEntry(seconds, text, raw=f"{seconds:.{places}f}: {text}"))
        if text != "Silence":
            # any answer, also out of range: the plan clamps it into the segment
            placed[n] = EffectTiming(n, rng.uniform(-2, 35), rng.uniform(0.05, 60))
    timing = Timeline(tuple(entries))
    max_seconds = rng.choice((5.0, 47.0))
    plan = sfx_plan.plan_effects(timing, placed, max_seconds)
    _check_plan(timing, plan, {n: t for n, t in placed.items() if entries[n - 1].seconds > 0})
    assert all(e.seconds <= max_seconds for e in plan.entries if e.text != "Silence")


def test_identical_ambiences_in_a_row_become_one_clip_up_to_the_maximum() -> None:
    timing = parse_timeline("3.0: Steady rain\n4.0: Steady rain\n5.0: Steady rain\n1.5: Silence\n", source="t")
    placed = {n: EffectTiming(n, 0.0, s) for n, s in ((1, 3.0), (2, 4.0), (3, 5.0))}
    assert [e.raw for e in sfx_plan.plan_effects(timing, placed, 47.0).entries] == ["12.000: Steady rain", "1.500: Silence"]
    assert [e.raw for e in sfx_plan.plan_effects(timing, placed, 8.0).entries] == [
        "7.000: Steady rain", "5.000: Steady rain", "1.500: Silence"]


def test_rule_timings() -> None:
    assert sfx_plan.rule_timing(EffectSlot(1, 6.0, "Heavy rain on a window"), 47.0) == EffectTiming(1, 0.0, 6.0)
    assert sfx_plan.rule_timing(EffectSlot(2, 6.0, "Three sharp knocks on a door"), 47.0) == EffectTiming(2, 2.0, 2.0)
    assert sfx_plan.rule_timing(EffectSlot(3, 1.0, "A single knock"), 47.0) == EffectTiming(3, 0.0, 1.0)
    assert sfx_plan.rule_timing(EffectSlot(4, 90.0, "Wind over the moor"), 47.0) == EffectTiming(4, 0.0, 47.0)
    assert sfx_plan.typical_seconds("An unknown whirr") == sfx_plan.DEFAULT_EVENT_SECONDS


# ---------------------------------------------------------------- answer checks

@pytest.mark.parametrize("answer, expected", [
    ("Silence", "Silence"), ("silence.", "Silence"), ("None", "Silence"), (' "Rain on a tin roof." ', "Rain on a tin roof"),
    ("Sound effect: distant church bell", "distant church bell"),
])
def test_clean_sound_accepts(answer: str, expected: str) -> None:
    assert sfx_plan.clean_sound(answer, ("Holmes",)) == expected


@pytest.mark.parametrize("answer, reason", [
    ("Waves, because the story is set by the sea", "explains"),
    ("Holmes paces the room with heavy steps", "names Holmes"),
    ("Rain falls. The detective listens.", "several sentences"),
    ("a b c d e f g h i j k l m n o p q r", "words"),
    ("Rain\non a roof", "one line"),
    ("The narrator pauses before the door", "explains"),
])
def test_clean_sound_rejects(answer: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sfx_plan.clean_sound(answer, ("Holmes",))


def _segments(n: int, first: int = 1) -> list[SfxSegment]:
    return [SfxSegment(first + k, 2.0, f"line {first + k}") for k in range(n)]


def test_sound_answer_needs_each_index_once() -> None:
    segments = _segments(3, 4)
    good = {"sounds": [{"index": 4, "sound": "Silence"}, {"index": 5, "sound": "A knock"}, {"index": 6, "sound": "Wind"}]}
    assert sfx_plan.read_sound_answer(good, segments) == ["Silence", "A knock", "Wind"]
    with pytest.raises(ValueError, match=r"missing indices \[6\]"):
        sfx_plan.read_sound_answer({"sounds": good["sounds"][:2]}, segments)
    with pytest.raises(ValueError, match="appears twice"):
        sfx_plan.read_sound_answer({"sounds": good["sounds"] + [good["sounds"][0]]}, segments)
    with pytest.raises(ValueError, match=r"index 5: .*explains"):
        sfx_plan.read_sound_answer({"sounds": [good["sounds"][0], {"index": 5, "sound": "Knock, since someone arrives"},
                                               good["sounds"][2]]}, segments)


def test_timing_answer_must_fit_its_segment() -> None:
    slots = [EffectSlot(2, 4.0, "A knock"), EffectSlot(7, 10.0, "Rain")]
    ok = {"timings": [{"index": 2, "start": 1.0, "seconds": 1.5}, {"index": 7, "start": 0, "seconds": 10.02}]}
    assert sfx_plan.read_timing_answer(ok, slots, 47.0) == [EffectTiming(2, 1.0, 1.5), EffectTiming(7, 0.0, 10.0)]
    with pytest.raises(ValueError, match="index 2: start 3 s \\+ 2 s does not fit its 4.00 s segment"):
        sfx_plan.read_timing_answer({"timings": [{"index": 2, "start": 3, "seconds": 2}, ok["timings"][1]]}, slots, 47.0)
    with pytest.raises(ValueError, match="longer than the 5 s"):
        sfx_plan.read_timing_answer(ok, slots, 5.0)


# ---------------------------------------------------------------- story context

def _sentence_timeline(story, timings: list[tuple[float, float]]) -> Timeline:
    """Segments like a transcriber's: each line split at sentences, pauses given to the line before."""
    import re

    entries, at_ms = [], 0
    for n, (utterance, (start, end)) in enumerate(zip(story.utterances, timings)):
        stop = timings[n + 1][0] if n + 1 < len(timings) else end
        parts = [p for p in re.split(r"(?<=[.!?])\s+", utterance.text) if p]
        weights = [len(p) for p in parts]
        acc = start if n else 0.0
        for part, weight in zip(parts, weights):
            acc += (stop - (start if n else 0.0)) * weight / sum(weights)
            ms = round(acc * 1000)
            entries.append(TimelineEntry((ms - at_ms) / 1000, part, raw=f"{(ms - at_ms) / 1000:.3f}: {part}"))
            at_ms = ms
    return Timeline(tuple(entries))


def test_segments_map_to_story_lines_by_time_and_by_words_alike() -> None:
    story = read_story(REPO / "gen.audio" / "input" / "1.story.txt")
    spans = [(k * 6.0, k * 6.0 + 5.5) for k in range(len(story.utterances))]
    timeline = _sentence_timeline(story, spans)
    timings = {"lines": [{"line": k + 1, "text": u.text, "start": a, "end": b}
                         for k, (u, (a, b)) in enumerate(zip(story.utterances, spans))]}
    by_time, how_time = sfx_plan.segment_scenes(timeline, story, timings)
    by_text, how_text = sfx_plan.segment_scenes(timeline, story, None)
    assert (how_time, how_text) == ("timings", "text")
    assert by_time == by_text and all(by_time)
    # a stale timings file (another version of the story) is not trusted
    stale = {"lines": [dict(timings["lines"][0], text="something else")] + timings["lines"][1:]}
    assert sfx_plan.segment_scenes(timeline, story, stale)[1] == "text"
    rain = [s for s in by_time if "rain" in s.lower()]
    assert rain and all("#" not in s for s in by_time)  # colour codes are not scene text


def test_scene_place_carries_over_but_actions_do_not() -> None:
    story = parse_story(
        "[narrator] Rain all night.\n(scene_1.1) {{loc_1, a cottage by the sea}}, {Night, heavy rain}; ((narrator)){Walking to the door};\n"
        "[narrator] Still raining.\n", source="s")
    first, second = sfx_plan.utterance_scenes(story)
    assert "Walking" in first and "sea" in second and "Walking" not in second
    assert sfx_plan.person_names(parse_story("[male_doctor_watson] Hi.\n[narrator] So.\n", source="s")) == ("Watson",)


# ---------------------------------------------------------------- text engines

def test_offline_engine_names_only_sounds_it_can_make() -> None:
    engine = OfflineTextEngine()
    segments = [SfxSegment(1, 3.0, "a", "a lamp room; Night, wind and rain; Sitting at the table"),
                SfxSegment(2, 3.0, "b", "a study; Afternoon; Reading"),
                SfxSegment(3, 3.0, "c", None),
                SfxSegment(4, 3.0, "d", "a jetty, grey sea; Running along the jetty")]
    answers = engine.sound_effects(segments)
    assert answers == ["Steady rain, gusting wind", "Silence", "Silence", "Footsteps, waves breaking on the shore"]
    assert {s.name for s in sfx.match_sounds(answers[3])} == {"footsteps", "waves"}
    timings = engine.effect_timings([EffectSlot(1, 5.0, answers[0]), EffectSlot(4, 8.0, "Footsteps")], max_seconds=47.0)
    assert timings == [EffectTiming(1, 0.0, 5.0), EffectTiming(4, 2.5, 3.0)]


def test_llm_engine_batches_retries_and_validates(tmp_path: Path) -> None:
    segments = _segments(3)
    bad = {"sounds": [{"index": 1, "sound": "Silence"}, {"index": 2, "sound": "Silence"}, {"index": 2, "sound": "Wind"}]}
    good = {"sounds": [{"index": 1, "sound": "Silence"}, {"index": 2, "sound": "Gulls over the harbour"},
                       {"index": 3, "sound": "silence"}]}
    timing_bad = {"timings": [{"index": 2, "start": 1.5, "seconds": 1.0}]}  # 2.5 s in a 2 s segment
    timing_good = {"timings": [{"index": 2, "start": 0.25, "seconds": 1.5}]}
    answers = [{"contains": "\n[1] (2.00 s) line 1", "answers": [bad, good]},
               {"contains": "\n[2] segment of 2.00 s", "answers": [timing_bad, timing_good]}]
    with start_fake_llm(tmp_path, answers=answers) as fake:
        engine = LLMTextEngine(LLMClient(fake.base_url, "auto", timeout=10, max_retries=2), "auto")
        assert engine.sound_effects(segments) == ["Silence", "Gulls over the harbour", "Silence"]
        assert engine.effect_timings([EffectSlot(2, 2.0, "Gulls over the harbour")], max_seconds=47.0) == [
            EffectTiming(2, 0.25, 1.5)]
        requests = fake.chat_requests()
    assert len(requests) == 4  # each question answered badly once, then well
    assert "index 2 appears twice" in requests[1]["last_user"]
    assert "does not fit its 2.00 s segment" in requests[3]["last_user"]
    assert {r["response_format"] for r in requests} == {"json_schema"}


# ---------------------------------------------------------------- offline synthesis

@pytest.mark.parametrize("sound", sfx.SOUNDS, ids=lambda s: s.name)
def test_every_offline_sound_is_made_deterministically(sound: sfx.Sound) -> None:
    phrase = sfx.describe([sound])
    assert [s.name for s in sfx.match_sounds(phrase)] == [sound.name]
    samples = sfx.synthesize(phrase, 4.0, 22050, seed=3)
    assert samples.dtype == np.float32 and len(samples) == 4 * 22050
    assert 0.05 < float(np.max(np.abs(samples))) <= 0.89 + 1e-6
    assert np.array_equal(samples, sfx.synthesize(phrase, 4.0, 22050, seed=3))
    assert not np.array_equal(samples, sfx.synthesize(phrase, 4.0, 22050, seed=4))


def _centroid(samples: np.ndarray, rate: int) -> float:
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    return float((np.fft.rfftfreq(len(samples), 1 / rate) * power).sum() / power.sum())


def test_offline_sounds_sound_like_what_they_are() -> None:
    rate = 22050
    rain, wind, thunder = (sfx.synthesize(d, 6.0, rate, 1) for d in ("steady rain", "gusting wind", "rolling thunder"))
    assert _centroid(rain, rate) > 2000 > 600 > _centroid(wind, rate)  # a hiss against a rush
    assert _centroid(thunder, rate) < 200  # a rumble
    bell = sfx.synthesize("a small bell", 3.0, rate, 1).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(bell))
    assert abs(np.fft.rfftfreq(len(bell), 1 / rate)[np.argmax(spectrum)] - 523.0) < 5  # its strike tone
    knocks = sfx.synthesize("three knocks", 1.5, rate, 1)
    block = rate // 100  # 10 ms
    envelope = np.abs(knocks[: len(knocks) // block * block]).reshape(-1, block).max(axis=1)
    onsets = np.flatnonzero((envelope[1:] > 0.3) & (envelope[:-1] <= 0.3))
    assert len(onsets) == 3
    assert not sfx.synthesize("a door creaks open", 2.0, rate, 1).any()  # not in the vocabulary: silence


# ---------------------------------------------------------------- sfx.wav layout

def _write(path: Path, samples: np.ndarray, rate: int) -> Path:
    return media.write_wav(path, samples, rate)


def test_slots_are_sample_exact_and_meet() -> None:
    plan = parse_timeline("0.333: Silence\n0.333: A knock\n0.334: Silence\n", source="p")
    assert [(a, b) for a, b, _ in sfx_track.slots(plan, 44100, 44100)] == [(0, 14685), (14685, 29371), (29371, 44100)]
    assert [(a, b) for a, b, _ in sfx_track.slots(plan, 44100, 20000)] == [(0, 14685), (14685, 20000)]


def test_track_places_clips_to_the_sample_and_matches_the_story(tmp_path: Path) -> None:
    rate = 16000
    plan = parse_timeline("0.5: Silence\n0.25: A knock\n0.6: Silence\n1.0: Rain\n", source="p")
    story = sfx_track.WavInfo(int(2.35 * rate) + 3, rate, 1)  # a few samples longer than the plan: padded
    knock = _write(tmp_path / "k.wav", np.full(rate, 0.5, dtype=np.float32), rate)  # 1 s clip for a 0.25 s slot
    stereo = np.stack([np.full(2000, 0.25), np.full(2000, 0.25)], axis=1).astype(np.float32)  # 0.25 s at 8 kHz
    rain = _write(tmp_path / "r.wav", stereo, 8000)  # other rate, stereo, shorter than its slot: converted, padded
    clips = {sfx_track.clip_key("A knock", 0.25): knock, sfx_track.clip_key("Rain", 1.0): rain}
    stats = sfx_track.build_sfx_track(plan, clips, story, tmp_path / "sfx.wav")
    samples, got_rate = media.read_wav(tmp_path / "sfx.wav")
    assert (got_rate, samples.ndim, len(samples), stats.effects) == (rate, 1, story.frames, 2)
    start, fade = int(0.5 * rate), int(sfx_track.FADE_IN * rate)
    assert not samples[:start].any()
    full = samples[start + fade]  # the clip's constant level, reached after the fade-in
    expected_fade = np.round(full * sfx_track._ramp(fade)).astype(np.int16)
    assert np.array_equal(samples[start:start + fade], expected_fade)  # the knock starts exactly at its slot
    assert not samples[int(0.75 * rate):int(1.35 * rate)].any()  # cut at its slot's end
    assert samples[int(0.6 * rate)] == round(0.5 * 32767)
    rain_part = samples[int(1.35 * rate):int(2.35 * rate)]
    assert rain_part[: rate // 4].any() and not rain_part[rate // 4 + 10:].any()  # 0.25 s of clip, then padding
    assert not samples[int(2.35 * rate):].any()


def test_a_plan_for_another_take_is_refused() -> None:
    from common.run.errors import InputError

    plan = parse_timeline("10.0: Silence\n", source="p")
    sfx_track.check_length(plan, sfx_track.WavInfo(int(10.5 * 8000), 8000, 1))
    with pytest.raises(InputError, match="4.sfx.txt lasts 10.00 s but story.wav lasts 30.00 s"):
        sfx_track.check_length(plan, sfx_track.WavInfo(30 * 8000, 8000, 1))


def test_sfx_wav_header_is_plain_pcm(tmp_path: Path) -> None:
    plan = parse_timeline("1.0: Silence\n", source="p")
    sfx_track.build_sfx_track(plan, {}, sfx_track.WavInfo(8000, 8000, 1), tmp_path / "s.wav")
    with wave.open(str(tmp_path / "s.wav"), "rb") as handle:
        assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate(), handle.getnframes()) == (1, 2, 8000, 8000)
