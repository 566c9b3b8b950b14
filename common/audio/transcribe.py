"""story.wav -> what was said and when: Whisper when it is installed, else the line timings.

Two transcribers behind one small interface (`identity()`, `transcribe(wav)`):
- `WhisperTranscriber` runs openai-whisper (an optional extra, imported only when chosen)
  with word timestamps. The audio is decoded with our own ffmpeg wheel, because Whisper's
  loader shells out to an `ffmpeg` on PATH that a pip-only set-up does not have.
- `TimingsTranscriber` reads output/story.timings.json (per-line spans written by
  2.story.py): the "transcript" is the story text, timed by the TTS itself. It is the only
  honest choice for the offline engine, whose speech Whisper would mishear, and a good
  fallback anywhere else.
Either gives a `Transcript` (words with times), saved as output/transcript.json so the
quality check can compare word by word.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Protocol

from common.state.atomic import atomic_write_json
from common.run.errors import ConfigError, InputError
from common.state.checkpoints import read_entries, state_file
from common.audio.subtitles import CueRules, Word, one_paragraph, whisper_words, words_from_timings

TIMINGS, WHISPER, AUTO = "timings", "whisper", "auto"
TRANSCRIPT_FILE = "transcript.json"
WHISPER_RATE = 16000
INSTALL_HINT = "pip install -e .[whisper]"


# ------------------------------------------------------------------ the transcript


@dataclass(frozen=True)
class Transcript:
    """What was heard: running text plus every word with its start and end in story.wav."""

    engine: str
    text: str
    words: tuple[Word, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "text": self.text,
            "words": [{"text": w.text, "start": round(w.start, 4), "end": round(w.end, 4),
                       **({"line": w.line} if w.line is not None else {})} for w in self.words],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Transcript":
        words = tuple(Word(str(w["text"]), float(w["start"]), float(w["end"]), w.get("line")) for w in raw["words"])
        return cls(str(raw["engine"]), str(raw["text"]), words)


def write_transcript(path: Path, transcript: Transcript) -> Path:
    atomic_write_json(path, transcript.to_json(), indent=1)
    return path


def read_transcript(path: Path) -> Transcript:
    try:
        return Transcript.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InputError(f"the transcript {path} is missing; run 3.transcribe.py first.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"the transcript {path} is unreadable ({exc}); run 3.transcribe.py --force-start to write it again.") from None


def transcript_from_whisper(result: Mapping[str, Any], engine: str) -> Transcript:
    """A Whisper result dict (segments with words) as our Transcript; pure, so it is tested without Whisper."""
    words = whisper_words(result)
    text = one_paragraph(str(result.get("text") or " ".join(w.text for w in words)))
    return Transcript(engine, text, tuple(words))


def transcript_from_timings(timings: Mapping[str, Any]) -> Transcript:
    lines = timings["lines"]
    return Transcript(TIMINGS, one_paragraph(" ".join(str(l["text"]) for l in lines)), tuple(words_from_timings(lines)))


# ------------------------------------------------------------------ inputs


def read_timings(path: Path) -> dict[str, Any]:
    """output/story.timings.json, checked enough that later steps can trust every field."""
    hint = "run 2.story.py again; it writes this file when it joins story.wav."
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"the line timings {path} are missing; {hint}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the line timings {path} are unreadable ({exc}); {hint}") from None
    lines = raw.get("lines") if isinstance(raw, dict) else None
    if not isinstance(lines, list) or not lines:
        raise InputError(f"the line timings {path} list no lines; {hint}")
    for n, line in enumerate(lines, 1):
        try:
            ok = (isinstance(line["text"], str) and float(line["end"]) >= float(line["start"]) >= 0
                  and int(line["line"]) >= 1 and isinstance(line.get("chunk", ""), str))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"entry {n} of {path} lacks a valid line/text/start/end; {hint}")
    return raw


def story_preview(pipeline_dir: Path) -> bool | None:
    """Whether 2.story.py made story.wav with the offline engine (None: its checkpoint is gone)."""
    entry = read_entries(state_file(pipeline_dir, "2.story")).get("story.wav")
    return bool(entry.get("preview", False)) if entry is not None else None


def cue_rules(settings: Any) -> CueRules:
    try:
        return CueRules(settings.SUBTITLE_MAX_CHARS, settings.SUBTITLE_MAX_LINES, settings.SUBTITLE_MIN_DURATION)
    except ValueError:
        raise ConfigError(
            f"SUBTITLE_MAX_CHARS={settings.SUBTITLE_MAX_CHARS}, SUBTITLE_MAX_LINES={settings.SUBTITLE_MAX_LINES} and "
            f"SUBTITLE_MIN_DURATION={settings.SUBTITLE_MIN_DURATION} cannot all hold; use positive values (seed: 42, 2, 1.0)."
        ) from None


# ------------------------------------------------------------------ choosing


@dataclass(frozen=True)
class TranscriberChoice:
    engine: str  # TIMINGS or WHISPER
    reason: str


def whisper_installed() -> bool:
    """Whether `import whisper` would find a package, without paying for importing torch."""
    return importlib.util.find_spec("whisper") is not None


def choose_transcriber(setting: str, *, preview: bool | None, has_timings: bool, installed: bool) -> TranscriberChoice:
    """TRANSCRIBE_ENGINE -> the transcriber of this run, with the one line that says why."""
    if setting == WHISPER:
        if not installed:
            raise ConfigError(
                f"TRANSCRIBE_ENGINE=whisper but the openai-whisper package is not installed; install it with "
                f"`{INSTALL_HINT}` in the repo folder, or set TRANSCRIBE_ENGINE=timings."
            )
        return TranscriberChoice(WHISPER, "transcriber: Whisper (TRANSCRIBE_ENGINE=whisper)")
    if setting == AUTO:
        if preview:
            why = "story.wav is an offline preview, so the subtitles come from its line timings"
        elif installed:
            return TranscriberChoice(WHISPER, "transcriber: Whisper (installed; TRANSCRIBE_ENGINE=auto)")
        else:
            why = f"openai-whisper is not installed (`{INSTALL_HINT}` for a real transcription)"
        if not has_timings:
            raise InputError(
                f"cannot transcribe: {why}, and output/story.timings.json is missing; run 2.story.py again "
                f"(it writes the timings) or install Whisper with `{INSTALL_HINT}`."
            )
        return TranscriberChoice(TIMINGS, f"transcriber: line timings ({why})")
    if setting == TIMINGS:
        if not has_timings:
            raise InputError("TRANSCRIBE_ENGINE=timings needs output/story.timings.json, which is missing; run 2.story.py again (it writes it).")
        return TranscriberChoice(TIMINGS, "transcriber: line timings (TRANSCRIBE_ENGINE=timings)")
    raise ConfigError(f"TRANSCRIBE_ENGINE is {setting!r}; use auto, whisper or timings.")


# ------------------------------------------------------------------ transcribers


class Transcriber(Protocol):
    def identity(self) -> list[Any]: ...

    def transcribe(self, wav: Path) -> Transcript: ...


class TimingsTranscriber:
    """The story text, timed by 2.story.py's own line spans."""

    def __init__(self, timings_path: Path) -> None:
        self.timings_path = timings_path

    def identity(self) -> list[Any]:
        return [TIMINGS, self.timings_path]

    def transcribe(self, wav: Path) -> Transcript:
        return transcript_from_timings(read_timings(self.timings_path))


