"""Where the tests find the seed system's files.

tests/fixtures/seed-system is a copy of ../shared/fixtures/seed-system (the original system's
inputs and ComfyUI workflows), kept in the repository so a fresh clone runs every test.
tests/test_fixture_copies.py keeps its workflows equal to the ones we ship.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "seed-system"

