"""Talk to a ComfyUI server: upload inputs, queue a job, wait for it, fetch its files.

Waiting listens on the `/ws` socket (opened before the job is queued, so no message is
missed) and also polls `/history`, so a socket that fails, drops, or belongs to another
client never leaves a job waiting forever. Every failure a user can cause becomes one of
our errors with one sentence that says what to do; server-given file names are treated as
untrusted and can never write outside the destination folder.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import requests
import websocket

from common.run import cancel
from common.state.atomic import atomic_path
from common.run.errors import InputError, JobError, ServiceError

# Which ComfyUI/models folder a loader input reads from; (class, input) first, then input alone.
_CLASS_INPUT_FOLDERS = {
    ("UnetLoaderGGUF", "unet_name"): "unet",
    ("UnetLoaderGGUFAdvanced", "unet_name"): "unet",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("OmniVoiceMultiSpeakerTTS", "model"): "omnivoice",
}
_INPUT_FOLDERS = {
    "ckpt_name": "checkpoints", "vae_name": "vae", "lora_name": "loras", "unet_name": "diffusion_models",
    "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
    "clip_name3": "text_encoders", "clip_name4": "text_encoders", "control_net_name": "controlnet",
    "style_model_name": "style_models", "audio_encoder_name": "audio_encoders", "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks", "model_patch_name": "model_patches",
}
_OUTPUT_KEYS_SKIPPED = {"animated", "text"}
_SERVER_GONE_AFTER = 5.0  # seconds of connection failures mid-wait before we call the server dead
_GET_ATTEMPTS = 3  # a GET that meets a refused connection or a 5xx is tried this often
_RETRY_PAUSE = 0.5  # seconds before the first retry, doubled after each
_SIGNS_OF_LIFE = {"execution_start", "execution_cached", "executing", "progress", "progress_state", "executed"}


def model_folder(class_type: str, input_name: str) -> str | None:
    """The ComfyUI/models subfolder a loader's file input reads from, if it is a model input."""
    return _CLASS_INPUT_FOLDERS.get((class_type, input_name)) or _INPUT_FOLDERS.get(input_name)


class ComfyJobError(JobError):
    """A job ComfyUI refused or failed; carries what the engine may want to act on."""

    def __init__(self, message: str, *, prompt_id: str | None = None, node_id: str | None = None,
                 node_type: str | None = None) -> None:
        super().__init__(message)
        self.prompt_id, self.node_id, self.node_type = prompt_id, node_id, node_type


