"""Signal building blocks for the procedural sound effects (common.offline.sfx), NumPy only.

Stationary noise is shaped in the frequency domain (one FFT); noise whose colour changes over
time (wind, surf) is synthesised frame by frame (STFT overlap-add, a bounded number of frames
at a time).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Rng = np.random.Generator


def fast_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFTs of such sizes are fast, a large prime factor is not."""
    best = 1 << max(0, (n - 1).bit_length())
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def spectral(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`x` filtered by a zero-phase magnitude response `gain(frequencies)` (one FFT)."""
    size = fast_size(len(x))
    spectrum = np.fft.rfft(x, size)
    freqs = np.fft.rfftfreq(size, 1.0 / sr)
    return np.fft.irfft(spectrum * gain(freqs), n=size)[: len(x)]


def band(f: np.ndarray, lo: float | None = None, hi: float | None = None, order: int = 2) -> np.ndarray:
    """A Butterworth-like band: high-pass at `lo`, low-pass at `hi`, `order` poles each."""
    g = np.ones_like(f)
    if lo:
        g = g / np.sqrt(1.0 + (lo / np.maximum(f, 1e-3)) ** (2 * order))
    if hi:
        g = g / np.sqrt(1.0 + (f / hi) ** (2 * order))
    return g


def noise(n: int, sr: int, rng: Rng, slope: float, lo: float | None = None, hi: float | None = None,
           order: int = 2) -> np.ndarray:
    """Noise whose power falls as f^-slope (0 white, 1 pink, 2 brown), band-limited, unit RMS."""
    if n <= 0:
        return np.zeros(0)
    x = spectral(rng.standard_normal(n), sr,
                  lambda f: np.maximum(f, 20.0) ** (-slope / 2.0) * band(f, lo, hi, order))
    return unit(x)


def unit(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
    return x / rms if rms > 0 else x


def smooth_random(n: int, sr: int, rng: Rng, rate_hz: float) -> np.ndarray:
    """A slow random curve in [-1, 1]: knots every 1/rate_hz s joined by cosine segments."""
    spacing = max(1, int(sr / rate_hz))
    knots = rng.uniform(-1.0, 1.0, n // spacing + 3)
    position = np.arange(n) / spacing
    index = position.astype(np.int64)
    frac = position - index
    blend = 0.5 - 0.5 * np.cos(np.pi * frac)
    return knots[index] * (1 - blend) + knots[index + 1] * blend


def fftconv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear convolution, cut to len(x) (the kernel's tail past the end is dropped)."""
    fft_size = fast_size(len(x) + len(kernel) - 1)
    out = np.fft.irfft(np.fft.rfft(x, fft_size) * np.fft.rfft(kernel, fft_size), fft_size)
    return out[: len(x)]


def burst(sr: int, rng: Rng, seconds: float, decay: float, lo: float | None, hi: float | None) -> np.ndarray:
    """A short noise burst with an exponential decay: a click, a thump, a scuff."""
    n = max(8, int(seconds * sr))
    t = np.arange(n) / sr
    x = rng.standard_normal(n) * np.exp(-t / decay)
    return spectral(x, sr, lambda f: band(f, lo, hi, 2))


def ring(sr: int, partials: Sequence[tuple[float, float, float]], seconds: float, rng: Rng) -> np.ndarray:
    """Damped sinusoids (frequency, amplitude, decay seconds) from a random phase: a struck body."""
    n = max(8, int(seconds * sr))
    t = np.arange(n) / sr
    out = np.zeros(n)
    for freq, amp, decay in partials:
        if freq < sr / 2 * 0.95:
            out += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / decay)
    return out


def place(out: np.ndarray, piece: np.ndarray, at: int, gain: float = 1.0) -> None:
    if at >= len(out) or at + len(piece) <= 0:
        return
    start = max(0, at)
    piece = piece[start - at:]
    end = min(len(out), start + len(piece))
    out[start:end] += gain * piece[: end - start]


def stft_noise(n: int, sr: int, rng: Rng, magnitude: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Noise whose spectrum changes with time: `magnitude(times (frames, 1), freqs (1, bins))`.

    Hann-windowed frames of complex Gaussian spectra, overlap-added at a quarter-frame hop;
    frames are made 256 at a time so memory stays bounded for long clips.
    """
    size, hop = 2048, 512
    offset = size - hop  # output starts where four frames overlap, so its first sample is full strength
    window = np.hanning(size + 1)[:size]
    freqs = np.fft.rfftfreq(size, 1.0 / sr)[None, :]
    frames = n // hop + 4
    out = np.zeros((frames + 3) * hop)
    for first in range(0, frames, 256):
        count = min(256, frames - first)
        centres = ((np.arange(first, first + count) * hop + size / 2 - offset) / sr)[:, None]
        mags = magnitude(centres, freqs)
        spectra = (rng.standard_normal(mags.shape) + 1j * rng.standard_normal(mags.shape)) * mags
        blocks = np.fft.irfft(spectra, n=size, axis=1) * window
        for k in range(size // hop):  # frame i's k-th quarter lands at (i + k) * hop
            start = (first + k) * hop
            out[start:start + count * hop] += blocks[:, k * hop:(k + 1) * hop].reshape(-1)
    return unit(out[offset:offset + n])


def resample(x: np.ndarray, sr_from: int, sr_to: int, n_to: int) -> np.ndarray:
    """Band-limited resampling by zero-padding the spectrum (for sounds made at a lower rate)."""
    spectrum = np.fft.rfft(x)
    bins = n_to // 2 + 1
    padded = np.zeros(bins, dtype=complex)
    keep = min(bins, len(spectrum))
    padded[:keep] = spectrum[:keep]
    return np.fft.irfft(padded, n=n_to) * (n_to / max(1, len(x)))


def times(n: int, sr: int, rng: Rng, first: float, interval: float, jitter: float) -> list[int]:
    """Sample positions of a roughly regular series of events (steps, ticks, knocks)."""
    out, t = [], first
    while t * sr < n:
        out.append(int(t * sr))
        t += interval * (1.0 + rng.uniform(-jitter, jitter))
    return out


def soft_limit(x: np.ndarray, knee: float = 0.7, ceiling: float = 0.89) -> np.ndarray:
    """Leave everything under `knee` alone and bend what is above it smoothly under `ceiling`
    (1 dB of headroom): a rare loud crackle or layered peak is tamed without pumping the bed."""
    over = np.abs(x) > knee
    if not over.any():
        return x
    out = x.copy()
    room = ceiling - knee
    out[over] = np.sign(x[over]) * (knee + room * np.tanh((np.abs(x[over]) - knee) / room))
    return out
