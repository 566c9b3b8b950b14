"""Errors a user can cause, each carrying the one sentence that tells them what to do.

Scripts raise these anywhere; only the script edge (common.run.runner) turns them into a
one-line message and a distinct exit code. Anything else is our bug and keeps its traceback.
"""
from __future__ import annotations


class PipelineError(Exception):
    """A failure the user can fix; the message says what happened and what to do."""

    exit_code = 2


class InputError(PipelineError):
    """A missing, empty or malformed input file (story, voice map, workflow...)."""

    exit_code = 3


class ConfigError(PipelineError):
    """A bad setting, flag or environment variable."""

    exit_code = 4


class ServiceError(PipelineError):
    """ComfyUI or the LLM server is down, unreachable or could not be started."""

    exit_code = 5


class JobError(PipelineError):
    """A job was accepted by a server but failed (validation, missing node/model, run-time error)."""

    exit_code = 6
    #: True when every other item would fail the same way (a missing node or model): stop at once
    #: instead of marking the item failed and going on with the others.
    affects_every_item = False


class ItemsFailedError(JobError):
    """Some items of a script failed while the others were finished and kept."""


class QuotaError(PipelineError):
    """An external quota or limit was hit; retrying later continues where it stopped."""

    exit_code = 7


class Interrupted(PipelineError):
    """The user pressed Ctrl+C or the process got SIGTERM; finished work is kept."""

    exit_code = 130


class PreflightError(PipelineError):
    """The checks before an overnight run found problems; nothing expensive was started."""

    exit_code = 8
