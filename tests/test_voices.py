from pathlib import Path

import pytest

from common.run.errors import InputError
from common.audio.voices import VoiceLibrary, assign_voices


def _voice(root: Path, rel: str, text: str = "hello") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    path.with_name(path.stem + ".reference.txt").write_text(text)


@pytest.fixture
def library(tmp_path: Path) -> VoiceLibrary:
    _voice(tmp_path, "narrator.wav")
    _voice(tmp_path, "male/in/en/alok_en.wav")
    _voice(tmp_path, "male/gb/en/henry_en.wav")
    _voice(tmp_path, "male/de-de/jonas_de.wav")
    _voice(tmp_path, "female/gb/en/clara_en.wav")
    _voice(tmp_path, ".crush/male/stray.wav")
    return VoiceLibrary.scan(tmp_path)


def test_scan_reads_layout(library: VoiceLibrary) -> None:
    assert set(library.voices) == {"narrator", "alok_en", "henry_en", "jonas_de", "clara_en"}
    alok = library.voices["alok_en"]
    assert (alok.gender, alok.region, alok.language, alok.reference_text) == ("m", "in", "en", "hello")
    assert (library.voices["jonas_de"].language, library.voices["jonas_de"].region) == ("de", "de")
    assert library.voices["narrator"].gender is None


def test_distinct_voices_by_gender_language_and_region(library: VoiceLibrary) -> None:
    got = assign_voices(["narrator", "male_a", "male_b", "female_c"], library, {}, language="en", region="gb")
    assert got["narrator"] == "narrator"
    assert got["male_a"] == "henry_en"  # region preferred
    assert got["male_b"] == "alok_en"  # then the other English male voice, not German
    assert got["female_c"] == "clara_en"
    third = assign_voices(["male_a", "male_b", "male_c"], library, {}, language="en")
    assert third["male_c"] in {"alok_en", "henry_en"}  # reuse before changing language


def test_existing_choices_kept_and_invalid_replaced(library: VoiceLibrary) -> None:
    got = assign_voices(["male_a", "male_b"], library, {"male_a": "alok_en", "male_b": "gone_en"}, language="en")
    assert got["male_a"] == "alok_en" and got["male_b"] == "henry_en"


def test_missing_gender_and_missing_voices(library: VoiceLibrary, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="auto-gender"):
        assign_voices(["wizard"], library, {})
    assert assign_voices(["wizard"], library, {}, auto_gender="f")["wizard"] == "clara_en"
    only_male = tmp_path / "m"
    _voice(only_male, "male/en/a_en.wav")
    with pytest.raises(InputError, match="no female voices"):
        assign_voices(["female_x"], VoiceLibrary.scan(only_male), {})


def test_duplicate_stems_and_empty_folder(tmp_path: Path) -> None:
    _voice(tmp_path, "male/en/a_en.wav")
    _voice(tmp_path, "female/en/a_en.wav")
    with pytest.raises(InputError, match="two voices are named a_en"):
        VoiceLibrary.scan(tmp_path)
    with pytest.raises(InputError, match="missing"):
        VoiceLibrary.scan(tmp_path / "nope")
