"""The voice library (`voices/**/<stem>.wav` + `<stem>.reference.txt`) and who speaks with which voice.

Voices are foldered by gender, region and language as in the seed system
(`voices/female/gb/en/ada_en.wav`; `<gender>/<language>-<region>/` works too);
`voices/narrator.wav` is the narrator. A speaker tag's gender prefix (`male_`, `female_`)
drives the choice; a voice map the user edited is respected, only new speakers get voices.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from common.run.errors import InputError
from common.formats.story import gender_of

_GENDER_FOLDERS = {"male": "m", "female": "f", "m": "m", "f": "f", "men": "m", "women": "f"}
NARRATOR_TAGS = ("narrator",)


@dataclass(frozen=True)
class Voice:
    """One reference voice: the wav a TTS clones, and the transcript of that wav."""

    stem: str
    wav: Path
    reference_text: str
    gender: str | None  # 'm', 'f' or None (narrator / unsorted)
    language: str  # e.g. 'en'
    region: str  # e.g. 'gb', '' when unknown

    @property
    def is_narrator(self) -> bool:
        return self.gender is None


def _describe(wav: Path, root: Path) -> tuple[str | None, str, str]:
    """Gender, language and region from the folders: the seed's `<gender>/<region>/<language>/`,
    or `<gender>/<language>-<region>/`, or `<gender>/<language>/`."""
    gender: str | None = None
    codes: list[str] = []
    for part in wav.relative_to(root).parts[:-1]:
        low = part.lower()
        if low in _GENDER_FOLDERS:
            gender = _GENDER_FOLDERS[low]
        elif re.fullmatch(r"[a-z]{2,3}([-_][a-z]{2,4})?", low):
            codes.append(low.replace("_", "-"))
    language, region = "", ""
    if len(codes) >= 2:
        region, language = codes[-2], codes[-1]
    elif codes:
        language, _, region = codes[0].partition("-")
    if not language and "_" in wav.stem:
        language = wav.stem.rsplit("_", 1)[1].lower()
    return gender, language or "en", region


class VoiceLibrary:
    """All voices below one folder, looked up by stem."""

    def __init__(self, root: Path, voices: Mapping[str, Voice]) -> None:
        self.root = root
        self.voices = dict(voices)

    @classmethod
    def scan(cls, root: Path) -> "VoiceLibrary":
        if not root.is_dir():
            raise InputError(f"the voices folder {root} is missing; create it with voices/<male|female>/<language>/<name>.wav files (see README.md).")
        found: dict[str, Voice] = {}
        for wav in sorted(root.rglob("*.wav")):
            if any(part.startswith(".") for part in wav.relative_to(root).parts):
                continue  # tool folders like .crush/ are not voices
            if wav.stem in found:
                raise InputError(
                    f"two voices are named {wav.stem}: {found[wav.stem].wav} and {wav}; rename one, voice stems must be unique."
                )
            ref = wav.with_name(f"{wav.stem}.reference.txt")
            text = ref.read_text(encoding="utf-8").strip() if ref.is_file() else ""
            gender, language, region = _describe(wav, root)
            found[wav.stem] = Voice(wav.stem, wav, text, gender, language, region)
        if not found:
            raise InputError(f"the voices folder {root} has no .wav voices; add some (see README.md).")
        return cls(root, found)

    def get(self, stem: str, *, map_file: Path | None = None) -> Voice:
        try:
            return self.voices[stem]
        except KeyError:
            where = f" (named in {map_file})" if map_file else ""
            raise InputError(
                f"voice {stem}{where} is not in {self.root}: add {stem}.wav there or pick another voice."
            ) from None

    def of_gender(self, gender: str) -> list[Voice]:
        return [v for v in self.voices.values() if v.gender == gender]


def assign_voices(
    speakers: Iterable[str],
    library: VoiceLibrary,
    existing: Mapping[str, str],
    *,
    language: str = "en",
    region: str = "",
    narrator_voice: str = "narrator",
    auto_gender: str | None = None,
) -> dict[str, str]:
    """A voice stem for every speaker: kept from `existing` when still valid, else the least-used
    voice of the speaker's gender in the language asked for (the region preferred among equals).

    Distinct speakers get distinct voices while the library has enough of that gender; beyond
    that voices are reused, least-used first, so the spread stays even.
    """
    result: dict[str, str] = {}
    usage: Counter[str] = Counter()
    speakers = list(speakers)
    for tag in speakers:
        stem = existing.get(tag)
        if stem and stem in library.voices:
            result[tag] = stem
            usage[stem] += 1
    for tag in speakers:
        if tag in result:
            continue
        if tag.lower() in NARRATOR_TAGS:
            result[tag] = library.get(narrator_voice).stem
            continue
        gender = gender_of(tag) or auto_gender
        if gender is None:
            raise InputError(
                f"speaker [{tag}] has no male_/female_ prefix, so no voice can be chosen: rename it "
                "(e.g. [female_" + tag + "]) or run 1.character.py --auto-gender m|f."
            )
        candidates = library.of_gender(gender)
        if not candidates:
            raise InputError(
                f"no {'male' if gender == 'm' else 'female'} voices in {library.root}: add some under "
                f"{library.root / ('male' if gender == 'm' else 'female')}/."
            )

        def rank(voice: Voice) -> tuple[int, int, int, str]:
            return (
                0 if voice.language == language else 1,
                usage[voice.stem],
                0 if not region or voice.region == region else 1,
                voice.stem,
            )

        chosen = min(candidates, key=rank)
        result[tag] = chosen.stem
        usage[chosen.stem] += 1
    return result