class WorkflowRejectedError(ComfyJobError):
    """POST /prompt said no (validation): nothing ran, and no other job of the graph would run."""

    affects_every_item = True

    def __init__(self, message: str, *, node_errors: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.node_errors = node_errors or {}


class MissingNodeError(WorkflowRejectedError):
    """The workflow uses a node class this ComfyUI lacks: a custom node pack is not installed."""


class MissingModelError(WorkflowRejectedError):
    """A loader names a model file this ComfyUI does not have."""

    def __init__(self, message: str, *, model_file: str, folder: str | None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.model_file, self.folder = model_file, folder


class ExecutionError(ComfyJobError):
    """A node raised while the job ran (`execution_error`)."""

    def __init__(self, message: str, *, exception_type: str = "", exception_message: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.exception_type, self.exception_message = exception_type, exception_message


class OutOfMemoryJobError(ExecutionError):
    """The GPU (or RAM) ran out during the job; freeing memory and retrying may work."""


class JobInterruptedError(ComfyJobError):
    """Someone interrupted the job (Cancel in the UI, POST /interrupt)."""


class JobLostError(ComfyJobError):
    """ComfyUI no longer knows the job (restarted, queue cleared): submit it again."""


class JobTimeoutError(ComfyJobError):
    """The job did not finish in time; it was interrupted so the GPU is free again."""


class JobStalledError(ComfyJobError):
    """The watchdog saw no progress for too long and interrupted the job: retrying may work."""


class ServerAnswerError(ServiceError):
    """ComfyUI answered, but with an error or nonsense (a 5xx, not JSON): retrying elsewhere won't help."""


class ServerStuckError(ServiceError):
    """ComfyUI did not stop a stalled job when asked: only restarting it frees the GPU."""


@dataclass(frozen=True)
class Progress:
    """One progress report: `node` started (value == max == 0) or a sampler step `value`/`max`."""

    prompt_id: str
    node: str | None
    value: int
    max: int


ProgressCallback = Callable[[Progress], None]


_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def safe_filename(name: Any, fallback: str = "output") -> str:
    """A server-given file name reduced to one harmless path component, valid on every OS."""
    text = str(name).replace("\\", "/").split("/")[-1]
    text = re.sub(r"[^\w. ()+,=@-]", "_", text).strip(" .")
    if not text or set(text) <= {"_", "."}:
        text = fallback
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return text[:180]


def _first_line(text: Any, limit: int = 300) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def job_id(prompt: dict[str, Any]) -> str:
    """The prompt id of a graph: the same job always gets the same id (ComfyUI takes ours)."""
    blob = json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "comfyui-job:" + blob))


def describe_rejection(error: dict[str, Any] | None, node_errors: dict[str, Any] | None,
                       prompt: dict[str, Any] | None = None) -> WorkflowRejectedError:
    """Turn a /prompt 400 body (or a 200 with node_errors) into one error with one sentence."""
    error = error or {}
    node_errors = node_errors or {}
    prompt = prompt or {}
    if error.get("type") == "invalid_prompt":
        match = re.search(r"node (\S+) does not exist", str(error.get("message", "")))
        node_id = re.sub(r"[^\w.-]", "", str(error.get("details", "")).replace("Node ID", ""))
        cls = match.group(1) if match else str(prompt.get(node_id, {}).get("class_type", "?"))
        if match:
            return MissingNodeError(
                f"ComfyUI has no node type {cls} (node {node_id} of the workflow): a custom node pack is missing; "
                f"install the pack that provides {cls} into ComfyUI/custom_nodes (see ComfyUI/README.md) and restart ComfyUI.",
                node_id=node_id, node_type=cls)
        return WorkflowRejectedError(f"ComfyUI refused the workflow: {_first_line(error.get('message'))} ({error.get('details', '')}).")
    problems = [
        (node_id, info.get("class_type") or prompt.get(node_id, {}).get("class_type", "?"), reason)
        for node_id, info in sorted(node_errors.items(), key=lambda kv: str(kv[0]))
        for reason in info.get("errors", [])
    ]
    if not problems:
        text = f"{error.get('message', 'the workflow was refused')}" + (f": {_first_line(error['details'])}" if error.get("details") else "")
        return WorkflowRejectedError(f"ComfyUI refused the workflow ({text}); fix it in ComfyUI and export it again with \"Export (API)\".")
    # A missing model is the most common and most fixable problem: name it first.
    problems.sort(key=lambda p: p[2].get("type") != "value_not_in_list" or not model_folder(p[1], p[2].get("extra_info", {}).get("input_name", "")))
    node_id, cls, reason = problems[0]
    more = f" ({len(problems) - 1} more problem{'s' if len(problems) > 2 else ''} in the workflow after that)" if len(problems) > 1 else ""
    extra = reason.get("extra_info") or {}
    input_name = str(extra.get("input_name", reason.get("details", "")))
    value = extra.get("received_value")
    kind = reason.get("type")
    common = {"node_id": node_id, "node_type": cls, "node_errors": node_errors}
    if kind == "value_not_in_list":
        folder = model_folder(cls, input_name)
        if folder:
            return MissingModelError(
                f"ComfyUI does not have the model file {value} that node {node_id} ({cls}) needs for its {input_name} input: "
                f"put it in ComfyUI/models/{folder} (see ComfyUI/README.md) and run again{more}.",
                model_file=str(value), folder=folder, **common)
        return WorkflowRejectedError(
            f"Node {node_id} ({cls}) has {input_name} = {value!r}, which this ComfyUI does not offer: choose one it lists, "
            f"or update ComfyUI and the node pack{more}.", **common)
    if kind == "custom_validation_failed" and cls in ("LoadImage", "LoadAudio"):
        return WorkflowRejectedError(
            f"Node {node_id} ({cls}) needs the file {value}, which is not in ComfyUI's input folder: "
            f"upload it first (the pipeline uploads its own inputs, so check that the upload worked){more}.", **common)
    if kind == "required_input_missing":
        return WorkflowRejectedError(
            f"Node {node_id} ({cls}) is missing its required input {input_name}: connect it in ComfyUI and export "
            f"the workflow again with \"Export (API)\"{more}.", **common)
    if kind in ("exception_during_inner_validation", "exception_during_validation"):
        return WorkflowRejectedError(
            f"Node {node_id} ({cls}) links to a node the workflow does not have ({_first_line(reason.get('details'))}): "
            f"fix the workflow's links and export it again with \"Export (API)\"{more}.", **common)
    detail = _first_line(reason.get("details", ""))
    return WorkflowRejectedError(
        f"ComfyUI refused node {node_id} ({cls}): {reason.get('message', kind)}{': ' + detail if detail else ''}{more}.", **common)


def describe_execution_error(prompt_id: str, data: dict[str, Any]) -> ExecutionError:
    node_id = str(data.get("node_id", "?"))
    node_type = str(data.get("node_type", "?"))
    exc_type = str(data.get("exception_type", ""))
    message = str(data.get("exception_message", ""))
    kw = {"prompt_id": prompt_id, "node_id": node_id, "node_type": node_type,
          "exception_type": exc_type, "exception_message": message}
    low = message.lower()
    if "outofmemory" in exc_type.lower().replace("_", "") or "out of memory" in low or "allocation on device" in low:
        return OutOfMemoryJobError(
            f"ComfyUI ran out of GPU memory in node {node_id} ({node_type}): close other programs that use the GPU, "
            "or lower the size, length or batch, then run again.", **kw)
    return ExecutionError(
        f"ComfyUI failed in node {node_id} ({node_type}): {exc_type + ': ' if exc_type else ''}{_first_line(message)}", **kw)


class ComfyClient:
    """One ComfyUI server, seen through its HTTP and WebSocket API."""

    def __init__(self, base_url: str, *, client_id: str | None = None, request_timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.request_timeout = request_timeout
        self.answered = False  # the server answered some request of ours (it was up at some point)
        self._session = requests.Session()
        host = urlsplit(self.base_url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            # A corporate HTTP(S)_PROXY must never swallow requests to our own machine.
            self._session.trust_env = False

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
        """One HTTP call; a GET (safe to repeat) is retried a little on a refused connection or a 5xx,
        since a server that is restarting or briefly overloaded answers a second later."""
        timeout = self.request_timeout if timeout is None else timeout
        attempts = _GET_ATTEMPTS if method == "GET" else 1
        try:
            for attempt in range(1, attempts + 1):
                try:
                    resp = self._session.request(method, self.base_url + path, timeout=timeout, **kw)
                except requests.ConnectionError:
                    if attempt == attempts:
                        raise
                else:
                    self.answered = True
                    if resp.status_code < 500 or attempt == attempts:
                        return resp
                    resp.close()
                time.sleep(_RETRY_PAUSE * 2 ** (attempt - 1))
            raise AssertionError("unreachable")
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
                f"({_first_line(resp.text, 200)}); check that the URL points at ComfyUI and that it is up to date."
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

    def models(self, folder: str) -> list[str]:
        resp = self._request("GET", f"/models/{quote(folder, safe='')}")
        return resp.json() if resp.status_code == 200 else []

    def queue_state(self) -> dict[str, Any]:
        return self._json("GET", "/queue")

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished job's history entry, or None while ComfyUI has none (running, queued or unknown)."""
        data = self._json("GET", f"/history/{quote(prompt_id, safe='')}")
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
        for attempt in range(1, _GET_ATTEMPTS + 1):
            try:
                resp = self._request("POST", "/prompt", json=body)
            except ServiceError:
                if attempt == _GET_ATTEMPTS:
                    raise
            else:
                if resp.status_code < 500 or attempt == _GET_ATTEMPTS:
                    break
                resp.close()
            time.sleep(_RETRY_PAUSE * 2 ** (attempt - 1))
            if self._has_job(pid):
                return pid  # the answer was lost, the job was not
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if resp.status_code == 400 and isinstance(answer, dict):
            raise describe_rejection(answer.get("error"), answer.get("node_errors"), prompt)
        if resp.status_code != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
            raise ServerAnswerError(
                f"ComfyUI at {self.base_url} could not take the job (HTTP {resp.status_code}: {_first_line(resp.text, 200)}); "
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
    def _open_socket(self) -> websocket.WebSocket | None:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={quote(self.client_id)}"
        try:
            return websocket.create_connection(url, timeout=min(5.0, self.request_timeout), suppress_origin=True)
        except (websocket.WebSocketException, OSError):
            return None  # polling /history still works

    def wait(self, prompt_id: str, *, timeout: float, on_progress: ProgressCallback | None = None,
             stall_timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends; returns its history entry or raises (JobError family, ServiceError).

        Ctrl+C interrupts the job on the server, then re-raises KeyboardInterrupt.
        """
        sock = self._open_socket()
        try:
            return self._wait(prompt_id, timeout, on_progress, sock, stall_timeout)
        except KeyboardInterrupt:
            self._cancel_quietly(prompt_id)
            raise
        finally:
            if sock is not None:
                sock.close()

    def run(self, prompt: dict[str, Any], dest_dir: str | Path, *, timeout: float,
            on_progress: ProgressCallback | None = None, stall_timeout: float | None = None,
            adopt: bool = True) -> list[Path]:
        """Queue a job, wait for it, and download its output files into `dest_dir`.

        With `stall_timeout`, a running job that sends no progress message for that many seconds
        is interrupted (JobStalledError), or, when ComfyUI will not stop it, ServerStuckError.
        With `adopt`, the same job left by an interrupted run (same graph, so same id) is used:
        its files if it finished, waited for if it is still queued or running.
        """
        sock = self._open_socket()  # before queueing, so no message of this job is missed
        try:
            prompt_id, entry = self._adopt_or_queue(prompt) if adopt else (self.queue(prompt), None)
            adopted = entry is not None
            if entry is None:
                try:
                    entry = self._wait(prompt_id, timeout, on_progress, sock, stall_timeout)
                except KeyboardInterrupt:
                    self._cancel_quietly(prompt_id)
                    raise
        finally:
            if sock is not None:
                sock.close()
        try:
            files = self.download_outputs(entry, dest_dir)
        except ComfyJobError:
            if not adopted:
                raise
            # The earlier run's files are gone from ComfyUI's output folder: make them again.
            return self.run(prompt, dest_dir, timeout=timeout, on_progress=on_progress,
                            stall_timeout=stall_timeout, adopt=False)
        if not files:
            raise ComfyJobError(
                f"ComfyUI finished job {prompt_id} but it saved no files: the workflow needs an output node "
                "(SaveImage, SaveAudio, SaveAudioMP3, VHS_VideoCombine or SaveVideo).", prompt_id=prompt_id)
        return files

    def _adopt_or_queue(self, prompt: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """(prompt id, the finished history entry or None to wait for it).

        A job's id is derived from its graph, so a run killed after queueing finds its job again:
        finished with files (taken as they are), or still queued or running (waited for, not
        queued a second time). A failed or interrupted one gets a fresh id and runs again.
        """
        pid = job_id(prompt)
        entry = self.history(pid)
        if entry is not None:
            status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
            if status.get("status_str", "success") == "success" and self.output_items(entry):
                return pid, entry
            return self.queue(prompt), None
        if self._known(pid):
            return pid, None
        return self.queue(prompt, prompt_id=pid), None

    def _wait(self, pid: str, timeout: float, on_progress: ProgressCallback | None,
              sock: websocket.WebSocket | None, stall_timeout: float | None = None) -> dict[str, Any]:
        """Listen on the socket when there is one; poll /history either way (often once the socket says done).

        The watchdog's clock runs only while the socket shows our job running (a job waiting
        behind others is not stalled) and restarts at every message about it; without a socket
        there is no progress to watch, and only the overall timeout applies.
        """
        deadline = time.monotonic() + timeout
        poll_every = 1.0 if sock is not None else 0.25
        next_poll = 0.0
        polls = 0
        failing_since: float | None = None
        last_sign: float | None = None  # when the socket last said something about our running job
        while True:
            now = time.monotonic()
            if cancel.stop_requested():  # Ctrl+C reached the main thread while this worker waited
                raise KeyboardInterrupt
            if now >= deadline:
                self._cancel_quietly(pid)
                raise JobTimeoutError(
                    f"ComfyUI job {pid} did not finish within {timeout:g} s, so it was interrupted: "
                    "raise the timeout for this step, or check ComfyUI's console for a stuck node.", prompt_id=pid)
            if stall_timeout and last_sign is not None and now - last_sign > stall_timeout:
                self._stop_stalled(pid, stall_timeout)
            if sock is not None:
                raw, sock = self._receive(sock, max(0.05, min(0.5, deadline - now, max(next_poll - now, 0.05))))
                if sock is None:
                    poll_every, next_poll, last_sign = 0.25, 0.0, None  # the socket failed: /history polling carries on
                elif raw is not None:
                    said = self._handle_message(pid, raw, on_progress)
                    if said == "end":
                        poll_every, next_poll, last_sign = 0.1, 0.0, None  # its history entry is (nearly) there
                    elif said == "sign":
                        last_sign = time.monotonic()
            else:
                time.sleep(max(0.0, min(poll_every, deadline - now, next_poll - now)))
            if time.monotonic() < next_poll:
                continue
            next_poll = time.monotonic() + poll_every
            polls += 1
            try:
                entry = self._poll(pid, check_known=polls % 2 == 0)
                failing_since = None
            except ServiceError:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > _SERVER_GONE_AFTER:
                    raise ServiceError(
                        f"ComfyUI stopped answering at {self.base_url} while job {pid} was running: it may have crashed "
                        "(out of memory?); restart it and run again, finished work is kept."
                    ) from None
                continue
            if entry is not None:
                return self._checked(pid, entry)

    def _stop_stalled(self, pid: str, stall_timeout: float) -> None:
        """Interrupt a job that stopped making progress; raise whichever error says what happened.

        A node stops at its next step boundary, so it gets as long again as it was allowed to stall
        (2-15 s) before the server counts as stuck.
        """
        self._cancel_quietly(pid)
        give_up = time.monotonic() + max(2.0, min(15.0, stall_timeout))
        while time.monotonic() < give_up:
            try:
                if self.history(pid) is not None or not self._known(pid):
                    raise JobStalledError(
                        f"ComfyUI job {pid} showed no progress for {stall_timeout:g} s, so it was interrupted: "
                        "check ComfyUI's console for a stuck node, or raise COMFYUI_STALL_TIMEOUT for slow steps.",
                        prompt_id=pid)
            except ServiceError:
                pass
            time.sleep(0.2)
        raise ServerStuckError(
            f"ComfyUI at {self.base_url} did not stop job {pid} after it stalled for {stall_timeout:g} s: "
            "restart ComfyUI (the pipeline restarts a ComfyUI it started itself) and run again; finished work is kept.")

    @staticmethod
    def _receive(sock: websocket.WebSocket, wait: float) -> tuple[str | None, websocket.WebSocket | None]:
        """One text frame (None on timeout or for binary previews); the socket, or None once it failed."""
        try:
            sock.settimeout(wait)
            raw = sock.recv()
        except websocket.WebSocketTimeoutException:
            return None, sock
        except (websocket.WebSocketException, OSError, ValueError):
            sock.close()
            return None, None
        return (raw if isinstance(raw, str) else None), sock

    def _poll(self, pid: str, *, check_known: bool) -> dict[str, Any] | None:
        """The history entry, None while the job is queued or running; JobLostError if ComfyUI forgot it."""
        entry = self.history(pid)
        if entry is None and check_known and not self._known(pid):
            entry = self.history(pid)  # it may have finished between the two calls
            if entry is None:
                raise JobLostError(
                    f"ComfyUI no longer knows job {pid} (it was restarted or its queue was cleared): submit the job again.",
                    prompt_id=pid)
        return entry

    def _known(self, pid: str) -> bool:
        state = self.queue_state()
        return any(len(item) > 1 and item[1] == pid
                   for key in ("queue_running", "queue_pending") for item in state.get(key, []))

    def _handle_message(self, pid: str, raw: str, on_progress: ProgressCallback | None) -> str | None:
        """React to one socket message: "end" when it says our job ended, "sign" for any other
        news of our job (it is alive), None for everything else."""
        try:
            message = json.loads(raw)
        except ValueError:
            return None
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(data, dict) or data.get("prompt_id") != pid:
            return None  # status, other clients' jobs, other prompts
        kind = message.get("type")
        if kind == "executing":
            if data.get("node") is None:
                return "end"
            if on_progress:
                on_progress(Progress(pid, str(data["node"]), 0, 0))
        elif kind == "progress" and on_progress:
            on_progress(Progress(pid, str(data.get("node")) if data.get("node") is not None else None,
                                 int(data.get("value", 0)), int(data.get("max", 0))))
        if kind in ("execution_success", "execution_error", "execution_interrupted"):
            return "end"
        return "sign" if kind in _SIGNS_OF_LIFE else None

    @staticmethod
    def _checked(pid: str, entry: dict[str, Any]) -> dict[str, Any]:
        status = entry.get("status")
        if not isinstance(status, dict) or status.get("status_str", "success") == "success":
            return entry
        for event, data in reversed(status.get("messages") or []):
            if event == "execution_error":
                raise describe_execution_error(pid, data)
            if event == "execution_interrupted":
                raise JobInterruptedError(
                    f"ComfyUI job {pid} was interrupted in node {data.get('node_id')} ({data.get('node_type')}): "
                    "someone pressed Cancel or called /interrupt; run again to redo it.",
                    prompt_id=pid, node_id=str(data.get("node_id")), node_type=str(data.get("node_type")))
        raise ComfyJobError(f"ComfyUI job {pid} failed without saying why; see ComfyUI's console output.", prompt_id=pid)

    # ------------------------------------------------------------------ outputs
    @staticmethod
    def output_items(entry: dict[str, Any], *, include_temp: bool = False) -> list[dict[str, Any]]:
        """The file records of a history entry (images, audio, gifs...), in output-node order."""
        items = []
        outputs = entry.get("outputs") or {}
        for node_id in sorted(outputs, key=lambda k: (0, int(k)) if str(k).isdigit() else (1, str(k))):
            ui = outputs[node_id]
            if not isinstance(ui, dict):
                continue
            for key, value in ui.items():
                if key in _OUTPUT_KEYS_SKIPPED or not isinstance(value, list):
                    continue
                for item in value:
                    if isinstance(item, dict) and item.get("filename"):
                        if item.get("type", "output") == "temp" and not include_temp:
                            continue
                        items.append({**item, "node": node_id})
        return items

    def download_outputs(self, entry: dict[str, Any], dest_dir: str | Path, *, include_temp: bool = False) -> list[Path]:
        """Fetch each output file through /view into `dest_dir`, atomically, under a sanitised name."""
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        used: set[str] = set()
        paths = []
        for item in self.output_items(entry, include_temp=include_temp):
            name = self._unique(safe_filename(item["filename"]), used)
            target = root / name
            if target.parent != root:  # cannot happen after safe_filename; a last guard all the same
                raise ServiceError(f"ComfyUI gave an output file name that would leave {dest}; refusing it.")
            self._download(item, target)
            paths.append(target)
        return paths

    @staticmethod
    def _unique(name: str, used: set[str]) -> str:
        candidate, stem, suffix, n = name, Path(name).stem, Path(name).suffix, 2
        while candidate.lower() in used:
            candidate = f"{stem}-{n}{suffix}"
            n += 1
        used.add(candidate.lower())
        return candidate

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
    def find_problems(self, prompt: dict[str, Any], object_info: dict[str, Any] | None = None) -> list[str]:
        """Sentences for every node class and model file this server lacks, before anything is queued.

        Loader inputs in /object_info list the model files ComfyUI has right now, so an
        overnight run can refuse at 11 p.m. instead of failing at 3 a.m.
        """
        info = self.object_info() if object_info is None else object_info
        problems: list[str] = []
        for node_id, node in sorted(prompt.items(), key=lambda kv: str(kv[0])):
            cls = node.get("class_type", "?")
            if cls not in info:
                problems.append(
                    f"ComfyUI has no node type {cls} (node {node_id}): install the custom node pack that provides it "
                    "into ComfyUI/custom_nodes (see ComfyUI/README.md) and restart ComfyUI.")
                continue
            spec = info[cls].get("input", {})
            for section in ("required", "optional"):
                for name, decl in (spec.get(section) or {}).items():
                    value = node.get("inputs", {}).get(name)
                    options = _combo_options(decl)
                    folder = model_folder(cls, name)
                    if folder and isinstance(value, str) and options is not None and value not in options:
                        problems.append(
                            f"ComfyUI does not have the model file {value} that node {node_id} ({cls}) needs for its "
                            f"{name} input: put it in ComfyUI/models/{folder} (see ComfyUI/README.md).")
        return problems


def _combo_options(decl: Any) -> list[Any] | None:
    """Options of a combo input in either /object_info shape: [[...], {...}] or ["COMBO", {"options": [...]}]."""
    if not isinstance(decl, list) or not decl:
        return None
    if isinstance(decl[0], list):
        return decl[0]
    if decl[0] == "COMBO" and len(decl) > 1 and isinstance(decl[1], dict):
        options = decl[1].get("options")
        return list(options) if isinstance(options, (list, tuple)) else None
    return None
