"""Talk to a ComfyUI server: upload inputs, queue a job, wait for it, fetch its files.

Waiting listens on the `/ws` socket (opened before the job is queued, so no message is
missed) and also polls `/history`, so a socket that fails, drops, or belongs to another
client never leaves a job waiting forever. Every failure a user can cause becomes one of
our errors with one sentence that says what to do; server-given file names are treated as
untrusted and can never write outside the destination folder.
"""
from __future__ import annotations

import json
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlsplit

import requests
import websocket

from common.run import cancel
from common.run.errors import InputError, ServiceError
from common.services.comfyui.checks import Problem, find_problems
from common.services.comfyui.errors import (
    ComfyJobError, JobInterruptedError, JobLostError, JobStalledError, JobTimeoutError, ServerAnswerError, ServerStuckError,
    checked_entry, describe_rejection, first_line, succeeded,
)
from common.services.comfyui.messages import ProgressCallback, greeted, read_message, receive
from common.services.comfyui.outputs import output_items, safe_filename, unique_name
from common.services.comfyui.watchdog import Stall, Watchdog
from common.services.net import is_loopback_url
from common.state.atomic import atomic_path

_SERVER_GONE_AFTER = 5.0  # seconds of connection failures mid-wait before we call the server dead (or stuck)
_PROBE_TIMEOUT = 5.0  # seconds a server asked to stop a stalled job gets to answer each request
_GET_ATTEMPTS = 3  # a GET that meets a refused connection or a 5xx is tried this often
_RETRY_PAUSE = 0.5  # seconds before the first retry, doubled after each


def job_id(prompt: dict[str, Any]) -> str:
    """The prompt id of a graph: the same job always gets the same id (ComfyUI takes ours)."""
    blob = json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "comfyui-job:" + blob))


def _retried(send: Callable[[], requests.Response], failure: type[Exception], *, attempts: int = _GET_ATTEMPTS,
             settled: Callable[[], bool] | None = None) -> requests.Response | None:
    """`send()` again after a `failure` or a 5xx, with a growing pause: a server that is restarting or
    briefly overloaded answers a second later. The last attempt's answer or error is the caller's;
    None when `settled()` says, after a pause, that the lost attempt took effect after all."""
    for attempt in range(1, attempts + 1):
        try:
            resp = send()
        except failure:
            if attempt == attempts:
                raise
        else:
            if resp.status_code < 500 or attempt == attempts:
                return resp
            resp.close()
        time.sleep(_RETRY_PAUSE * 2 ** (attempt - 1))
        if settled is not None and settled():
            return None
    raise AssertionError("unreachable")  # the last attempt returns or raises


