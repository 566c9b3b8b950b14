"""What the two GPU servers (ComfyUI, the LLM server) share: whose they are, and how the GPU is given back.

Both compete for one GPU's memory, so the orchestrator keeps at most the ones the next script
needs (SPEC 6). A server that was already running belongs to the user: it is adopted, only
ever freed (ComfyUI `POST /free`, LM Studio `lms unload --all`), never killed. A server we
started is ours: it is stopped when it is no longer needed.
"""
from __future__ import annotations

from common.services.net import CHECK_TIMEOUT, http_answers
from common.services.say import Say, say_on_stderr


class ManagedServer:
    """A server at `base_url` that answers GET `health_path` when up; subclasses start, free and stop it."""

    name = "server"
    health_path = ""

    def __init__(self, base_url: str, *, start_timeout: float, say: Say | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.start_timeout = start_timeout
        self.say = say or say_on_stderr
        self._adopted = False
        self._dirty = False  # adopted and used since the last free

    @property
    def started_by_us(self) -> bool:
        raise NotImplementedError

    @property
    def adopted(self) -> bool:
        return self._adopted

    @property
    def active(self) -> bool:
        """Holding (or possibly holding) GPU memory on our behalf."""
        return self.started_by_us or (self._adopted and self._dirty)

    def answers(self, timeout: float = CHECK_TIMEOUT) -> bool:
        return http_answers(f"{self.base_url}{self.health_path}", timeout)

    def plan_start(self) -> str:
        """What ensure_running would do, for --dry-run; only a quick connection check."""
        if self.started_by_us:
            return self._keep_plan()
        if self.answers():
            return f"adopt the {self.name} already running at {self.base_url} (it will only be freed, never stopped)"
        self._check_startable()
        return self._start_plan()

    def _keep_plan(self) -> str:
        raise NotImplementedError

    def _start_plan(self) -> str:
        raise NotImplementedError

    def _check_startable(self) -> None:
        """Raise ServiceError saying why this server cannot be started from here, if it cannot."""
        raise NotImplementedError

    def free(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """Give the GPU back: stop ours, free an adopted one that was used since its last free."""
        if self.started_by_us:
            self.stop()
        elif self._adopted and self._dirty:
            self.free()
