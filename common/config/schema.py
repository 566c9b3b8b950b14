"""Every setting the pipelines know: name, type, the seed system's value, and what it is for.

One table (schema.toml, data rather than code) so that settings files, environment variables
and flags are all checked against the same names, and the README can be generated from it
rather than drift from it.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# Seed values that depend on where the project is.
FACTORIES: dict[str, Callable[[Path], Any]] = {
    "COMFYUI_DIR": lambda root: str(root / "ComfyUI"),
}
_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str
    kind: type = str
    choices: tuple[Any, ...] = ()

    def resolve_default(self, repo_root: Path) -> Any:
        if self.name in FACTORIES:
            return FACTORIES[self.name](repo_root)
        # Lists and dicts are copied so no caller can mutate the schema.
        return copy.deepcopy(self.default)


def _setting(name: str, row: dict[str, Any]) -> Setting:
    default = row.get("default")
    kind = _TYPES[row["type"]] if "type" in row else type(default)
    return Setting(name, default, row["doc"], kind, tuple(row.get("choices", ())))


_TABLE = tomllib.loads((Path(__file__).with_name("schema.toml")).read_text(encoding="utf-8"))
SCHEMA: dict[str, Setting] = {name: _setting(name, row) for name, row in _TABLE.items()}
