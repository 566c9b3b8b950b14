"""common.audio.mix and 8.combine.py on synthetic audio: loudness targets, ducking, length, checkpoints."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from common.run.errors import ConfigError, InputError
from common.media.ffmpeg import measure_loudness, read_wav, write_wav
from common.audio.mix import (
    MixSettings, find_music, levels_for, mix_graph, mix_story, music_dir_for, plan_normalisation, upstream_preview,
)
from tests.support.project import copy_pipeline, env_for, run_script

RATE = 44100
LEAD = 0.5  # seconds of silence before the first burst
TALK, PAUSE, CYCLES = 2.5, 3.0, 3  # speech bursts and pauses: the pauses outlast the ducking's release
TONE = 1000.0  # the SFX are a steady tone, so their level can be read in a narrow band under the speech

pytestmark = pytest.mark.timeout(120)


def speech_like(level_db: float = -20.0, seed: int = 1) -> np.ndarray:
    """Syllable-modulated noise bursts with pauses between them, at about `level_db` RMS while talking."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(LEAD * RATE))]
    for _ in range(CYCLES):
        n = int(TALK * RATE)
        t = np.arange(n) / RATE
        parts.append(rng.standard_normal(n) * (0.4 + 0.6 * np.sin(2 * np.pi * 4 * t) ** 2))
        parts.append(np.zeros(int(PAUSE * RATE)))
    out = np.concatenate(parts)
    talking = out[out != 0]
    return out * (10 ** (level_db / 20) / np.sqrt(np.mean(talking**2)))


def speech_windows() -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(mid-speech windows, late-pause windows) in seconds, clear of the attack and release."""
    talk, pause = [], []
    for k in range(CYCLES):
        start = LEAD + k * (TALK + PAUSE)
        talk.append((start + 0.5, start + TALK - 0.2))
        pause.append((start + TALK + PAUSE - 1.2, start + TALK + PAUSE - 0.1))
    return talk, pause


def tone(n: int, level_db: float, rate: int = RATE, freq: float = TONE) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / rate) * 10 ** (level_db / 20) * np.sqrt(2)


def band_db(samples: np.ndarray, rate: int, start: float, end: float, freq: float = TONE) -> float:
    """RMS in dB of the +-4 Hz band around `freq` in [start, end): the SFX level under the speech."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    chunk = mono[int(start * rate):int(end * rate)]
    window = np.hanning(len(chunk))
    spectrum = np.fft.rfft(chunk * window)
    freqs = np.fft.rfftfreq(len(chunk), 1 / rate)
    band = np.abs(freqs - freq) <= 4
    power = 2 * np.sum(np.abs(spectrum[band]) ** 2) / (np.sum(window**2) * len(chunk))
    return 10 * np.log10(power + 1e-20)


