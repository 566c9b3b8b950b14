"""Shared test set-up: every test runs with the repo root importable and no user environment leaking in."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.seed import FIXTURES  # noqa: E402  (needs the repo root on sys.path)

_LEAKY = (
    "PIPELINE_ENGINE", "PIPELINE_TEXT_ENGINE", "COMFYUI_BASE_URL", "COMFYUI_DIR", "COMFYUI_PYTHON",
    "COMFYUI_EXTRA_ARGS", "FAKE_COMFYUI_STARTUP_DELAY", "LM_STUDIO_BASE_URL",
    "LM_STUDIO_MODEL", "LM_STUDIO_CMD", "PIPELINE_DEBUG", "CHUNK_SIZE", "ENABLE_RESUMABLE_MODE",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _LEAKY:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def lms_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The fake `lms` CLI's state folder (FAKE_LMS_STATE); its server is stopped after the test."""
    state = tmp_path / "lms-state"
    state.mkdir()
    monkeypatch.setenv("FAKE_LMS_STATE", str(state))
    try:
        yield state
    finally:
        sys.path.insert(0, str(REPO / "tests" / "fakes" / "orch"))
        import orch_support

        orch_support.stop_fake_lms_server(state)