def import_whisper() -> ModuleType:
    """openai-whisper, imported on first use only (it pulls in torch), or a ConfigError that says how to install it."""
    try:
        module = importlib.import_module("whisper")
    except ImportError as exc:
        raise ConfigError(
            f"Whisper transcription was asked for but openai-whisper cannot be imported ({exc}); install it with "
            f"`{INSTALL_HINT}` in the repo folder, or set TRANSCRIBE_ENGINE=timings."
        ) from None
    if not callable(getattr(module, "load_model", None)):
        raise ConfigError(
            f"the `whisper` package at {getattr(module, '__file__', '?')} is not openai-whisper (no load_model); "
            f"uninstall it and run `{INSTALL_HINT}`."
        )
    return module


def load_audio_16k(wav: Path) -> Any:
    """story.wav as Whisper wants it (mono float32 at 16 kHz), resampled by our own ffmpeg."""
    from common.media import ffmpeg as media

    with tempfile.TemporaryDirectory(prefix="transcribe-") as tmp:
        mono = media.to_wav(wav, Path(tmp) / "16k.wav", sample_rate=WHISPER_RATE, channels=1)
        samples, _ = media.read_wav(mono, dtype="float32")
    return samples


class WhisperTranscriber:
    """openai-whisper with word timestamps; the model is loaded once, on the first transcription."""

    def __init__(self, model_name: str, language: str = "") -> None:
        self.model_name = model_name
        self.language = language
        self._model: Any = None

    def identity(self) -> list[Any]:
        return [WHISPER, self.model_name, self.language]

    @property
    def model(self) -> Any:
        if self._model is None:
            whisper = import_whisper()
            try:
                self._model = whisper.load_model(self.model_name)
            except (RuntimeError, OSError, ValueError) as exc:
                raise ConfigError(
                    f"Whisper model {self.model_name!r} could not be loaded ({exc}); set WHISPER_MODEL to one of "
                    "tiny, base, small, medium, large-v3 (downloaded on first use, so the first run needs the internet)."
                ) from None
        return self._model

    def transcribe(self, wav: Path) -> Transcript:
        model = self.model
        audio = load_audio_16k(wav)
        device = getattr(getattr(model, "device", None), "type", "cpu")
        options: dict[str, Any] = {"word_timestamps": True, "fp16": device == "cuda", "verbose": None}
        if self.language:
            options["language"] = self.language
        result = model.transcribe(audio, **options)
        return transcript_from_whisper(result, engine=f"{WHISPER}:{self.model_name}")


def make_transcriber(choice: TranscriberChoice, settings: Any, timings_path: Path) -> Transcriber:
    if choice.engine == WHISPER:
        return WhisperTranscriber(settings.WHISPER_MODEL, settings.LANGUAGE)
    return TimingsTranscriber(timings_path)
