"""Real local speech from eSpeak NG (libespeak-ng of the espeakng-loader wheel, through ctypes).

Why each synthesis runs in a short-lived worker process instead of in ours:
libespeak-ng keeps synthesis state in C statics that no API call resets (the pitch-flutter
index and cycle counter in wavegen.c, its gain control, libc rand() for breath noise), and
espeak_Terminate + espeak_Initialize does not reset them either. Within one process the same
line therefore comes out different depending on what was spoken before it, which breaks the
offline engine's promise of deterministic output (SPEC 7) and makes a resumed run differ from
an uninterrupted one. A fresh process starts from the same state every time, so the same text
and voice give the same samples. The library is also not thread-safe (one global voice, one
callback, one output buffer), and a crash inside it would otherwise take an overnight run down
with it. Each worker loads and initialises the library exactly once (espeak_Initialize must
precede everything and must not be repeated while in use), speaks, writes a WAV and exits;
being separate processes, concurrent `synthesize` calls from several threads are safe and run
in parallel. The worker needs only the standard library, so it starts with `python -I -S`.

What this process keeps is a lazy, lock-guarded singleton: where the library and its voice
data are, and which voice variants the data really ships, resolved once.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tempfile
import threading
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path

from common.media import ffmpeg as media
from common.run.errors import ConfigError, PipelineError

MISSING = "The offline speech engine needs espeak-ng: run pip install -r requirements.txt"

RATE_MIN, RATE_MAX = 80, 450  # words per minute: espeakRATE_MINIMUM / espeakRATE_MAXIMUM
MAX_CHUNK_CHARS = 400  # one espeak_Synth call; long lines are cut at sentence boundaries first
_EMPTY_LINE_SECONDS = 0.25  # what a line with nothing speakable ("...") becomes: a short pause
_MIN_SPOKEN_SECONDS = 0.05

# Voice variants (files in espeak-ng-data/voices/!v/) in order of preference, spread so that
# neighbours differ in formants; the narrator/unknown set shares none with the gendered sets.
_PREFERRED = {
    "m": ("m1", "m3", "m7", "m2", "m6", "m4", "m5", "Andy", "Lee", "travis", "michel", "Storm"),
    "f": ("f1", "f3", "f4", "f2", "f5", "Annie", "linda", "steph", "belinda", "aunty", "grandma"),
    "n": ("edward", "norbert", "klatt4", "john", "Alex", "Michael", "quincy", "robert"),
}
# Voices are spread by the pitch they are heard at, not by the raw espeakPITCH value: each
# variant has its own base pitch (m3 sits higher than m1), so the same setting on two variants
# can land on the same frequency. Each index aims at centre x multiplier and the setting is
# derived from the variant's own pitch line. Consecutive multipliers are 9-40 % apart.
_CENTRE_HZ = {"m": 100.0, "f": 200.0, "n": 110.0}
_PITCH_STEPS = (1.0, 0.84, 1.18, 0.92, 1.09)
_PITCH_SLOPE = 0.65  # measured: en+m1 at espeakPITCH 20/50/80 speaks at 72/93/126 Hz
_DEFAULT_VARIANT_HZ = 100.0  # variants without a pitch line keep the language's (male) pitch
_RATES = {"m": (165, 158, 172), "f": (165, 172, 158), "n": (160, 168, 152)}

_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f\u061f\u06d4]+[\"'\u201d\u2019\u00bb)\]]*(?:\s+|$)")
_SENTENCE_TAIL = re.compile(r"[.!?\u2026\u3002\uff01\uff1f\u061f\u06d4]+[\"'\u201d\u2019\u00bb)\]]*$")
_CLAUSE_END = re.compile(r"[,;:\u2014\u2013\u060c\u3001]+[\"'\u201d\u2019\u00bb)\]]*\s+")


@dataclass(frozen=True)
class EspeakVoice:
    """An eSpeak NG voice: `name` is language[+variant] (e.g. "en+f3"), rate in wpm, pitch 0-100."""

    name: str
    rate: int = 165
    pitch: int = 50

    def __post_init__(self) -> None:
        if not self.name or "\0" in self.name or self.name != self.name.strip():
            raise ConfigError(f"{self.name!r} is not an eSpeak NG voice name: use a language with an optional variant, like 'en+f3'.")
        if not RATE_MIN <= self.rate <= RATE_MAX:
            raise ConfigError(f"Speech rate {self.rate} is outside eSpeak NG's {RATE_MIN}-{RATE_MAX} words per minute.")
        if not 0 <= self.pitch <= 100:
            raise ConfigError(f"Voice pitch {self.pitch} is outside eSpeak NG's 0-100 range (50 is normal).")

    @property
    def variant(self) -> str | None:
        return self.name.split("+", 1)[1] if "+" in self.name else None


@dataclass(frozen=True)
class _Variant:
    gender: str  # "m", "f", or "n" when the file names none
    centre_hz: float  # middle of its "pitch <base> <top>" line: where espeakPITCH 50 lands


@dataclass(frozen=True)
class _Engine:
    library: Path
    data: Path
    variants: dict[str, _Variant]  # by file name in espeak-ng-data/voices/!v/


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _read_variants(directory: Path) -> dict[str, _Variant]:
    found: dict[str, _Variant] = {}
    if not directory.is_dir():
        return found
    for entry in sorted(directory.iterdir()):
        if not entry.is_file() or " " in entry.name:
            continue
        gender, centre = "n", _DEFAULT_VARIANT_HZ
        for line in entry.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0].lower() == "gender":
                gender = {"male": "m", "female": "f"}.get(words[1].lower(), "n")
            elif len(words) >= 3 and words[0].lower() == "pitch":
                try:
                    centre = (float(words[1]) + float(words[2])) / 2
                except ValueError:
                    pass
        found[entry.name] = _Variant(gender, centre)
    return found


def _locate() -> _Engine:
    """Find the library and its data once per process; ConfigError if the wheel is missing."""
    global _engine
    with _engine_lock:
        if _engine is None:
            try:
                import espeakng_loader

                library = Path(espeakng_loader.get_library_path())
                data = Path(espeakng_loader.get_data_path())
            except (ImportError, RuntimeError, OSError) as exc:
                raise ConfigError(MISSING) from exc
            if not library.is_file() or not (data / "phontab").is_file():
                raise ConfigError(MISSING)
            _engine = _Engine(library, data, _read_variants(data / "voices" / "!v"))
        return _engine


def _normal_gender(gender: str) -> str:
    letter = gender.strip().lower()[:1]
    return letter if letter in ("m", "f") else "n"


def voice_for(gender: str, index: int, *, language: str = "en") -> EspeakVoice:
    """The `index`-th distinct voice of a gender: "m", "f", or anything else for narrator/unknown.

    Index 0 of "n" is the narrator. Variants come only from those the installed data really
    ships (eSpeak silently falls back to the plain voice for a missing one, which would make
    two speakers sound alike), and the three genders use disjoint variants. Index i takes
    variant i mod V and pitch step i mod 5, so consecutive voices differ in both formants
    and heard pitch, and the first lcm(V, 5) voices (40 or more with the shipped data) are
    all different.
    """
    if index < 0:
        raise ValueError(f"voice index must be >= 0, not {index}")
    kind = _normal_gender(gender)
    shipped = _locate().variants
    names = [v for v in _PREFERRED[kind] if v in shipped]
    if not names:  # an unfamiliar data set: take whatever it ships for this gender
        names = [v for v, info in shipped.items() if info.gender == kind]
    target = _CENTRE_HZ[kind] * _PITCH_STEPS[index % len(_PITCH_STEPS)]
    if names:
        variant = names[index % len(names)]
        name, centre = f"{language}+{variant}", shipped[variant].centre_hz
    else:
        name, centre = language, _DEFAULT_VARIANT_HZ
    # espeakPITCH scales only the base of the intonation range by 2 ** ((value - 50) / 50)
    # (pitch_adjust_tab, wavegen.c), so the heard pitch moves by about 2/3 of that.
    pitch = int(round(50 + 50 * math.log2(target / centre) / _PITCH_SLOPE))
    rates = _RATES[kind]
    return EspeakVoice(name=name, rate=rates[index % len(rates)], pitch=min(95, max(5, pitch)))


def _clean(text: str) -> str:
    # Control characters (NUL would end the C string), lone surrogates and private-use code
    # points (eSpeak uses some internally) become spaces; whitespace runs become one space.
    kept = [" " if unicodedata.category(ch) in ("Cc", "Cs", "Co") else ch for ch in text]
    return re.sub(r"\s+", " ", "".join(kept)).strip()


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    pieces, start = [], 0
    for match in pattern.finditer(text):
        pieces.append(text[start:match.end()].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _fit(piece: str, limit: int) -> list[str]:
    """Cut one over-long sentence at clause marks, then spaces, then anywhere."""
    if len(piece) <= limit:
        return [piece]
    parts: list[str] = []
    for clause in _cut(piece, _CLAUSE_END):
        if len(clause) <= limit:
            parts.append(clause)
            continue
        line = ""
        for word in clause.split(" "):
            while len(word) > limit:
                if line:
                    parts.append(line)
                    line = ""
                parts.append(word[:limit])
                word = word[limit:]
            if line and len(line) + 1 + len(word) > limit:
                parts.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        if line:
            parts.append(line)
    return _pack(parts, limit)


def _pack(pieces: list[str], limit: int) -> list[str]:
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= limit:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks


def split_text(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[tuple[str, bool]]:
    """Cut cleaned text into espeak_Synth-sized chunks: (chunk, ends a sentence).

    Whole sentences are packed together up to `max_chars`; only a sentence longer than that
    is cut, at clause marks first. The flag tells the worker whether a sentence pause belongs
    after the chunk, so a cut inside a sentence does not sound like a full stop.
    """
    text = _clean(text)
    pieces: list[str] = []
    for sentence in _cut(text, _SENTENCE_END):
        pieces.extend(_fit(sentence, max_chars))
    return [(chunk, bool(_SENTENCE_TAIL.search(chunk))) for chunk in _pack(pieces, max_chars)]


# Runs as `python -I -S -c _WORKER <library> <data dir> <out.wav>` with a JSON request on stdin.
# Only the standard library: no site-packages are needed (or loaded) in the worker.
# Constants are from espeak-ng's speak_lib.h (API revision 12).
_WORKER = r"""
import ctypes, json, sys, wave

