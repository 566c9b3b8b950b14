"""The files a finished ComfyUI job lists, and the harmless local names they are saved under:
server-given names are untrusted and must never write outside the destination folder."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_OUTPUT_KEYS_SKIPPED = {"animated", "text"}
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def safe_filename(name: Any, fallback: str = "output") -> str:
    """A server-given file name reduced to one harmless path component, valid on every OS."""
    text = str(name).replace("\\", "/").split("/")[-1]
    text = re.sub(r"[^\w. ()+,=@-]", "_", text).strip(" .")
    if not text or set(text) <= {"_", "."}:
        text = fallback
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return text[:180]


def output_items(entry: dict[str, Any], *, include_temp: bool = False) -> list[dict[str, Any]]:
    """The file records of a history entry (images, audio, gifs...), in output-node order."""
    items = []
    outputs = entry.get("outputs") or {}
    for node_id in sorted(outputs, key=lambda k: (0, int(k)) if str(k).isdigit() else (1, str(k))):
        ui = outputs[node_id]
        if not isinstance(ui, dict):
            continue
        for key, value in ui.items():
            if key in _OUTPUT_KEYS_SKIPPED or not isinstance(value, list):
                continue
            for item in value:
                if isinstance(item, dict) and item.get("filename"):
                    if item.get("type", "output") == "temp" and not include_temp:
                        continue
                    items.append({**item, "node": node_id})
    return items


def unique_name(name: str, used: set[str]) -> str:
    candidate, stem, suffix, n = name, Path(name).stem, Path(name).suffix, 2
    while candidate.lower() in used:
        candidate = f"{stem}-{n}{suffix}"
        n += 1
    used.add(candidate.lower())
    return candidate
