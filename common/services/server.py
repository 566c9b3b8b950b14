"""What the two GPU servers (ComfyUI, the LLM server) share: whose they are, and how the GPU is given back.

Both compete for one GPU's memory, so the orchestrator keeps at most the ones the next script
needs (SPEC 6). A server that was already running belongs to the user: it is adopted, only
ever freed (ComfyUI `POST /free`, LM Studio `lms unload --all`), never killed. A server we
started is ours: it is stopped when it is no longer needed. So is one an earlier run of this
pipeline started and could not stop (it was killed): its record (common.services.records) names
it, and the first look at the server takes it over as ours, or drops the record of a process
that is gone.
"""
from __future__ import annotations

from typing import Any

from common.services.net import CHECK_TIMEOUT, http_answers
from common.services.records import ServerRecord, ServerRecords
from common.services.say import Say, say_on_stderr


class ManagedServer:
    """A server at `base_url` that answers GET `health_path` when up; subclasses start, free and stop it."""

    name = "server"
    kind = ""  # its name in the records
    health_path = ""

    def __init__(self, base_url: str, *, start_timeout: float, say: Say | None,
                 records: ServerRecords | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.start_timeout = start_timeout
        self.say = say or say_on_stderr
        self.records = records
        self._adopted = False
        self._dirty = False  # adopted and used since the last free
        self._orphan_checked = records is None

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
        orphan = self._orphan()
        if orphan is not None and orphan[1] is not None:
            return (f"take over the {self.name} an earlier run started at {self.base_url} and left running "
                    f"(pid {orphan[0].pid}); it is stopped at the end like one this run starts")
        if self.answers():
            return f"adopt the {self.name} already running at {self.base_url} (it will only be freed, never stopped)"
        self._check_startable()
        return self._start_plan()

    def _orphan(self) -> tuple[ServerRecord, Any] | None:
        """(record, its living process or None) of a server an earlier, finished run started here."""
        if self.records is None:
            return None
        record = self.records.find(self.kind, self.base_url)
        if record is None or record.owner_alive():  # a run still going holds it: not ours to touch
            return None
        return record, record.process()

    def _claim_orphan(self) -> None:
        """Once, before this run first uses or releases the server: take over our orphan, drop a dead record."""
        if self._orphan_checked:
            return
        self._orphan_checked = True
        found = self._orphan()
        if found is None:
            return
        record, proc = found
        if proc is None:
            assert self.records is not None
            self.records.remove(self.kind, self.base_url)
            return
        self._take_over(record, proc)

    def _take_over(self, record: ServerRecord, proc: Any) -> None:
        """Make an earlier run's living server ours (or stop it, or drop its record if it is not ours any more)."""
        raise NotImplementedError

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
        self._claim_orphan()
        if self.started_by_us:
            self.stop()
        elif self._adopted and self._dirty:
            self.free()