AUDIO_OUTPUT_SYNCHRONOUS = 2   # espeak_AUDIO_OUTPUT: as RETRIEVAL, returns when synthesis is done
INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of exit() if the data is missing
POS_CHARACTER = 1
CHARS_UTF8 = 1
ENDPAUSE = 0x1000
RATE, PITCH = 1, 3             # espeak_PARAMETER ids

def main():
    library, data, out_path = sys.argv[1:4]
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        sys.stderr.write("cannot load %s: %s" % (library, exc))
        return 4
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    # int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); 0 = continue
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode("utf-8"), INITIALIZE_DONT_EXIT)
    if sample_rate <= 0:
        sys.stderr.write("espeak_Initialize failed with the data in %s" % data)
        return 4
    pieces = []

    def collect(wav, count, events):
        if wav and count > 0:
            pieces.append(ctypes.string_at(wav, count * 2))
        return 0

    keep_alive = callback_type(collect)  # must outlive every synthesis call
    lib.espeak_SetSynthCallback(keep_alive)
    if lib.espeak_SetVoiceByName(request["voice"].encode("utf-8")) != 0:
        sys.stderr.write("no voice named %r" % request["voice"])
        return 3
    lib.espeak_SetParameter(RATE, int(request["rate"]), 0)
    lib.espeak_SetParameter(PITCH, int(request["pitch"]), 0)
    for text, pause_after in request["chunks"]:
        encoded = text.encode("utf-8") + b"\0"
        flags = CHARS_UTF8 | (ENDPAUSE if pause_after else 0)
        status = lib.espeak_Synth(encoded, len(encoded), 0, POS_CHARACTER, 0, flags, None, None)
        if status != 0:
            sys.stderr.write("espeak_Synth returned %d" % status)
            return 5
        lib.espeak_Synchronize()
    lib.espeak_Terminate()
    with wave.open(out_path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(b"".join(pieces))
    return 0

sys.exit(main())
"""


def _check_variant(engine: _Engine, voice: EspeakVoice) -> None:
    variant = voice.variant
    if variant is not None and variant not in engine.variants:
        some = ", ".join(sorted(engine.variants)[:8])
        raise ConfigError(
            f"eSpeak NG has no voice variant {variant!r} in {engine.data / 'voices' / '!v'}; use one it ships, such as {some}."
        )


def _speak(engine: _Engine, voice: EspeakVoice, chunks: list[tuple[str, bool]], native_wav: Path) -> None:
    if not sys.executable:
        raise ConfigError("The offline speech engine needs a Python interpreter to run its worker, and none was found.")
    request = json.dumps({"voice": voice.name, "rate": voice.rate, "pitch": voice.pitch,
                          # A sentence pause between chunks, none after the last: callers add their own gaps.
                          "chunks": [[text, ends and number < len(chunks) - 1]
                                     for number, (text, ends) in enumerate(chunks)]}).encode("utf-8")
    characters = sum(len(text) for text, _ in chunks)
    timeout = 60 + characters / 20  # eSpeak speaks hundreds of characters per second; this is a hang guard
    cmd = [sys.executable, "-I", "-S", "-c", _WORKER, str(engine.library), str(engine.data), str(native_wav)]
    try:
        proc = subprocess.run(cmd, input=request, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PipelineError(
            f"eSpeak NG took longer than {timeout:.0f} s to speak {characters} characters and was stopped; "
            "try again, and split the line if it happens again."
        ) from None
    detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    detail_text = detail[-1] if detail else f"exit code {proc.returncode}"
    if proc.returncode == 3:
        raise ConfigError(f"eSpeak NG has no voice {voice.name!r}: use a language it ships, such as 'en', 'en-us' or 'fr'.")
    if proc.returncode == 4:
        raise ConfigError(f"{MISSING} ({detail_text}).")
    if proc.returncode != 0:
        preview = chunks[0][0][:40]
        raise PipelineError(f"eSpeak NG failed while speaking {preview!r}... ({detail_text}); check the line's text.")


def synthesize(text: str, voice: EspeakVoice, out_wav: str | Path, *, sample_rate: int = 44100) -> float:
    """Speak `text` with `voice` into a mono 16-bit WAV at `sample_rate`, atomically; return seconds.

    Same text and voice give the same samples, in any process and after any other call.
    eSpeak's native 22050 Hz is resampled with ffmpeg's soxr, which is cleaner than anything
    short we could write in numpy. A line with nothing speakable becomes a short silence.
    """
    engine = _locate()
    _check_variant(engine, voice)
    out_wav = Path(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    chunks = split_text(text)
    spoken = False
    if chunks:
        with tempfile.TemporaryDirectory(prefix=".espeak.", dir=out_wav.parent) as scratch:
            native = Path(scratch) / "native.wav"
            _speak(engine, voice, chunks, native)
            with wave.open(str(native), "rb") as handle:
                # eSpeak says "..." as a few milliseconds of near-silence: treat that as a pause.
                spoken = handle.getnframes() >= handle.getframerate() * _MIN_SPOKEN_SECONDS
            if spoken:
                media.to_wav(native, out_wav, sample_rate=sample_rate, channels=1)
    if not spoken:
        media.write_wav(out_wav, media.silence(_EMPTY_LINE_SECONDS, sample_rate), sample_rate)
    return media.audio_duration(out_wav)
