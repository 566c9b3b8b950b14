"""common.media.ffmpeg against the real ffmpeg binary and real files."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from common.media import ffmpeg as media
from common.run.errors import ConfigError, InputError, PipelineError

SR = 44100


def tone(freq: float, seconds: float, amplitude: float = 0.5, sr: int = SR, phase: float = 1.0) -> np.ndarray:
    # A non-zero start phase makes the raw edges jump, which a join without fades would expose.
    t = np.arange(int(round(seconds * sr))) / sr
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t + phase)).astype(np.int16)


def max_step(samples: np.ndarray) -> int:
    return int(np.max(np.abs(np.diff(samples.astype(np.int32)))))


def test_write_then_read_wav_round_trips_exactly(tmp_path: Path) -> None:
    samples = tone(440, 0.25)
    target = media.write_wav(tmp_path / "a.wav", samples, SR)
    back, sr = media.read_wav(target)
    assert sr == SR and back.dtype == np.int16
    assert np.array_equal(back, samples)
    as_float, _ = media.read_wav(target, dtype="float32")
    assert as_float.dtype == np.float32 and np.allclose(as_float, samples / 32768.0)
    assert not list(tmp_path.glob(".*.tmp*")), "the temporary file was left behind"


def test_write_wav_accepts_float_and_stereo(tmp_path: Path) -> None:
    stereo = np.stack([np.linspace(-1.5, 1.5, 100), np.zeros(100)], axis=1)
    media.write_wav(tmp_path / "s.wav", stereo, 22050)
    back, sr = media.read_wav(tmp_path / "s.wav")
    assert sr == 22050 and back.shape == (100, 2)
    assert back[0, 0] == -32767 and back[-1, 0] == 32767  # clipped, not wrapped
    assert media.audio_duration(tmp_path / "s.wav") == pytest.approx(100 / 22050, abs=0)


def test_silence_is_sample_exact() -> None:
    assert len(media.silence(1.5, 44100)) == 66150
    assert not media.silence(0.01, 8000).any()
    assert len(media.silence(-1, 8000)) == 0


def test_read_wav_refuses_non_wav_with_a_sentence(tmp_path: Path) -> None:
    bogus = tmp_path / "x.wav"
    bogus.write_bytes(b"not a wav at all")
    with pytest.raises(InputError, match="not a PCM WAV"):
        media.read_wav(bogus)
    with pytest.raises(InputError, match="does not exist"):
        media.read_wav(tmp_path / "missing.wav")


def test_concat_joins_without_clicks_and_reports_exact_spans(tmp_path: Path) -> None:
    first, second = tone(440, 0.5, phase=1.3), tone(660, 0.3, phase=-np.pi / 2)
    a = media.write_wav(tmp_path / "a.wav", first, SR)
    b = media.write_wav(tmp_path / "b.wav", second, SR)
    # Without fades the join would jump by |first[-1] - second[0]|, far above a tone's own steps.
    assert abs(int(first[-1]) - int(second[0])) > 3 * max(max_step(first), max_step(second))

    spans = media.concat_wavs([a, b], tmp_path / "out.wav", sample_rate=SR)
    out, sr = media.read_wav(tmp_path / "out.wav")
    assert sr == SR and len(out) == len(first) + len(second)
    assert spans == [(0.0, len(first) / SR), (len(first) / SR, (len(first) + len(second)) / SR)]
    join = len(first)
    window = out[join - 400: join + 400]
    assert max_step(window) <= max(max_step(first), max_step(second)) + 2
    assert abs(int(out[join - 1])) < 300 and abs(int(out[join])) < 300  # faded to ~0 at the edges
    # Away from the edges the audio is untouched.
    assert np.array_equal(out[1000:join - 1000], first[1000:-1000])
    # The same join with fades turned off clicks: the check above has teeth.
    media.concat_wavs([a, b], tmp_path / "raw.wav", sample_rate=SR, fade_ms=0)
    raw, _ = media.read_wav(tmp_path / "raw.wav")
    assert max_step(raw[join - 400: join + 400]) > 10 * max(max_step(first), max_step(second))


def test_concat_with_gap_resamples_and_converts_inputs(tmp_path: Path) -> None:
    a = media.write_wav(tmp_path / "a.wav", tone(300, 0.2, sr=22050), 22050)  # other rate
    b = tmp_path / "b.mp3"
    media.run_ffmpeg(["-f", "lavfi", "-i", "sine=f=500:d=0.5", "-c:a", "libmp3lame", media.ff_path(b)], what="test")
    c = media.write_wav(tmp_path / "c.wav", tone(700, 0.1), SR)

    spans = media.concat_wavs([a, b, c], tmp_path / "out.wav", sample_rate=SR, gap_seconds=0.25)
    total = media.audio_duration(tmp_path / "out.wav")
    gap = 0.25
    assert spans[0] == (0.0, pytest.approx(0.2, abs=2 / SR))
    assert spans[1][0] == pytest.approx(spans[0][1] + gap, abs=0.5 / SR)
    assert spans[2][0] == pytest.approx(spans[1][1] + gap, abs=0.5 / SR)
    assert spans[2][1] == total
    out, _ = media.read_wav(tmp_path / "out.wav")
    gap_samples = out[int(round(spans[0][1] * SR)): int(round(spans[1][0] * SR))]
    assert len(gap_samples) == int(gap * SR) and not gap_samples.any()
    assert list(tmp_path.glob(".concat.*")) == [], "scratch conversions were left behind"


def test_concat_streams_long_inputs_in_blocks(tmp_path: Path) -> None:
    # Longer than one streaming block, so fades land in different blocks than the middle.
    long = tone(220, 3.2)
    a = media.write_wav(tmp_path / "a.wav", long, SR)
    spans = media.concat_wavs([a, a], tmp_path / "out.wav", sample_rate=SR, fade_ms=20)
    out, _ = media.read_wav(tmp_path / "out.wav")
    assert len(out) == 2 * len(long) and spans[1] == (len(long) / SR, 2 * len(long) / SR)
    fade = int(round(0.02 * SR))
    assert np.array_equal(out[fade:len(long) - fade], long[fade:-fade])
    assert max_step(out) <= max_step(long) + 2


def test_mp3_to_wav_and_duration(tmp_path: Path) -> None:
    mp3 = tmp_path / "tone.mp3"
    media.run_ffmpeg(["-f", "lavfi", "-i", "sine=f=440:d=2", "-ac", "2", "-c:a", "libmp3lame", media.ff_path(mp3)],
                     what="making a test mp3")
    wav = media.to_wav(mp3, tmp_path / "out" / "tone.wav", sample_rate=48000)
    with wave.open(str(wav)) as handle:
        assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) == (1, 2, 48000)
    assert media.audio_duration(wav) == pytest.approx(2.0, abs=0.05)
    assert media.audio_duration(mp3) == pytest.approx(2.0, abs=0.1)
    samples, _ = media.read_wav(wav)
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 1000  # real sound, not silence


def test_probe_reports_a_generated_mp4(tmp_path: Path) -> None:
    mp4 = tmp_path / "clip.mp4"
    media.run_ffmpeg(
        ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=2", "-f", "lavfi", "-i", "sine=f=440:d=2",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart",
         media.ff_path(mp4)],
        what="making a test video",
    )
    info = media.probe(mp4)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    video, audio = info.video, info.audio
    assert video is not None and audio is not None
    assert (video.codec, video.width, video.height, video.pix_fmt) == ("h264", 320, 240, "yuv420p")
    assert video.fps == pytest.approx(25) and video.frames == 50
    assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 44100, 1)


def test_probe_refuses_a_non_media_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="not a media file"):
        media.probe(junk)


def test_loudness_of_a_known_tone(tmp_path: Path) -> None:
    # A 997 Hz sine at peak amplitude A reads 20*log10(A) - 3.01 LUFS (EBU Tech 3341).
    wav = media.write_wav(tmp_path / "t.wav", tone(997, 4.0, amplitude=0.1), SR)
    loudness = media.measure_loudness(wav)
    assert loudness.integrated_lufs == pytest.approx(-23.0, abs=1.0)
    assert loudness.true_peak_dbtp == pytest.approx(-20.0, abs=0.6)
    quiet = media.write_wav(tmp_path / "q.wav", media.silence(2.0, SR), SR)
    lufs, peak = media.measure_loudness(quiet)
    assert lufs <= -69 and peak == float("-inf")


def test_ffmpeg_failure_is_one_sentence_with_its_last_words(tmp_path: Path) -> None:
    with pytest.raises(media.FFmpegError) as caught:
        media.run_ffmpeg(["-f", "lavfi", "-i", "nosuchfilter=x=1", "-f", "null", "-"], what="testing a bad filter")
    error = caught.value
    assert isinstance(error, PipelineError)
    message = str(error)
    assert message.startswith("ffmpeg failed while testing a bad filter: ") and "\n" not in message
    assert "nosuchfilter" in error.stderr_tail or "nosuchfilter" in message


def test_paths_that_look_like_options_are_safe(tmp_path: Path) -> None:
    odd = tmp_path / "-y:odd name.wav"
    media.write_wav(odd, tone(440, 0.1), SR)
    converted = media.to_wav(odd, tmp_path / "-out:1.wav", sample_rate=SR)
    assert media.read_wav(converted)[0].shape == (int(0.1 * SR),)


def test_ffmpeg_binary_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = media.ffmpeg_exe()
    monkeypatch.setenv("FFMPEG_BINARY", real)
    assert media.ffmpeg_exe() == real
    monkeypatch.setenv("FFMPEG_BINARY", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="FFMPEG_BINARY"):
        media.ffmpeg_exe()
