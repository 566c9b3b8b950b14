"""Where the tests find the seed system's files.

tests/fixtures/seed-system is a copy of ../shared/fixtures/seed-system (the original system's
inputs and ComfyUI workflows), kept in the repository so a fresh clone runs every test.
tests/test_fixture_copies.py keeps its workflows equal to the ones we ship.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "seed-system"



def image_prompt(text: str, size: tuple[int, int] = (64, 64)) -> dict[str, Any]:
    """The shipped character/location workflow with `text` as its prompt at `size`: the picture job
    the ComfyUI client and fake tests send (node 16 samples, 20 decodes, 21 saves)."""
    from common.services.comfyui.workflow import Workflow

    wf = Workflow.load(FIXTURES / "gen.image/workflow/character_location.json")
    wf.set_prompt(text)
    wf.set_size(*size)
    return wf.to_prompt()
