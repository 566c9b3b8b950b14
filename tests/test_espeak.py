"""The offline speech engine, speaking for real through libespeak-ng."""
from __future__ import annotations

import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from common.media import ffmpeg as media
from common.run.errors import ConfigError
from common.offline import espeak

SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest."


def speak(tmp_path: Path, text: str, voice: espeak.EspeakVoice, name: str = "out.wav", **kw) -> tuple[np.ndarray, float]:
    seconds = espeak.synthesize(text, voice, tmp_path / name, **kw)
    samples, sr = media.read_wav(tmp_path / name)
    assert sr == kw.get("sample_rate", 44100)
    assert seconds == pytest.approx(len(samples) / sr, abs=0)
    return samples, seconds


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def median_f0(samples: np.ndarray, sr: int = 44100) -> float:
    """Median fundamental frequency of the voiced frames, by autocorrelation (via FFT)."""
    frame, hop, found = 2048, 1024, []
    low, high = int(sr / 400), int(sr / 60)
    x = samples.astype(np.float64)
    for start in range(0, len(x) - frame, hop):
        piece = x[start:start + frame]
        if rms(piece) < 1000:
            continue
        piece = piece - piece.mean()
        spectrum = np.fft.rfft(piece, 2 * frame)
        ac = np.fft.irfft(np.abs(spectrum) ** 2)[:frame]
        lag = low + int(np.argmax(ac[low:high]))
        if ac[lag] > 0.3 * ac[0]:
            found.append(sr / lag)
    assert len(found) > 10, "too few voiced frames to measure pitch"
    return float(np.median(found))