class ComfyClient:
    """One ComfyUI server, seen through its HTTP and WebSocket API."""

    def __init__(self, base_url: str, *, client_id: str | None = None, request_timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.request_timeout = request_timeout
        self.answered = False  # the server answered some request of ours (it was up at some point)
        self._session = requests.Session()
        # A corporate HTTP(S)_PROXY must never swallow requests to our own machine.
        self._session.trust_env = not is_loopback_url(self.base_url)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "ComfyClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP plumbing
    def _down(self) -> ServiceError:
        return ServiceError(
            f"ComfyUI is not answering at {self.base_url}: start it, or set COMFYUI_DIR so the pipeline can start it, then run again."
        )

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kw: Any) -> requests.Response:
        """One HTTP call; a GET (safe to repeat) is retried a little on a refused connection or a 5xx."""
        timeout = self.request_timeout if timeout is None else timeout

        def send() -> requests.Response:
            resp = self._session.request(method, self.base_url + path, timeout=timeout, **kw)
            self.answered = True
            return resp

        try:
            resp = _retried(send, requests.ConnectionError, attempts=_GET_ATTEMPTS if method == "GET" else 1)
            assert resp is not None  # nothing to settle: only a response or an error comes back
            return resp
        except requests.ConnectionError:
            raise self._down() from None
        except requests.Timeout:
            raise ServiceError(
                f"ComfyUI at {self.base_url} did not answer {method} {path} within {timeout:g} s: it may be stuck; restart it and run again."
            ) from None

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._request(method, path, **kw)
        if resp.status_code != 200:
            raise ServerAnswerError(
                f"ComfyUI at {self.base_url} answered {method} {path} with HTTP {resp.status_code} "
                f"({first_line(resp.text, 200)}); check that the URL points at ComfyUI and that it is up to date."
            )
        try:
            return resp.json()
        except ValueError:
            raise ServerAnswerError(
                f"ComfyUI at {self.base_url} answered {method} {path} with something that is not JSON; "
                "check that the URL points at ComfyUI."
            ) from None

    # ------------------------------------------------------------------ simple calls
    def is_up(self) -> bool:
        """True when /system_stats answers like ComfyUI within a second or two."""
        try:
            resp = self._session.get(self.base_url + "/system_stats", timeout=min(2.0, self.request_timeout))
            return resp.status_code == 200 and "system" in resp.json()
        except (requests.RequestException, ValueError):
            return False

    def system_stats(self) -> dict[str, Any]:
        return self._json("GET", "/system_stats")

    def object_info(self, cls: str | None = None) -> dict[str, Any]:
        """All node classes (about 600 KB), or one class (`{}` when the server lacks it)."""
        return self._json("GET", "/object_info" if cls is None else f"/object_info/{quote(cls, safe='')}")

    def queue_state(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self._json("GET", "/queue", timeout=timeout)

    def history(self, prompt_id: str, *, timeout: float | None = None) -> dict[str, Any] | None:
        """The finished job's history entry, or None while ComfyUI has none (running, queued or unknown)."""
        data = self._json("GET", f"/history/{quote(prompt_id, safe='')}", timeout=timeout)
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        """Ask ComfyUI to unload its models after the current job (an adopted server is freed, never killed)."""
        resp = self._request("POST", "/free", json={"unload_models": unload_models, "free_memory": free_memory})
        if resp.status_code != 200:
            raise ServiceError(f"ComfyUI at {self.base_url} refused POST /free (HTTP {resp.status_code}); restart it to free GPU memory.")

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop a job: drop it from the pending queue, and interrupt it if it is running."""
        if prompt_id:
            self._request("POST", "/queue", json={"delete": [prompt_id]})
            self._request("POST", "/interrupt", json={"prompt_id": prompt_id})
        else:
            self._request("POST", "/interrupt", json={})

    def _cancel_quietly(self, prompt_id: str) -> None:
        saved, self.request_timeout = self.request_timeout, min(3.0, self.request_timeout)
        try:
            self.interrupt(prompt_id)
        except (ServiceError, requests.RequestException):
            pass  # the server is gone or busy: nothing left to stop
        finally:
            self.request_timeout = saved

    # ------------------------------------------------------------------ upload and queue
    def upload_image(self, path: str | Path, name: str | None = None, *, subfolder: str = "",
                     overwrite: bool = False) -> str:
        """Upload a file to ComfyUI's input folder; returns the name to put in LoadImage/LoadAudio.

        Without `overwrite`, ComfyUI keeps an identical file's name and renames a different file
        with the same name ("x (1).png"): always use the returned name.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path} does not exist, so it cannot be sent to ComfyUI; create it first (an earlier step makes it).") from None
        fields = {"type": "input", "subfolder": subfolder}
        if overwrite:
            fields["overwrite"] = "true"
        resp = self._request("POST", "/upload/image", files={"image": (name or path.name, data)}, data=fields)
        if resp.status_code != 200:
            raise ServerAnswerError(f"ComfyUI at {self.base_url} refused the upload of {path.name} (HTTP {resp.status_code}); check its input folder is writable.")
        answer = resp.json()
        server_name = str(answer["name"])
        sub = str(answer.get("subfolder") or "")
        return f"{sub}/{server_name}" if sub else server_name

    def queue(self, prompt: dict[str, Any], *, prompt_id: str | None = None) -> str:
        """POST /prompt; returns the prompt id, or raises a WorkflowRejectedError naming what to fix.

        The id is ours (ComfyUI accepts a supplied one), so when the answer is lost (a dropped
        connection, a 5xx) we can ask whether the job got queued before sending it again: a
        retried POST never makes the GPU do the same job twice.
        """
        pid = prompt_id or str(uuid.uuid4())
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id, "prompt_id": pid}
        resp = _retried(lambda: self._request("POST", "/prompt", json=body), ServiceError,
                        settled=lambda: self._has_job(pid))
        if resp is None:
            return pid  # the answer was lost, the job was not
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if resp.status_code == 400 and isinstance(answer, dict):
            raise describe_rejection(answer.get("error"), answer.get("node_errors"), prompt)
        if resp.status_code != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
            raise ServerAnswerError(
                f"ComfyUI at {self.base_url} could not take the job (HTTP {resp.status_code}: {first_line(resp.text, 200)}); "
                "see ComfyUI's console output."
            )
        pid = str(answer["prompt_id"])
        if answer.get("node_errors"):
            # Some outputs were dropped but the rest was queued: do not let half a job run.
            self._cancel_quietly(pid)
            err = describe_rejection({}, answer["node_errors"], prompt)
            err.prompt_id = pid
            raise err
        return pid

    def _has_job(self, pid: str) -> bool:
        """True when ComfyUI has queued, is running or has run `pid` (False when unsure: it is down)."""
        try:
            return self.history(pid) is not None or self._known(pid)
        except ServiceError:
            return False

    # ------------------------------------------------------------------ waiting
    @contextmanager
    def _listening(self) -> Iterator[websocket.WebSocket | None]:
        """The `/ws` socket of our client id while the block runs; None if it cannot be opened."""
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={quote(self.client_id)}"
        try:
            sock = websocket.create_connection(url, timeout=min(5.0, self.request_timeout), suppress_origin=True)
            sock = greeted(sock, min(5.0, self.request_timeout))
        except (websocket.WebSocketException, OSError):
            sock = None  # polling /history still works
        try:
            yield sock
        finally:
            if sock is not None:
                sock.close()

    def wait(self, prompt_id: str, *, timeout: float, on_progress: ProgressCallback | None = None,
             stall_timeout: float | None = None, silent_timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends; returns its history entry or raises (JobError family, ServiceError).

        The watchdog limits are run()'s. Ctrl+C interrupts the job on the server, then re-raises
        KeyboardInterrupt.
        """
        with self._listening() as sock:
            return self._wait(prompt_id, timeout, on_progress, sock, Watchdog(stall_timeout, silent_timeout))

    def run(self, prompt: dict[str, Any], dest_dir: str | Path, *, timeout: float,
            on_progress: ProgressCallback | None = None, stall_timeout: float | None = None,
            silent_timeout: float | None = None, adopt: bool = True) -> list[Path]:
        """Queue a job, wait for it, and download its output files into `dest_dir`.

        The watchdog (watchdog.py) interrupts a running job whose node reported progress and then
        went quiet for `stall_timeout` seconds, or whose node never reported progress and has run
        for `silent_timeout` seconds (None: no limit). ComfyUI stops a silent node only once it
        ends, so the wait goes on (within `timeout`) and the job then counts as stalled
        (JobStalledError); the server counts as stuck (ServerStuckError) only if it also stops
        answering. With `adopt`, the same job left by an interrupted run (same graph, so same id)
        is used: its files if it finished, waited for if it is still queued or running, and made
        again if it ends interrupted (by the watchdog of a run that then lost the server).
        """
        with self._listening() as sock:  # before queueing, so no message of this job is missed
            prompt_id, entry, adopted = self._adopt_or_queue(prompt) if adopt else (self.queue(prompt), None, False)
            taken = entry is not None  # a job an earlier run finished: its files may be gone
            if entry is None:
                types = {str(k): str(v.get("class_type")) for k, v in prompt.items() if isinstance(v, dict)}
                try:
                    entry = self._wait(prompt_id, timeout, on_progress, sock, Watchdog(stall_timeout, silent_timeout, types))
                except JobInterruptedError:
                    if not adopted:
                        raise
        if entry is not None:
            try:
                files = self.download_outputs(entry, dest_dir)
            except ComfyJobError:
                if not taken:
                    raise
                entry = None  # the earlier run's files are gone from ComfyUI's output folder
        if entry is None:  # make them again
            return self.run(prompt, dest_dir, timeout=timeout, on_progress=on_progress,
                            stall_timeout=stall_timeout, silent_timeout=silent_timeout, adopt=False)
        if not files:
            raise ComfyJobError(
                f"ComfyUI finished job {prompt_id} but it saved no files: the workflow needs an output node "
                "(SaveImage, SaveAudio, SaveAudioMP3, VHS_VideoCombine or SaveVideo).", prompt_id=prompt_id)
        return files

    def _adopt_or_queue(self, prompt: dict[str, Any]) -> tuple[str, dict[str, Any] | None, bool]:
        """(prompt id, the finished history entry or None to wait for it, whether an earlier run queued it).

        A job's id is derived from its graph, so a run killed after queueing finds its job again:
        finished with files (taken as they are), or still queued or running (waited for, not
        queued a second time). A failed or interrupted one gets a fresh id and runs again.
        """
        pid = job_id(prompt)
        entry = self.history(pid)
        if entry is not None:
            if succeeded(entry) and self.output_items(entry):
                return pid, entry, True
            return self.queue(prompt), None, False
        if self._known(pid):
            return pid, None, True
        return self.queue(prompt, prompt_id=pid), None, False

    def _wait(self, pid: str, timeout: float, on_progress: ProgressCallback | None,
              sock: websocket.WebSocket | None, dog: Watchdog) -> dict[str, Any]:
        try:
            return self._watch(pid, timeout, on_progress, sock, dog)
        except KeyboardInterrupt:
            self._cancel_quietly(pid)
            raise

    def _watch(self, pid: str, timeout: float, on_progress: ProgressCallback | None,
               sock: websocket.WebSocket | None, dog: Watchdog) -> dict[str, Any]:
        """Listen on the socket when there is one; poll /history either way (often once the socket says done).

        Without a socket there is no news to judge a stall by, and only the overall timeout applies.
        Once the watchdog has interrupted the job, the wait goes on until ComfyUI stops it (a silent
        node stops when it ends); requests then get a short timeout, and a server that stops
        answering them is stuck.
        """
        deadline = time.monotonic() + timeout
        poll_every = 1.0 if sock is not None else 0.25
        next_poll = 0.0
        polls = 0
        failing_since: float | None = None  # when the first of the failed requests in a row was sent
        stall: Stall | None = None  # why the watchdog interrupted the job
        while True:
            now = time.monotonic()
            if cancel.stop_requested():  # Ctrl+C reached the main thread while this worker waited
                raise KeyboardInterrupt
            if now >= deadline:
                self._cancel_quietly(pid)
                raise JobTimeoutError(
                    f"ComfyUI job {pid} did not finish within {timeout:g} s, so it was interrupted: "
                    "raise the timeout for this step, or check ComfyUI's console for a stuck node.", prompt_id=pid)
            if stall is None:
                stall = dog.stalled(now)
                if stall is not None:
                    self._cancel_quietly(pid)
                    next_poll = 0.0
                    continue
            if sock is not None:
                raw, sock = receive(sock, max(0.05, min(0.5, deadline - now, max(next_poll - now, 0.05))))
                if sock is None:
                    poll_every, next_poll = 0.25, 0.0  # the socket failed: /history polling carries on
                    dog.off()
                elif raw is not None:
                    news = read_message(pid, raw, on_progress)
                    if news is not None:
                        dog.saw(news, time.monotonic())
                        if news.kind == "end":
                            poll_every, next_poll = 0.1, 0.0  # its history entry is (nearly) there
            else:
                time.sleep(max(0.0, min(poll_every, deadline - now, next_poll - now)))
            if time.monotonic() < next_poll:
                continue
            next_poll = time.monotonic() + poll_every
            polls += 1
            asked = time.monotonic()
            due = dog.due(asked)  # a request must not hold the watchdog up for long
            if stall is not None:
                wait_for = _PROBE_TIMEOUT
            else:
                wait_for = self.request_timeout if due is None else min(self.request_timeout, max(_PROBE_TIMEOUT, due))
            try:
                entry = self._poll(pid, check_known=polls % 2 == 0, timeout=wait_for)
                failing_since = None
            except JobLostError:
                if stall is None:
                    raise
                raise self._stalled(pid, stall) from None  # stopped, and already gone from the queue
            except ServiceError:
                failing_since = failing_since or asked
                if time.monotonic() - failing_since > _SERVER_GONE_AFTER:
                    if stall is None and (stall := dog.stalled(time.monotonic())) is not None:
                        self._cancel_quietly(pid)  # in case it hears us after all
                    if stall is not None:  # it stalled, and does not answer: it is stuck
                        raise self._stuck(pid, stall) from None
                    raise ServiceError(
                        f"ComfyUI stopped answering at {self.base_url} while job {pid} was running: it may have crashed "
                        "(out of memory?); restart it and run again, finished work is kept."
                    ) from None
                continue
            if entry is not None:
                if stall is not None and not succeeded(entry):
                    raise self._stalled(pid, stall)
                return checked_entry(pid, entry)

    @staticmethod
    def _stalled(pid: str, stall: Stall) -> JobStalledError:
        return JobStalledError(f"ComfyUI job {pid} {stall.what()}, so it was interrupted: {stall.advice()}.",
                               prompt_id=pid)

    def _stuck(self, pid: str, stall: Stall) -> ServerStuckError:
        return ServerStuckError(
            f"ComfyUI at {self.base_url} did not stop job {pid}, which {stall.what()} ({stall.setting}), and then "
            "stopped answering: restart ComfyUI (the pipeline restarts a ComfyUI it started itself) and run again; "
            "finished work is kept.")

    def _poll(self, pid: str, *, check_known: bool, timeout: float | None = None) -> dict[str, Any] | None:
        """The history entry, None while the job is queued or running; JobLostError if ComfyUI forgot it."""
        entry = self.history(pid, timeout=timeout)
        if entry is None and check_known and not self._known(pid, timeout=timeout):
            entry = self.history(pid, timeout=timeout)  # it may have finished between the two calls
            if entry is None:
                raise JobLostError(
                    f"ComfyUI no longer knows job {pid} (it was restarted or its queue was cleared): submit the job again.",
                    prompt_id=pid)
        return entry

    def _known(self, pid: str, *, timeout: float | None = None) -> bool:
        state = self.queue_state(timeout=timeout)
        return any(len(item) > 1 and item[1] == pid
                   for key in ("queue_running", "queue_pending") for item in state.get(key, []))

    # ------------------------------------------------------------------ outputs
    output_items = staticmethod(output_items)

    def download_outputs(self, entry: dict[str, Any], dest_dir: str | Path, *, include_temp: bool = False) -> list[Path]:
        """Fetch each output file through /view into `dest_dir`, atomically, under a sanitised name."""
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        used: set[str] = set()
        paths = []
        for item in self.output_items(entry, include_temp=include_temp):
            name = unique_name(safe_filename(item["filename"]), used)
            target = root / name
            if target.parent != root:  # cannot happen after safe_filename; a last guard all the same
                raise ServiceError(f"ComfyUI gave an output file name that would leave {dest}; refusing it.")
            self._download(item, target)
            paths.append(target)
        return paths

    def _download(self, item: dict[str, Any], target: Path) -> None:
        params = {"filename": str(item["filename"]), "subfolder": str(item.get("subfolder") or ""),
                  "type": str(item.get("type") or "output")}
        resp = self._request("GET", "/view", params=params, stream=True)
        try:
            if resp.status_code != 200:
                raise ComfyJobError(
                    f"ComfyUI listed the output {params['filename']} but /view answered HTTP {resp.status_code}; "
                    "check ComfyUI's output folder (was it cleaned?) and run again.")
            size = 0
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as handle:
                    for chunk in resp.iter_content(chunk_size=1 << 20):
                        handle.write(chunk)
                        size += len(chunk)
                if size == 0:
                    raise ComfyJobError(f"ComfyUI returned an empty file for {params['filename']}; run the job again.")
        except requests.RequestException:
            raise ServiceError(f"The download of {params['filename']} from ComfyUI at {self.base_url} broke off; run again.") from None
        finally:
            resp.close()

    # ------------------------------------------------------------------ checks before a long run
    def find_problems(self, prompt: dict[str, Any], object_info: dict[str, Any] | None = None) -> list[Problem]:
        """What this server lacks for `prompt` (see checks.find_problems), asked before anything is queued."""
        return find_problems(prompt, self.object_info() if object_info is None else object_info)
