from pathlib import Path

import pytest

from common.run.errors import ConfigError
from common.config.settings import load_settings


def test_order_flag_env_file_default(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text('CHUNK_SIZE = 8\nART_STYLE = "Ink"\nLANGUAGE = "de"\n')
    env = {"CHUNK_SIZE": "9", "ART_STYLE": "Watercolour"}
    s = load_settings(tmp_path, {"CHUNK_SIZE": 3}, env)
    assert s.CHUNK_SIZE == 3 and s.source_of("CHUNK_SIZE") == "flag"
    assert s.ART_STYLE == "Watercolour" and "environment" in s.source_of("ART_STYLE")
    assert s.LANGUAGE == "de" and s.source_of("LANGUAGE").endswith("settings.toml")
    assert s.SAMPLING_STEPS == 25 and s.source_of("SAMPLING_STEPS") == "default"


def test_settings_are_frozen_and_defaults_not_shared(tmp_path: Path) -> None:
    a = load_settings(tmp_path, environ={})
    b = load_settings(tmp_path, environ={})
    a.LORAS.append({"name": "x"})
    assert b.LORAS == []
    with pytest.raises(TypeError):
        a.values["CHUNK_SIZE"] = 1  # type: ignore[index]


def test_types_and_choices_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CHUNK_SIZE.*not a valid int"):
        load_settings(tmp_path, environ={"CHUNK_SIZE": "five"})
    with pytest.raises(ConfigError, match="PIPELINE_ENGINE.*one of auto, comfyui, offline"):
        load_settings(tmp_path, environ={"PIPELINE_ENGINE": "gpu"})
    assert load_settings(tmp_path, environ={"ENABLE_RESUMABLE_MODE": "no"}).ENABLE_RESUMABLE_MODE is False
    assert load_settings(tmp_path, environ={"LORAS": '[{"name": "a.safetensors"}]'}).LORAS == [{"name": "a.safetensors"}]


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("CHUNK_SIZ = 4\n")
    with pytest.raises(ConfigError, match="unknown setting.*CHUNK_SIZ"):
        load_settings(tmp_path, environ={})


def test_bad_toml_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("CHUNK_SIZE = = 4\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path, environ={})