def test_a_sentence_becomes_plausible_speech(tmp_path: Path) -> None:
    samples, seconds = speak(tmp_path, SENTENCE, espeak.voice_for("m", 0))
    assert 2.0 < seconds < 10.0
    assert rms(samples) > 1000
    with wave.open(str(tmp_path / "out.wav")) as handle:
        assert (handle.getnchannels(), handle.getsampwidth()) == (1, 2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "scratch files were left behind"


def test_other_sample_rates(tmp_path: Path) -> None:
    samples, seconds = speak(tmp_path, "Short line.", espeak.voice_for("f", 0), sample_rate=22050)
    assert 0.5 < seconds < 5 and rms(samples) > 500


def test_male_and_female_voices_differ_in_pitch(tmp_path: Path) -> None:
    male, _ = speak(tmp_path, SENTENCE, espeak.voice_for("m", 0), "m.wav")
    female, _ = speak(tmp_path, SENTENCE, espeak.voice_for("f", 0), "f.wav")
    f_male, f_female = median_f0(male), median_f0(female)
    assert f_male < 140 < f_female
    assert f_female / f_male > 1.5


def test_neighbouring_voices_of_one_gender_differ(tmp_path: Path) -> None:
    first, _ = speak(tmp_path, SENTENCE, espeak.voice_for("m", 0), "0.wav")
    second, _ = speak(tmp_path, SENTENCE, espeak.voice_for("m", 1), "1.wav")
    assert abs(median_f0(first) / median_f0(second) - 1) > 0.08


def test_same_text_and_voice_give_identical_samples(tmp_path: Path) -> None:
    voice = espeak.voice_for("f", 2)
    first, _ = speak(tmp_path, SENTENCE, voice, "a.wav")
    speak(tmp_path, "Something else entirely, said by someone else!", espeak.voice_for("m", 3), "other.wav")
    again, _ = speak(tmp_path, SENTENCE, voice, "b.wav")
    assert np.array_equal(first, again)


def test_many_calls_in_one_process_and_from_threads(tmp_path: Path) -> None:
    jobs = [(f"Line number {i}, spoken by voice {i}.", espeak.voice_for("mfn"[i % 3], i // 3), f"{i}.wav")
            for i in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        seconds = list(pool.map(lambda job: espeak.synthesize(job[0], job[1], tmp_path / job[2]), jobs))
    assert all(0.5 < s < 10 for s in seconds)
    clips = [media.read_wav(tmp_path / name)[0] for _, _, name in jobs]
    assert all(rms(c) > 500 for c in clips)
    # Serial re-runs give the same samples as the concurrent ones.
    text, voice, name = jobs[5]
    again, _ = speak(tmp_path, text, voice, "again.wav")
    assert np.array_equal(again, clips[5])


@pytest.mark.parametrize("text", [
    'She said, "Don\'t go!" \u2014 and he replied \u2018fine\u2019.',
    "Party time \U0001F389\U0001F600 with friends \U0001F468\u200D\U0001F469\u200D\U0001F467!",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd and \u0645\u0631\u062d\u0628\u0627 \u200fmixed\u200e with English.",
    "Odd <tags> [[phonemes]] {braces} & ampersands\x00 and a NUL.",
])
def test_awkward_text_does_not_crash(tmp_path: Path, text: str) -> None:
    samples, seconds = speak(tmp_path, text, espeak.voice_for("n", 0))
    assert seconds > 0.5 and rms(samples) > 300


def test_nothing_speakable_becomes_a_short_pause(tmp_path: Path) -> None:
    for text in ("", "   \n\t", "..."):
        samples, seconds = speak(tmp_path, text, espeak.voice_for("n", 0))
        assert seconds == 0.25 and not samples.any()


def test_long_text_is_split_at_sentences_and_spoken_whole(tmp_path: Path) -> None:
    sentences = [f"This is sentence number {i} of a rather long monologue." for i in range(60)]
    text = " ".join(sentences)
    chunks = espeak.split_text(text)
    assert len(chunks) > 1 and all(len(c) <= espeak.MAX_CHUNK_CHARS for c, _ in chunks)
    assert all(c.endswith(".") and ends for c, ends in chunks)
    assert " ".join(c for c, _ in chunks) == text
    _, seconds = speak(tmp_path, text, espeak.voice_for("n", 0))
    _, one = speak(tmp_path, sentences[7], espeak.voice_for("n", 0), "one.wav")
    assert 40 * one < seconds < 90 * one


def test_split_text_cuts_run_on_lines_at_clauses_then_words() -> None:
    clause = "and the rain kept falling on the roof of the old house"
    text = ", ".join([clause] * 30) + "."
    chunks = espeak.split_text(text, max_chars=120)
    assert all(len(c) <= 120 for c, _ in chunks)
    assert [ends for _, ends in chunks] == [False] * (len(chunks) - 1) + [True]
    assert " ".join(c for c, _ in chunks) == text
    assert all(len(c) <= 50 for c, _ in espeak.split_text("x" * 120 + " " + "y" * 10, max_chars=50))


def test_voice_for_gives_distinct_real_variants() -> None:
    shipped = {p.name for p in (Path(espeak._locate().data) / "voices" / "!v").iterdir()}
    seen_variants = {}
    for gender in ("m", "f", "n"):
        voices = [espeak.voice_for(gender, i) for i in range(25)]
        assert len({(v.name, v.pitch) for v in voices}) == 25
        for a, b in zip(voices, voices[1:]):
            assert a.name != b.name and a.rate != b.rate
        variants = {v.variant for v in voices}
        assert variants <= shipped
        seen_variants[gender] = variants
        assert voices == [espeak.voice_for(gender, i) for i in range(25)]  # a pure function
    assert not (seen_variants["m"] & seen_variants["f"])
    assert not (seen_variants["n"] & (seen_variants["m"] | seen_variants["f"]))
    assert espeak.voice_for("male", 2) == espeak.voice_for("m", 2)
    assert espeak.voice_for("female", 2) == espeak.voice_for("F", 2)
    assert espeak.voice_for("unknown", 1) == espeak.voice_for("n", 1)


def test_bad_voices_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no voice variant 'nosuch'"):
        espeak.synthesize("Hi.", espeak.EspeakVoice("en+nosuch"), tmp_path / "x.wav")
    with pytest.raises(ConfigError, match="no voice 'zz-nowhere'"):
        espeak.synthesize("Hi.", espeak.EspeakVoice("zz-nowhere"), tmp_path / "x.wav")
    with pytest.raises(ConfigError, match="words per minute"):
        espeak.EspeakVoice("en", rate=20)
    with pytest.raises(ConfigError, match="pitch"):
        espeak.EspeakVoice("en", pitch=140)
    assert not (tmp_path / "x.wav").exists()


def test_missing_library_is_one_config_sentence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import espeakng_loader

    monkeypatch.setattr(espeak, "_engine", None)
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(tmp_path / "libespeak-ng.so"))
    with pytest.raises(ConfigError) as caught:
        espeak.synthesize("Hello.", espeak.EspeakVoice("en"), tmp_path / "x.wav")
    assert str(caught.value) == espeak.MISSING
