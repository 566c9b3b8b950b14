"""Which Python runs ComfyUI's main.py: the one the user names, else ComfyUI's own, else ours.

Why this exists: ComfyUI needs torch and its own requirements, which the pipeline's venv does
not have. A ComfyUI installed as ComfyUI/README.md says keeps them in a venv inside its folder,
and the Windows portable build carries its Python beside that folder (`python_embeded`, spelled
as the build spells it). Started with our Python, ComfyUI exits at once on `import torch`, so
COMFYUI_DIR alone must be enough to find the right one. The path comes back with the reason it
was picked, which the engine line and --dry-run print, so a wrong pick is seen before the night.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

VENVS = ("venv", ".venv")  # the folder names ComfyUI's README and `uv venv` give
PORTABLE = "python_embeded"  # the Windows portable build's folder, beside ComfyUI/ (sic)


def _runnable(path: Path, windows: bool) -> bool:
    if windows:
        return path.is_file()
    return path.is_file() and os.access(path, os.X_OK)


def comfyui_python(settings: Any, *, windows: bool = os.name == "nt") -> tuple[str, str]:
    """(the Python to start ComfyUI with, why that one), in this order: COMFYUI_PYTHON when set;
    the venv, then the .venv, inside COMFYUI_DIR; on Windows the portable build's
    ../python_embeded/python.exe; else the Python running the pipeline."""
    configured = str(getattr(settings, "COMFYUI_PYTHON", "") or "").strip()
    if configured:
        return configured, "COMFYUI_PYTHON"
    comfy = Path(settings.COMFYUI_DIR).absolute()  # absolute: ComfyUI runs with its folder as cwd
    inside = ("Scripts", "python.exe") if windows else ("bin", "python")
    for venv in VENVS:
        candidate = comfy.joinpath(venv, *inside)
        if _runnable(candidate, windows):
            return str(candidate), f"{venv} inside COMFYUI_DIR"
    if windows:
        portable = comfy.parent / PORTABLE / "python.exe"
        if _runnable(portable, windows):
            return str(portable), f"the Windows portable build's {PORTABLE}"
    beside = f" and no ..\\{PORTABLE} beside it" if windows else ""
    return sys.executable, f"the pipeline's own Python, as COMFYUI_DIR has no venv or .venv{beside}"
