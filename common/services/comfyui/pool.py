"""Several ComfyUI servers used as one, with the recovery an unattended night needs.

Why this exists: every media engine runs the same kind of job (build a graph, queue it, wait,
download), and every job can meet the same night-time troubles: a server that stops answering,
a job that hangs, the GPU running out of memory. Handling them once here keeps the engines
about graphs and the scripts about items. The rules, all bounded and all logged:

- A job goes to the live server with the fewest of our jobs in flight, so with
  `parallel_jobs` workers every server's queue stays `COMFYUI_QUEUE_DEPTH` deep.
- A server that stops answering is set aside and the job is built and queued again on another
  one (uploads included: input files live per server). With no server left, the pool waits up
  to COMFYUI_RETURN_WAIT seconds for one to come back, then gives up with ServiceError (the
  orchestrator restarts a ComfyUI it started itself and re-runs the step).
- A job whose sampler reported progress and then went quiet for COMFYUI_STALL_TIMEOUT seconds,
  or whose silent node (a load, a decode, a save: no progress bar) has run for
  COMFYUI_SILENT_NODE_TIMEOUT seconds, is interrupted and, once ComfyUI has stopped it, tried
  again, at most COMFYUI_JOB_RETRIES times. A server that stops answering instead of stopping it
  is stuck: set aside like a server that stopped answering, and used again once it answers.
- An out-of-memory failure frees the server's memory (`/free`) and retries once with the
  lower settings (`lowered=True` to the job's builder: smaller size, tiled decode). A builder
  that lowers the size notes it (common.run.notes), so the item's checkpoint says `reduced`.
"""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from common.run import cancel
from common.services.comfyui.client import ComfyClient
from common.services.comfyui.messages import ProgressCallback
from common.services.comfyui.errors import (
    JobLostError, JobStalledError, OutOfMemoryJobError, ServerAnswerError, ServerStuckError,
)
from common.run.errors import ConfigError, ServiceError
from common.services.say import Say, say_on_stderr

#: (server, lowered) -> API-format prompt. Called again for every attempt, on whichever server.
JobBuilder = Callable[[ComfyClient, bool], dict[str, Any]]

_REVIVE_AFTER = 5.0  # seconds before a server that stopped answering is asked again


def server_urls(value: str) -> list[str]:
    """COMFYUI_BASE_URL as a list: one URL, or several separated by commas or spaces."""
    urls: list[str] = []
    for part in re.split(r"[,\s]+", str(value or "").strip()):
        url = part.rstrip("/")
        if not url:
            continue
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"COMFYUI_BASE_URL has {part!r}, which is not an http(s) URL; "
                              "give one or more like http://127.0.0.1:8188, separated by commas.")
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ConfigError("COMFYUI_BASE_URL is empty; set it to your ComfyUI server, e.g. http://127.0.0.1:8188.")
    return urls


@dataclass(frozen=True)
class Recovery:
    """How hard the pool tries before an item is given up (all from settings)."""

    stall_timeout: float = 600.0  # 0 turns the watchdog off for nodes that report progress
    silent_timeout: float = 1800.0  # 0: no limit for nodes that report none
    job_retries: int = 1          # further attempts after a stalled or lost job
    oom_retry: bool = True        # free memory and retry once with lower settings
    return_wait: float = 60.0     # seconds to wait for a vanished server to come back
    depth: int = 2                # jobs kept queued per server
    reuse_jobs: bool = True       # take over the same job an interrupted run left on a server

    @classmethod
    def from_settings(cls, settings: Any) -> "Recovery":
        return cls(float(settings.COMFYUI_STALL_TIMEOUT), max(0.0, float(settings.COMFYUI_SILENT_NODE_TIMEOUT)),
                   max(0, int(settings.COMFYUI_JOB_RETRIES)), bool(settings.COMFYUI_OOM_RETRY),
                   max(0.0, float(settings.COMFYUI_RETURN_WAIT)), max(1, int(settings.COMFYUI_QUEUE_DEPTH)),
                   bool(settings.COMFYUI_REUSE_JOBS))


