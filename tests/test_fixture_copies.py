"""The seed fixtures kept in tests/ stay what they claim to be: the workflows in the copy are the
ones the pipelines ship, so tests that patch a workflow patch what users run."""
from __future__ import annotations

from tests.support.seed import FIXTURES, REPO


def test_copied_workflows_are_the_shipped_ones() -> None:
    copies = sorted(FIXTURES.glob("gen.*/workflow/*.json"))
    assert len(copies) >= 6
    for copy in copies:
        shipped = REPO / copy.relative_to(FIXTURES)
        assert shipped.read_bytes() == copy.read_bytes(), f"{shipped} differs from its test copy {copy}"
