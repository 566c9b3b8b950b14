"""Settings, resolved in one written order: flag -> environment -> settings file -> seed default.

Nothing is read at import time: a script calls `load_settings()` once and passes the frozen
result down. The schema (every key, its type and the seed system's value) lives in
`common.config.schema`, so a typo in a settings file is an error, not a silent default.
"""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from common.config.paths import REPO_ROOT, settings_files
from common.config.schema import SCHEMA, Setting
from common.run.errors import ConfigError

SETTINGS_FILE = "settings.toml"

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off", ""}


def _convert(setting: Setting, raw: Any, origin: str) -> Any:
    """Coerce a value from a flag, env var or TOML into the setting's type, or say what is wrong."""
    kind = setting.kind
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(raw)
        if kind in (int, float):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return kind(raw)
        if kind is str:
            if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
                raise ValueError(raw)
            return str(raw)
        # list / dict: TOML gives them natively, env vars and flags carry JSON.
        value = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(value, kind):
            raise ValueError(raw)
        return value
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ConfigError(
            f"{setting.name} from {origin} is {raw!r}, which is not a valid {kind.__name__}; "
            f"fix it (seed default: {setting.default!r})."
        ) from None


def _check_choice(setting: Setting, value: Any, origin: str) -> Any:
    if setting.choices and value not in setting.choices:
        raise ConfigError(
            f"{setting.name} from {origin} is {value!r}; use one of {', '.join(map(str, setting.choices))}."
        )
    return value


def read_settings_file(path: Path) -> dict[str, Any]:
    """Read a pipeline's settings.toml; unknown keys are errors so typos never pass silently."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file or delete it to use the defaults.") from None
    unknown = sorted(k for k in data if k not in SCHEMA)
    if unknown:
        raise ConfigError(
            f"{path} sets unknown setting(s) {', '.join(unknown)}; check the spelling against README.md."
        )
    return data


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one run; attribute access by the seed's constant names."""

    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)
    pipeline_dir: Path | None = None

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not dataclass fields.
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"no setting named {name}") from None

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")

    def with_overrides(self, **overrides: Any) -> "Settings":
        values = dict(self.values)
        sources = dict(self.sources)
        for key, raw in overrides.items():
            setting = SCHEMA[key]
            values[key] = _check_choice(setting, _convert(setting, raw, "override"), "override")
            sources[key] = "override"
        return Settings(MappingProxyType(values), MappingProxyType(sources), self.pipeline_dir)


def load_settings(
    pipeline_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    files: Sequence[Path] | None = None,
) -> Settings:
    """Resolve every setting: `overrides` (command-line flags) win, then the environment,
    then `<pipeline_dir>/settings.toml`, then the seed system's value. For a story workspace's folder
    the settings files are the pipeline's, then the stories folder's, then the story's own (the
    later wins; common.config.paths.settings_files). `files` replaces that list (a queue's own settings)."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    file_origin: dict[str, str] = {}
    for path in files if files is not None else settings_files(Path(pipeline_dir)) if pipeline_dir else ():
        for key, value in read_settings_file(path).items():
            file_values[key] = value
            file_origin[key] = str(path)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, setting in SCHEMA.items():
        if name in overrides:
            raw, origin = overrides[name], "flag"
        elif environ.get(name, "") != "":
            raw, origin = environ[name], f"environment variable {name}"
        elif name in file_values:
            raw, origin = file_values[name], file_origin[name]
        else:
            values[name] = setting.resolve_default(REPO_ROOT)
            sources[name] = "default"
            continue
        values[name] = _check_choice(setting, _convert(setting, raw, origin), origin)
        sources[name] = origin
    unknown = sorted(set(overrides) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} given on the command line.")
    return Settings(MappingProxyType(values), MappingProxyType(sources), Path(pipeline_dir) if pipeline_dir else None)