class ComfyPool:
    """The ComfyUI servers of a run; safe to use from several threads at once."""

    def __init__(self, urls: Sequence[str], *, recovery: Recovery | None = None, request_timeout: float = 30.0,
                 say: Say = say_on_stderr) -> None:
        self.urls = list(urls)
        if not self.urls:
            raise ConfigError("no ComfyUI server given; set COMFYUI_BASE_URL.")
        self.recovery = recovery or Recovery()
        self.request_timeout = request_timeout
        self.say = say
        self._lock = threading.Lock()
        self._busy = {url: 0 for url in self.urls}
        self._down: dict[str, float] = {}  # url -> when it stopped answering (or got stuck)
        self._stuck: dict[str, ServerStuckError] = {}  # of those, the ones stuck on a stalled job: why
        self._local = threading.local()
        self._clients: list[ComfyClient] = []

    @classmethod
    def from_settings(cls, settings: Any, say: Say = say_on_stderr) -> "ComfyPool":
        return cls(server_urls(settings.COMFYUI_BASE_URL), recovery=Recovery.from_settings(settings), say=say)

    @property
    def base_url(self) -> str:
        return self.urls[0]

    @property
    def parallel_jobs(self) -> int:
        """How many jobs to keep in flight so that every server's queue stays full."""
        return len(self.urls) * self.recovery.depth

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    # ------------------------------------------------------------------ choosing a server
    def client(self, url: str | None = None) -> ComfyClient:
        """This thread's client for a server: ComfyUI reports a job's progress only to the socket of
        the client id that queued it, and requests.Session is not thread-safe, so one each."""
        url = url or self.urls[0]
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        if url not in clients:
            clients[url] = ComfyClient(url, request_timeout=self.request_timeout)
            with self._lock:
                self._clients.append(clients[url])
        return clients[url]

    def _usable(self) -> list[str]:
        """The servers to give a job to: those not set aside, and those set aside a while ago that
        answer again (a stuck server too: a night with one GPU must not end at its first hiccup)."""
        now = time.monotonic()
        with self._lock:
            fresh = [u for u in self.urls if u not in self._down]
            retry = [u for u in self.urls if u in self._down and now - self._down[u] >= _REVIVE_AFTER]
        for url in retry:
            if self._back(url, "answers again; sending it jobs"):
                fresh.append(url)
            else:
                self._set_aside(url)
        return fresh

    def _back(self, url: str, news: str) -> bool:
        """Whether a server set aside answers again; if so, it is no longer set aside."""
        if not self.client(url).is_up():
            return False
        with self._lock:
            self._down.pop(url, None)
            self._stuck.pop(url, None)
        self.say(f"ComfyUI at {url} {news}.")
        return True

    def _pick(self) -> str:
        usable = self._usable()
        if not usable:
            usable = self._await_return()
        with self._lock:
            return min(usable, key=lambda u: (self._busy[u], self.urls.index(u)))

    def _await_return(self) -> list[str]:
        """No server answers: wait a bounded time for one to come back (a crash, a restart)."""
        waiting = list(self.urls)
        wait = self.recovery.return_wait
        with self._lock:
            answered = any(c.answered for c in self._clients)  # up at some point this run: worth waiting for
        if not answered:
            # Down from the start: no crash to wait out, the user has to start it.
            raise self.client(self.urls[0])._down() if len(self.urls) == 1 else ServiceError(
                f"no ComfyUI server answers ({', '.join(self.urls)}): start them, or set COMFYUI_DIR so the "
                "pipeline can start the local one, then run again.")
        if waiting and wait > 0:
            self.say(f"no ComfyUI server answers ({', '.join(waiting)}); waiting up to {wait:g} s for one to come back.")
            give_up = time.monotonic() + wait
            while time.monotonic() < give_up:
                if cancel.stop_requested():
                    raise KeyboardInterrupt
                for url in waiting:
                    if self._back(url, "is back"):
                        return [url]
                time.sleep(0.5)
        with self._lock:
            stuck = [self._stuck[u] for u in waiting if u in self._stuck]
        if len(stuck) == len(waiting):  # each one stuck on a job: say so, and what to do
            raise ServerStuckError(str(stuck[0]) if len(stuck) == 1 else
                                   f"every ComfyUI server is stuck ({', '.join(waiting)}): restart ComfyUI (the pipeline "
                                   "restarts a ComfyUI it started itself) and run again; finished work is kept.")
        raise ServiceError(
            f"ComfyUI stopped answering at {', '.join(waiting)} and did not come back within {wait:g} s: "
            "start it again (the pipeline restarts a ComfyUI it started itself) and run again; finished work is kept.")

    @contextmanager
    def _claim(self, url: str) -> Iterator[None]:
        with self._lock:
            self._busy[url] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[url] -= 1

    def _set_aside(self, url: str, *, stuck: ServerStuckError | None = None) -> None:
        with self._lock:
            self._down[url] = time.monotonic()
            if stuck is not None:
                self._stuck[url] = stuck

    # ------------------------------------------------------------------ running a job
    def run(self, build: JobBuilder, dest_dir: str | Path, *, timeout: float, what: str,
            on_progress: ProgressCallback | None = None) -> list[Path]:
        """Build the job for a server, run it there and download its files; recover as the module says."""
        rec = self.recovery
        lowered = False
        stalls = 0
        moves = 0
        max_moves = 2 * len(self.urls) + 1
        while True:
            url = self._pick()
            client = self.client(url)
            try:
                with self._claim(url):
                    prompt = build(client, lowered)
                    return client.run(prompt, dest_dir, timeout=timeout, on_progress=on_progress,
                                      stall_timeout=rec.stall_timeout or None,
                                      silent_timeout=rec.silent_timeout or None, adopt=rec.reuse_jobs)
            except OutOfMemoryJobError:
                if lowered or not rec.oom_retry:
                    raise
                self.say(f"ComfyUI at {url} ran out of memory on {what}; freeing its memory and trying once more "
                         "with the lower settings (COMFYUI_OOM_SCALE, tiled decoding); a smaller picture is marked "
                         "reduced in its checkpoint, for REDO_REDUCED=1 to redo at full size.")
                self._free_quietly(client)
                lowered = True
            except JobStalledError:
                stalls += 1
                if stalls > rec.job_retries:
                    raise
                self.say(f"{what} stalled on ComfyUI at {url} and was interrupted; trying again "
                         f"({stalls} of {rec.job_retries}).")
            except ServerStuckError as stuck:
                self._set_aside(url, stuck=stuck)
                moves += 1
                if moves > max_moves:
                    raise
                self.say(f"ComfyUI at {url} is stuck (it did not stop a stalled job and stopped answering); "
                         + (f"moving {what} to another server." if self._others(url)
                            else f"waiting for it to answer again, to try {what} there once more."))
            except JobLostError:
                moves += 1
                if moves > max_moves:
                    raise
                self.say(f"ComfyUI at {url} lost {what} (it restarted?); queueing it again.")
            except ServerAnswerError:
                raise  # it answers, with an error it already repeated: its sentence says what to check
            except ServiceError:
                self._set_aside(url)
                moves += 1
                if moves > max_moves:
                    raise
                self.say(f"ComfyUI at {url} stopped answering during {what}; "
                         + ("moving it to another server." if self._others(url) else "waiting for a server to answer."))

    def _others(self, url: str) -> bool:
        return any(u != url for u in self.urls)

    @staticmethod
    def _free_quietly(client: ComfyClient) -> None:
        try:
            client.free()
        except ServiceError:
            pass  # the retry finds out whether the server is still there


__all__ = ["ComfyPool", "JobBuilder", "Recovery", "server_urls"]
