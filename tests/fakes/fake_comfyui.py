#!/usr/bin/env python
"""Start the fake ComfyUI (the package tests/fakes/comfyui/: what it answers, its switches) as a process:

    python tests/fakes/fake_comfyui.py --port 0 --job-seconds 0.2 --record events.jsonl

Tests start it so (tests/fakes/__init__.py), as does the fake ComfyUI install's main.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, only this folder is on sys.path: put the repo root first, so the package has one
# name (tests.fakes.comfyui) whether it runs here or a test imports it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fakes.comfyui.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
