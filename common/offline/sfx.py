"""Procedural sound effects: the offline engine's small, honest vocabulary.

Why this exists: without a sound model the offline engine used to give silence, so an
offline preview had no sound design at all. A few sounds can be made convincingly from
noise and simple physics, with NumPy only: rain (a filtered wash plus droplet clicks), wind
(noise through a band that drifts with the gusts), surf (swells of noise whose brightness
follows each wave), fire (a low roar with clustered crackles), thunder, footsteps, a bell
(inharmonic partials), a murmuring crowd (formant-filtered buzzing voices), knocking, a
ticking clock, birdsong and crickets. That is the whole vocabulary: `match_sounds` says which
of these a description names, the offline text engine only ever proposes these (`describe`),
and a description naming none of them is synthesised as silence rather than as a wrong sound.

Everything is deterministic for a given (description, seconds, sample rate, seed), so a
rerun writes the same clip. The signal building blocks are in common.offline.sfx_dsp.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from common.audio.sfx_plan import words_re as _words
from common.offline import sfx_dsp as dsp

VERSION = 1  # bump when any sound changes, so checkpointed clips are made again
Rng = dsp.Rng
Render = Callable[[int, int, Rng, str], np.ndarray]


@dataclass(frozen=True)
class Sound:
    """One sound the offline engine can make.

    `phrase` is how the offline text engine names it (and it must match `pattern` again);
    `ambience` sounds fill their whole segment, events last about `seconds`. `level_db` is
    an ambience's RMS level and an event's peak level (dBFS): a bed is judged by its
    loudness, a knock by its attack.
    """

    name: str
    phrase: str
    pattern: re.Pattern[str]
    ambience: bool
    seconds: float
    level_db: float
    render: Render


def _has(text: str, *words: str) -> bool:
    return _words(*words).search(text) is not None


# ---------------------------------------------------------------- the sounds

def _rain(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    rate = 3000.0 if _has(text, "heavy", "downpour", "pouring", "torrential", "storm", "stormy") else (
        400.0 if _has(text, "light", "drizzle", "gentle", "soft") else 1200.0)
    wash = dsp.noise(n, sr, rng, 0.7, lo=400.0, hi=7000.0)
    count = int(rate * n / sr)
    train = np.zeros(n)
    # Many similar drops, a few bigger ones: lognormal sizes keep the patter even, not spiky.
    np.add.at(train, rng.integers(0, max(1, n), count), np.minimum(rng.lognormal(0.0, 0.5, count), 4.0) * rng.choice((-1.0, 1.0), count))
    kernel = rng.standard_normal(int(0.004 * sr)) * np.exp(-np.arange(int(0.004 * sr)) / (0.0012 * sr))
    drops = dsp.unit(dsp.spectral(dsp.fftconv(train, kernel), sr, lambda f: dsp.band(f, 1500.0, 9000.0, 2)))
    swell = 1.0 + 0.25 * dsp.smooth_random(n, sr, rng, 0.15)
    return (0.8 * wash + 0.4 * drops) * swell


def _gusts(n: int, sr: int, rng: Rng) -> Callable[[np.ndarray], np.ndarray]:
    """Gust strength in [0, 1] as a function of time, from a slow random curve."""
    rate = 0.25
    knots = rng.uniform(0.0, 1.0, int(n / sr * rate) + 4) ** 1.5

    def strength(t: np.ndarray) -> np.ndarray:
        position = np.clip(t, 0.0, None) * rate
        index = position.astype(np.int64)
        blend = 0.5 - 0.5 * np.cos(np.pi * (position - index))
        return knots[index] * (1 - blend) + knots[index + 1] * blend

    return strength


def _wind(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    gust = _gusts(n, sr, rng)
    howl = _has(text, "howl", "howling", "whistling", "gale", "storm", "stormy")
    base = 220.0 if howl else 160.0

    def magnitude(t: np.ndarray, f: np.ndarray) -> np.ndarray:
        g = gust(t)
        centre = base * 2.0 ** (1.8 * g)
        width = 0.35 if howl else 0.6  # octaves: a narrow band whistles, a wide one rushes
        bump = np.exp(-0.5 * (np.log2(np.maximum(f, 20.0) / centre) / width) ** 2)
        floor = 0.08 * dsp.band(f, 30.0, 400.0, 2)
        return (0.25 + 0.75 * g) * (bump + floor)

    return dsp.stft_noise(n, sr, rng, magnitude)


def _waves(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    seconds = n / sr
    crests: list[tuple[float, float, float, float]] = []  # (crash time, rise, decay, size)
    t = rng.uniform(-1.5, 1.5)
    while t < seconds + 4.0:
        crests.append((t, rng.uniform(1.2, 2.5), rng.uniform(2.5, 4.5), rng.uniform(0.6, 1.0)))
        t += rng.uniform(5.0, 9.0)

    def envelope(times: np.ndarray) -> np.ndarray:
        total = np.zeros_like(times)
        for crash, rise, decay, size in crests:
            before = np.clip((times - (crash - rise)) / rise, 0.0, 1.0) ** 2 * (times < crash)
            after = np.exp(-np.clip(times - crash, 0.0, None) / decay) * (times >= crash)
            total = total + size * (before + after)
        return total

    def magnitude(times: np.ndarray, f: np.ndarray) -> np.ndarray:
        e = envelope(times)
        cutoff = 250.0 + 2800.0 * np.clip(e, 0.0, 1.2)
        return (0.12 + e) * dsp.band(f, 40.0, None, 1) / np.sqrt(1.0 + (f / cutoff) ** 4) * np.maximum(f, 40.0) ** -0.4

    return dsp.stft_noise(n, sr, rng, magnitude)


def _fire(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    roar = dsp.noise(n, sr, rng, 2.0, lo=30.0, hi=250.0) * (1.0 + 0.3 * dsp.smooth_random(n, sr, rng, 1.5))
    hiss = dsp.noise(n, sr, rng, 0.3, lo=2000.0, hi=9000.0)
    crackle = np.zeros(n)
    seconds = n / sr
    for cluster in rng.uniform(0.0, seconds, int(seconds * 2.5)):
        for _ in range(int(rng.integers(1, 9))):
            at = int((cluster + rng.uniform(0.0, 0.06)) * sr)
            size = min(3.0, rng.pareto(2.5) + 0.2)
            dsp.place(crackle, dsp.burst(sr, rng, 0.003, rng.uniform(0.0003, 0.0012), 1200.0, None), at, size)
    for at in rng.uniform(0.0, seconds, int(seconds * 0.3)):
        dsp.place(crackle, dsp.burst(sr, rng, 0.02, 0.006, 150.0, 2500.0), int(at * sr), rng.uniform(2.0, 5.0))
    crackle_rms = float(np.sqrt(np.mean(crackle ** 2))) or 1.0
    return 0.6 * roar + 0.08 * hiss + 0.4 * crackle / crackle_rms


def _thunder(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    seconds = n / sr
    rumble = dsp.noise(n, sr, rng, 2.0, lo=25.0, hi=220.0)
    envelope = np.zeros(n)
    out = np.zeros(n)
    near = not _has(text, "distant", "far", "faint", "rolling")
    t = rng.uniform(0.05, 0.3)
    while t < seconds - 0.5:
        if near:  # a close strike cracks before it rumbles
            dsp.place(out, dsp.burst(sr, rng, 0.08, 0.02, 300.0, 8000.0), int(t * sr), 0.8)
        for _ in range(int(rng.integers(3, 6))):  # each echo off hills and clouds is a swell and a decay
            decay = rng.uniform(0.6, 1.8)
            local = np.arange(int(6 * decay * sr)) / sr
            bump = np.clip(local / 0.12, 0.0, 1.0) * np.exp(-local / decay)
            dsp.place(envelope, bump, int((t + rng.uniform(0.0, 1.5)) * sr), rng.uniform(0.4, 1.0))
        t += rng.uniform(7.0, 14.0)
    return out + rumble * envelope


def _footsteps(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    interval = 0.32 if _has(text, "running", "run", "runs", "rapid", "hurried", "racing") else (
        0.8 if _has(text, "slow", "slowly", "pacing", "heavy", "creeping") else 0.55)
    out = np.zeros(n)
    for number, at in enumerate(dsp.times(n, sr, rng, 0.1, interval, 0.08)):
        foot = 1.0 if number % 2 == 0 else 0.85
        heel = (dsp.burst(sr, rng, 0.09, 0.025, 60.0, 700.0)
                + 0.4 * dsp.ring(sr, [(rng.uniform(110, 160), 1.0, 0.04)], 0.09, rng))
        dsp.place(out, heel, at, foot)
        scuff = dsp.burst(sr, rng, 0.05, 0.015, 800.0, 4000.0)
        dsp.place(out, scuff, at + int(rng.uniform(0.05, 0.07) * sr), 0.35 * foot)
    return out


_BELL = ((0.5, 0.5, 4.0), (1.0, 1.0, 3.0), (1.19, 0.6, 2.2), (1.5, 0.4, 1.8), (2.0, 0.7, 1.6),
         (2.5, 0.25, 1.0), (2.66, 0.3, 0.9), (3.0, 0.2, 0.7), (4.16, 0.15, 0.5))


def _bell(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    large = _has(text, "church", "tower", "tolling", "tolls", "toll", "distant", "great", "large", "deep")
    f0, stretch, interval = (196.0, 2.5, 3.0) if large else (523.0, 1.0, 2.5)
    partials = []
    for ratio, amp, decay in _BELL:  # each partial twice, slightly detuned: a real bell beats
        detune = rng.uniform(0.2, 1.0)
        partials += [(f0 * ratio, amp * 0.5, decay * stretch), (f0 * ratio + detune, amp * 0.5, decay * stretch)]
    strike = dsp.ring(sr, partials, min(n / sr, 4.0 * stretch), rng)
    release = len(strike) // 5  # the ring is cut after a few seconds: fade it out, not off
    strike[len(strike) - release:] *= np.linspace(1.0, 0.0, release)
    click = dsp.burst(sr, rng, 0.005, 0.0015, 1000.0, None)
    strike[: len(click)] += 0.3 * click[: len(strike)]
    out = np.zeros(n)
    for at in dsp.times(n, sr, rng, 0.05, interval, 0.03):
        dsp.place(out, strike, at, rng.uniform(0.85, 1.0))
    return out


def _crowd(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    low = 16000  # speech murmur has little above 4 kHz: make it at a low rate, then resample
    m = max(16, int(n * low / sr))
    voices = np.zeros(m)
    for _ in range(8):
        f0 = rng.uniform(95, 140) if rng.random() < 0.5 else rng.uniform(170, 250)
        pitch = f0 * (1.0 + 0.08 * dsp.smooth_random(m, low, rng, 0.7))
        buzz = 2.0 * ((np.cumsum(pitch) / low) % 1.0) - 1.0 + 0.3 * rng.standard_normal(m)
        syllables = np.clip(dsp.smooth_random(m, low, rng, rng.uniform(3.0, 5.0)) + rng.uniform(-0.1, 0.3), 0.0, None)
        pauses = np.clip(2.0 * dsp.smooth_random(m, low, rng, 0.4) + 1.0, 0.0, 1.0)  # now and then a voice stops
        vowel = np.clip(0.5 + 2.0 * dsp.smooth_random(m, low, rng, 4.0), 0.0, 1.0)  # soft switch between two vowels
        voice = np.zeros(m)
        for weight in (vowel, 1.0 - vowel):
            f1, f2 = rng.uniform(300, 800), rng.uniform(900, 2200)

            def formants(f: np.ndarray, f1: float = f1, f2: float = f2) -> np.ndarray:
                peaks = np.exp(-0.5 * ((f - f1) / 90.0) ** 2) + 0.6 * np.exp(-0.5 * ((f - f2) / 140.0) ** 2)
                return peaks * dsp.band(f, 80.0, 3500.0, 2)

            voice += dsp.unit(dsp.spectral(buzz, low, formants)) * weight
        voices += voice * syllables * pauses * rng.uniform(0.4, 1.0)
    room = dsp.noise(m, low, rng, 1.0, lo=100.0, hi=3000.0)
    return dsp.resample(dsp.unit(voices) + 0.15 * room, low, sr, n)


def _knock(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    count = 2 if _has(text, "two", "twice", "double") else 4 if _has(text, "four", "rapid", "urgent", "pounding") else 3
    out = np.zeros(n)
    group = 0.0
    while group * sr < n:
        for k in range(count):
            at = group + 0.1 + k * 0.2 * (1.0 + rng.uniform(-0.1, 0.1))
            wood = [(190 * rng.uniform(0.95, 1.05), 1.0, 0.045), (410 * rng.uniform(0.95, 1.05), 0.6, 0.03),
                    (880 * rng.uniform(0.95, 1.05), 0.35, 0.015), (1650 * rng.uniform(0.95, 1.05), 0.2, 0.008)]
            knock = dsp.ring(sr, wood, 0.2, rng)
            click = dsp.burst(sr, rng, 0.002, 0.0006, 1500.0, None)
            knock[: len(click)] += 0.5 * click[: len(knock)]
            dsp.place(out, knock, int(at * sr), rng.uniform(0.85, 1.0))
        group += 0.1 + count * 0.2 + 1.4
    return out


def _clock(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    out = np.zeros(n)
    for number, at in enumerate(dsp.times(n, sr, rng, 0.1, 1.0, 0.002)):
        tick = number % 2 == 0
        partials = [(3200.0 if tick else 2300.0, 1.0, 0.006), (5100.0 if tick else 3900.0, 0.5, 0.004)]
        dsp.place(out, dsp.ring(sr, partials, 0.03, rng), at, 1.0 if tick else 0.8)
        dsp.place(out, dsp.burst(sr, rng, 0.01, 0.002, 2000.0, None), at, 0.3)
    return out + 0.01 * dsp.noise(n, sr, rng, 2.0, lo=40.0, hi=500.0)


def _chirp(sr: int, start: float, end: float, seconds: float, curve: float) -> np.ndarray:
    m = max(8, int(seconds * sr))
    x = np.arange(m) / m
    freq = start + (end - start) * x ** curve
    phase = 2 * np.pi * np.cumsum(freq) / sr
    envelope = np.sin(np.pi * x) ** 2
    return envelope * (np.sin(phase) + 0.15 * np.sin(2 * phase))


def _birds(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    seconds = n / sr
    out = np.zeros(n)
    for _ in range(3):
        base = rng.uniform(2500.0, 5000.0)
        sweep = rng.uniform(-1500.0, 1500.0)
        length = rng.uniform(0.05, 0.12)
        gap = rng.uniform(0.07, 0.13)
        curve = rng.uniform(0.5, 2.0)
        loudness = rng.uniform(0.4, 1.0)
        t = rng.uniform(0.0, 1.5)
        while t < seconds:
            for k in range(int(rng.integers(3, 8))):
                f_start = min(base * rng.uniform(0.97, 1.03), sr * 0.45)
                f_end = min(max(800.0, f_start + sweep), sr * 0.45)
                dsp.place(out, _chirp(sr, f_start, f_end, length, curve), int((t + k * (length + gap)) * sr), loudness)
            t += rng.uniform(1.5, 4.0)
    return out + 0.03 * dsp.noise(n, sr, rng, 1.0, lo=200.0, hi=6000.0)


def _crickets(n: int, sr: int, rng: Rng, text: str) -> np.ndarray:
    out = np.zeros(n)
    times = np.arange(int(0.012 * sr)) / sr
    for _ in range(4):
        carrier = min(rng.uniform(3800.0, 5200.0), sr * 0.45)
        pulse = np.sin(2 * np.pi * carrier * times) * np.sin(np.pi * times / times[-1]) ** 2
        loudness = rng.uniform(0.3, 1.0)
        pulses = int(rng.integers(3, 5))
        for at in dsp.times(n, sr, rng, rng.uniform(0.0, 0.4), 1.0 / rng.uniform(2.0, 3.0), 0.05):
            for k in range(pulses):
                dsp.place(out, pulse, at + int(k * 0.025 * sr), loudness)
    return out + 0.02 * dsp.noise(n, sr, rng, 1.0, lo=100.0, hi=4000.0)


# Events first, then ambiences: the order `describe` names them in and `match_sounds` returns.
SOUNDS: tuple[Sound, ...] = (
    Sound("knock", "knocking on a wooden door", _words("knock", "knocks", "knocking", "knocked"), False, 1.5, -4.0, _knock),
    Sound("thunder", "rolling thunder", _words("thunder", "thunderclap", "thunderstorm", "lightning"), False, 6.0, -3.0, _thunder),
    Sound("footsteps", "footsteps", _words("footsteps?", "footfalls?", "walking", "running", "climbing", "pacing",
                                          "striding", "stomping", "marching", "stepping"), False, 3.0, -6.0, _footsteps),
    Sound("bell", "a ringing bell", _words("bells?", "chimes?", "chiming", "tolling", "tolls"), False, 4.0, -6.0, _bell),
    Sound("rain", "steady rain", _words("rain", "raining", "rainy", "rainfall", "drizzle", "downpour", "storm", "stormy"),
          True, 0.0, -24.0, _rain),
    Sound("wind", "gusting wind", _words("wind", "winds", "windy", "gusts?", "gusting", "gale", "breeze", "storm", "stormy",
                                         "howling", "blizzard"), True, 0.0, -22.0, _wind),
    Sound("waves", "waves breaking on the shore", _words("sea", "seas", "ocean", "waves", "surf", "shore", "shoreline", "tide",
                                                         "breakers", "beach", "coast"), True, 0.0, -20.0, _waves),
    Sound("fire", "a crackling fire", _words("fire", "fireplace", "fireside", "hearth", "campfire", "bonfire", "crackling",
                                             "flames", "embers"), True, 0.0, -24.0, _fire),
    Sound("crowd", "a murmuring crowd", _words("crowd", "crowds", "crowded", "murmur", "murmuring", "chatter", "chattering",
                                               "tavern", "pub", "market", "marketplace", "bustling", "audience", "banquet"),
          True, 0.0, -26.0, _crowd),
    Sound("birds", "birdsong", _words("birds?", "birdsong", "songbirds?", "dawn chorus"), True, 0.0, -30.0, _birds),
    Sound("crickets", "crickets at night", _words("crickets?", "cicadas?"), True, 0.0, -32.0, _crickets),
    Sound("clock", "a ticking clock", _words("clock", "clocks", "ticking", "tick-tock"), True, 0.0, -38.0, _clock),
)
MAX_LAYERS = 3
_QUIET = _words("distant", "faint", "far", "soft", "quiet", "gentle", "muffled", "subtle", "low amplitude")
_MUFFLED = _words("distant", "muffled", "far", "behind")


def names() -> tuple[str, ...]:
    """The sounds the offline engine can make, in the order it names them."""
    return tuple(sound.name for sound in SOUNDS)


def match_sounds(text: str) -> list[Sound]:
    """The vocabulary sounds `text` names, events first, at most MAX_LAYERS of them."""
    found = [sound for sound in SOUNDS if sound.pattern.search(text or "")]
    events = [s for s in found if not s.ambience][:1]
    ambiences = [s for s in found if s.ambience][: MAX_LAYERS - len(events)]
    return events + ambiences


def describe(sounds: Sequence[Sound]) -> str:
    """A short description naming these sounds ('Footsteps, steady rain, gusting wind')."""
    text = ", ".join(sound.phrase for sound in sounds)
    return text[:1].upper() + text[1:]


def _seed(description: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}\x1f{description}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def synthesize(description: str, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """The effect as float32 samples in [-1, 1], mono; silence if the description names none
    of the vocabulary's sounds (a wrong sound would be worse than none)."""
    n = max(0, int(round(seconds * sample_rate)))
    sounds = match_sounds(description)
    if n == 0 or not sounds:
        return np.zeros(n, dtype=np.float32)
    rng = np.random.default_rng(_seed(description, seed))
    text = description.lower()
    mix = np.zeros(n)
    for sound in sounds:
        layer = sound.render(n, sample_rate, rng, text)[:n]
        if sound.ambience:
            scale = float(np.sqrt(np.mean(layer * layer)))
        else:
            scale = float(np.max(np.abs(layer)))
        if scale > 0:
            mix[: len(layer)] += layer / scale * 10.0 ** (sound.level_db / 20.0)
    if _QUIET.search(description):
        mix *= 0.5
    if _MUFFLED.search(description):
        mix = dsp.spectral(mix, sample_rate, lambda f: dsp.band(f, None, 2500.0, 2))
    mix = dsp.soft_limit(mix)
    fade_in, fade_out = min(n // 4, int(0.02 * sample_rate)), min(n // 4, int(0.05 * sample_rate))
    if fade_in:
        mix[:fade_in] *= np.linspace(0.0, 1.0, fade_in)
    if fade_out:
        mix[-fade_out:] *= np.linspace(1.0, 0.0, fade_out)
    return mix.astype(np.float32)

