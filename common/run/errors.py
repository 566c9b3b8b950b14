"""Errors a user can cause, each carrying the one sentence that tells them what to do.

Scripts raise these anywhere; only the script edge (common.run.runner) turns them into a
one-line message and a distinct exit code. Anything else is our bug and keeps its traceback.
"""
from __future__ import annotations

from typing import Any


class PipelineError(Exception):
    """A failure the user can fix; the message says what happened and what to do.

    A subclass gives its exit code where it is declared: `class InputError(PipelineError, exit_code=3)`.
    """

    exit_code = 2

    def __init_subclass__(cls, exit_code: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code


class InputError(PipelineError, exit_code=3):
    """A missing, empty or malformed input file (story, voice map, workflow...)."""


class ConfigError(PipelineError, exit_code=4):
    """A bad setting, flag or environment variable."""


class ServiceError(PipelineError, exit_code=5):
    """ComfyUI or the LLM server is down, unreachable or could not be started."""


class JobError(PipelineError, exit_code=6):
    """A job was accepted by a server but failed (validation, missing node/model, run-time error)."""

    #: True when every other item would fail the same way (a missing node or model): stop at once
    #: instead of marking the item failed and going on with the others.
    affects_every_item = False


class ItemsFailedError(JobError):
    """Some items of a script failed while the others were finished and kept."""


class QuotaError(PipelineError, exit_code=7):
    """An external quota or limit was hit; retrying later continues where it stopped."""


class Interrupted(PipelineError, exit_code=130):
    """The user pressed Ctrl+C or the process got SIGTERM; finished work is kept."""


class PreflightError(PipelineError, exit_code=8):
    """The checks before an overnight run found problems; nothing expensive was started."""