def frames_of(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes(), handle.getframerate(), handle.getnchannels()


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    speech = speech_like()
    paths = {"story": tmp_path / "story.wav", "sfx": tmp_path / "sfx.wav", "music": tmp_path / "music.wav"}
    write_wav(paths["story"], speech, RATE)
    write_wav(paths["sfx"], tone(len(speech), -30.0), RATE)
    music = tone(2 * RATE, -20.0, freq=220.0)  # 2 s, so it must loop to cover the story
    write_wav(paths["music"], np.stack([music, music], axis=1), RATE)
    return paths


def assert_on_target(path: Path) -> None:
    integrated, peak = measure_loudness(path)
    assert abs(integrated - -14.0) <= 1.0, integrated
    assert peak <= -1.0, peak


# --------------------------------------------------------------------------- mixing


def test_speech_sfx_and_music_mix_to_minus_14_lufs_48k_stereo(inputs, tmp_path):
    out = tmp_path / "final.wav"
    result = mix_story(inputs["story"], out, sfx=inputs["sfx"], music=inputs["music"], say=lambda m: None)
    assert_on_target(out)
    story_frames, _, _ = frames_of(inputs["story"])
    frames, rate, channels = frames_of(out)
    assert (rate, channels) == (48000, 2)
    # Resampled 44.1 -> 48 kHz, the length is kept to the nearest output sample (~10 us).
    assert frames == round(story_frames * 48000 / RATE) == result.samples
    assert abs(frames / rate - story_frames / RATE) <= 0.5 / rate
    assert result.normalization == "linear"
    assert result.loudness == measure_loudness(out)
    assert not list(tmp_path.glob(".final.*"))  # no temp file left behind


def test_at_44k1_the_length_is_story_wav_sample_for_sample(inputs, tmp_path):
    out = tmp_path / "final.wav"
    mix_story(inputs["story"], out, sfx=inputs["sfx"], music=None, settings=MixSettings(sample_rate=44100),
              say=lambda m: None)
    assert frames_of(out) == (frames_of(inputs["story"])[0], 44100, 2)
    assert_on_target(out)


def test_speech_ducks_the_sfx(inputs, tmp_path):
    out = tmp_path / "final.wav"
    mix_story(inputs["story"], out, sfx=inputs["sfx"], music=None, say=lambda m: None)
    samples, rate = read_wav(out, dtype="float32")
    talk, pause = speech_windows()
    under_speech = [band_db(samples, rate, a, b) for a, b in talk]
    in_pauses = [band_db(samples, rate, a, b) for a, b in pause]
    # Every window under speech is clearly quieter than every pause window (the defaults duck ~12 dB).
    assert max(under_speech) < min(in_pauses) - 8.0, (under_speech, in_pauses)
    # Without ducking (ratio 1) the tone is as loud under speech as in the pauses.
    flat = tmp_path / "flat.wav"
    mix_story(inputs["story"], flat, sfx=inputs["sfx"], music=None, settings=MixSettings(duck_ratio=1.0),
              say=lambda m: None)
    samples, rate = read_wav(flat, dtype="float32")
    levels = [band_db(samples, rate, a, b) for a, b in talk + pause]
    assert max(levels) - min(levels) < 1.0, levels


def test_speech_stays_in_place(inputs, tmp_path):
    out = tmp_path / "final.wav"
    mix_story(inputs["story"], out, sfx=None, music=None, say=lambda m: None)
    samples, rate = read_wav(out, dtype="float32")
    speech, _ = read_wav(inputs["story"], dtype="float32")

    def onset(x: np.ndarray, sr: int) -> float:
        x = np.abs(x)
        return float(np.argmax(x > 0.05 * x.max()) / sr)

    # The first burst starts where it started in story.wav: no delay from resampling or loudnorm.
    assert abs(onset(samples.mean(axis=1), rate) - onset(speech, RATE)) < 0.002


def test_music_bed_loops_under_the_story_with_fades(inputs, tmp_path):
    out = tmp_path / "final.wav"
    mix_story(inputs["story"], out, sfx=None, music=inputs["music"], settings=MixSettings(music_fade=0.4),
              say=lambda m: None)
    assert_on_target(out)
    samples, rate = read_wav(out, dtype="float32")
    # The 2-s music file covers the whole story (looped), faded in at the start and out at the end.
    _, pause = speech_windows()
    bed = [band_db(samples, rate, a, b, 220.0) for a, b in pause]
    assert max(bed) - min(bed) < 1.5, bed
    assert band_db(samples, rate, 0.0, 0.1, 220.0) < min(bed) - 10
    end = len(samples) / rate
    assert band_db(samples, rate, end - 0.1, end, 220.0) < min(bed) - 10


@pytest.mark.parametrize("level_db", [-42.0, -3.0])
def test_quiet_and_loud_speech_both_end_at_minus_14(tmp_path, level_db):
    story, sfx = tmp_path / "story.wav", tmp_path / "sfx.wav"
    speech = speech_like(level_db, seed=5)
    write_wav(story, speech, RATE)
    write_wav(sfx, tone(len(speech), level_db - 10), RATE)
    out = tmp_path / "final.wav"
    result = mix_story(story, out, sfx=sfx, music=None, say=lambda m: None)
    assert_on_target(out)
    assert result.speech_lufs == pytest.approx(level_db, abs=4)


def test_peaky_effects_fall_back_to_dynamic_mode_and_still_meet_the_targets(inputs, tmp_path):
    speech, _ = read_wav(inputs["story"], dtype="float32")
    effects = np.zeros(len(speech))
    for at in (1.0, 3.7, 9.2, 14.0):  # gunshot-like clicks near full scale, in pauses and under speech
        i = int(at * RATE)
        effects[i:i + 400] = np.sign(np.sin(np.arange(400) / 3.0)) * 0.99 * np.exp(-np.arange(400) / 80)
    write_wav(inputs["sfx"], effects, RATE)
    out = tmp_path / "final.wav"
    result = mix_story(inputs["story"], out, sfx=inputs["sfx"], music=None, settings=MixSettings(sfx_volume_db=0),
                       say=lambda m: None)
    assert result.normalization == "dynamic"
    assert_on_target(out)


def test_silent_story_is_refused(tmp_path):
    story = tmp_path / "story.wav"
    write_wav(story, np.zeros(5 * RATE), RATE)
    with pytest.raises(InputError, match="silent"):
        mix_story(story, tmp_path / "final.wav", sfx=None, music=None, say=lambda m: None)
    assert not (tmp_path / "final.wav").exists()


# --------------------------------------------------------------------------- pieces


def test_linear_only_when_the_gain_keeps_the_true_peak_under_the_limit():
    settings = MixSettings()
    quiet_peaks = {"input_i": -24.0, "input_tp": -12.0, "input_lra": 9.5, "input_thresh": -34.0}
    plan = plan_normalisation(settings, quiet_peaks)
    assert plan.linear and ":linear=true" in plan.loudnorm()
    assert plan.target_lra == 9.5  # the target LRA never forces dynamic mode
    assert ":offset=0.00" in plan.loudnorm(2.5)  # linear mode is one exact gain: nothing to correct
    hot_peaks = dict(quiet_peaks, input_tp=-4.0)  # +10 dB of gain would put the peak at +6 dBTP
    dynamic = plan_normalisation(settings, hot_peaks)
    assert not dynamic.linear and ":offset=2.50:linear=false" in dynamic.loudnorm(2.5)
    short = dict(quiet_peaks, input_lra=0.0)  # under 3 s: loudnorm reads LRA 0 as "not measured"
    assert "measured_LRA=0.01" in plan_normalisation(settings, short).loudnorm()


def test_graph_ducks_only_when_there_is_a_bed():
    settings = MixSettings()
    levels = levels_for(settings, speech_lufs=-26.0, music_lufs=-16.0)
    assert levels.key_gain_db == pytest.approx(6.0)  # the key is brought to -20 LUFS
    assert levels.music_gain_db == pytest.approx(-26.0 - 18.0 + 16.0)  # music 18 dB under the speech
    alone = mix_graph(settings, levels, 48000, sfx=False, music=False)
    assert "sidechaincompress" not in alone and alone.endswith("[mix]")
    full = mix_graph(settings, levels, 48000, sfx=True, music=True)
    assert "[bed][key]sidechaincompress" in full and "[2:a]" in full and "afade=t=out" in full
    assert "channel_layouts=mono,volume=6.000dB[key]" in full  # a mono key: no 3 dB upmix offset


def test_music_is_chosen_explicitly(tmp_path):
    music_dir = tmp_path / "music"
    music_dir.mkdir()
    (music_dir / "calm.mp3").write_bytes(b"x")
    assert find_music(music_dir, "") is None
    assert find_music(music_dir, "calm.mp3") == music_dir / "calm.mp3"
    with pytest.raises(ConfigError, match="calm.mp3"):  # the error lists what is there
        find_music(music_dir, "missing.mp3")


def test_music_dir_defaults_to_the_pipeline_music_folder(tmp_path):
    assert music_dir_for(tmp_path, "") == tmp_path / "music"
    assert music_dir_for(tmp_path, "beds") == tmp_path / "beds"
    assert music_dir_for(tmp_path, str(tmp_path / "x")) == tmp_path / "x"


def test_final_is_a_preview_when_speech_or_effects_were(tmp_path):
    tracking = tmp_path / "output" / "tracking"
    tracking.mkdir(parents=True)
    assert upstream_preview(tmp_path) is False
    (tracking / "2.story.state.json").write_text(json.dumps({"items": {"story.wav": {"fingerprint": "f"}}}))
    (tracking / "7.sfx.state.json").write_text("{not json")
    assert upstream_preview(tmp_path) is False
    (tracking / "7.sfx.state.json").write_text(json.dumps({"items": {"sfx.wav": {"preview": True}}}))
    assert upstream_preview(tmp_path) is True


def test_out_of_range_settings_are_config_errors():
    with pytest.raises(ConfigError, match="DUCK_RATIO"):
        MixSettings(duck_ratio=50)
    with pytest.raises(ConfigError, match="FINAL_SAMPLE_RATE"):
        MixSettings(sample_rate=22050)


# --------------------------------------------------------------------------- 8.combine.py


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    pipeline = copy_pipeline(tmp_path)
    (pipeline / "output").mkdir()
    speech = speech_like()
    write_wav(pipeline / "output" / "story.wav", speech, RATE)
    return pipeline


def _state(pipeline: Path) -> dict:
    return json.loads((pipeline / "output" / "tracking" / "8.combine.state.json").read_text())["items"]


def test_script_without_sfx_mixes_speech_alone(pipeline):
    proc = run_script(pipeline, "8.combine.py", env=env_for(), timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "mixing the speech alone" in proc.stdout
    final = pipeline / "output" / "final.wav"
    assert_on_target(final)
    assert _state(pipeline)["final.wav"]["data"]["sfx"] is None


def test_script_rerun_is_a_no_op_until_an_input_or_setting_changes(pipeline):
    speech, _ = read_wav(pipeline / "output" / "story.wav", dtype="float32")
    sfx = tone(len(speech) + RATE // 2, -30.0, rate=RATE)  # half a second too long: padded/cut, with a warning
    write_wav(pipeline / "output" / "sfx.wav", sfx, RATE)
    first = run_script(pipeline, "8.combine.py", env=env_for(), timeout=90)
    assert first.returncode == 0, first.stderr
    assert "warning: sfx.wav is" in first.stdout
    final = pipeline / "output" / "final.wav"
    stamp = final.stat().st_mtime_ns
    recorded = _state(pipeline)["final.wav"]

    again = run_script(pipeline, "8.combine.py", env=env_for(), timeout=90)
    assert again.returncode == 0, again.stderr
    assert "measuring the mix" not in again.stdout
    assert final.stat().st_mtime_ns == stamp and _state(pipeline)["final.wav"] == recorded

    louder = run_script(pipeline, "8.combine.py", env=env_for(SFX_VOLUME="0"), timeout=90)
    assert louder.returncode == 0, louder.stderr
    assert "measuring the mix" in louder.stdout
    assert _state(pipeline)["final.wav"]["fingerprint"] != recorded["fingerprint"]


def test_script_names_a_missing_music_file(pipeline):
    proc = run_script(pipeline, "8.combine.py", "--music", "nope.mp3", env=env_for(), timeout=60)
    assert proc.returncode == ConfigError.exit_code
    assert "MUSIC_FILE" in proc.stderr and "nope.mp3" in proc.stderr
    assert not (pipeline / "output" / "final.wav").exists()
