"""Start, adopt, free and stop the two GPU servers: ComfyUI and an OpenAI-compatible LLM server.

Why this exists: both servers compete for one GPU's memory, so the orchestrator keeps at most
the ones the next script needs (SPEC 6). A server that was already running belongs to the
user: it is adopted, only ever freed (ComfyUI `POST /free`, LM Studio `lms unload --all`),
never killed. A server we started is ours: it runs in its own process group/session, bound
to 127.0.0.1, and is stopped as a whole tree. Readiness is polled every 100 ms (the seed
polled every 15 s), and a server that dies while starting ends the wait at once with the tail
of its log, so a broken install fails in seconds with the reason, not after a 5-minute timeout.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import psutil
import requests

from common.services.net import is_loopback_url
from common.run.errors import ServiceError

Say = Callable[[str], None]

CHECK_TIMEOUT = 0.5
POLL_INTERVAL = 0.1
LMS_QUICK_TIMEOUT = 60.0


def _default_say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- helpers


def port_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.port:
        return parts.port
    return 443 if parts.scheme == "https" else 80


def http_answers(url: str, timeout: float = CHECK_TIMEOUT) -> bool:
    """True when GET url answers 200; any network error is simply 'not answering'."""
    session = requests.Session()
    # A proxy from the environment must not intercept loopback checks.
    session.trust_env = not is_loopback_url(url)
    try:
        with session.get(url, timeout=timeout) as response:
            return response.status_code == 200
    except requests.RequestException:
        return False
    finally:
        session.close()


def log_tail(path: Path | None, lines: int = 15) -> str:
    """The last lines of a server log, to put the real cause into our one-sentence error."""
    if path is None or not path.is_file():
        return ""
    with open(path, "rb") as handle:
        tail = deque(handle, maxlen=lines)
    return b"".join(tail).decode("utf-8", errors="replace").rstrip()


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = POLL_INTERVAL,
    what: str,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> float:
    """Poll `check` until it is true; return the seconds it took.

    A `process` that exits while we wait ends the wait at once (its log tail goes into the
    error), because a crashed server will never answer however long we poll.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if check():
            return time.monotonic() - started
        if process is not None and process.poll() is not None:
            tail = log_tail(log_path)
            where = f" (log: {log_path})" if log_path else ""
            advice = f"fix the cause shown in its last lines:\n{tail}" if tail else "run it by hand to see why."
            raise ServiceError(f"{what} exited with code {process.returncode} before it was ready{where}; {advice}")
        now = time.monotonic()
        if now >= deadline:
            tail = log_tail(log_path)
            where = f"; its log is {log_path}" if log_path else ""
            raise ServiceError(
                f"{what} was not ready after {timeout:.0f} s{where}; check it, or raise "
                "SERVICE_START_TIMEOUT." + (f"\n{tail}" if tail else "")
            )
        time.sleep(min(interval, max(0.0, deadline - now)))


def _new_group_kwargs() -> dict[str, Any]:
    """Own process group/session, so a terminal Ctrl+C does not hit it and we can stop the tree."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _alive(procs: Sequence[psutil.Process]) -> list[psutil.Process]:
    living = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                living.append(proc)
        except psutil.NoSuchProcess:
            pass
    return living


def _tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_process_tree(proc: subprocess.Popen, *, grace: float, first_signal: int | None = None) -> int | None:
    """Stop a child we started and everything it spawned: polite signal, grace, then kill.

    ComfyUI stops cleanly on SIGINT ("Stopped server"); SIGTERM follows at half the grace
    period, SIGKILL at its end. Children are collected before the parent dies, since once it
    is gone they are re-parented and no longer findable through it.
    """
    if first_signal is None:
        first_signal = signal.SIGINT if os.name != "nt" else signal.CTRL_BREAK_EVENT  # type: ignore[attr-defined]
    known: dict[int, psutil.Process] = {p.pid: p for p in _tree(proc.pid)}

    def refresh() -> None:
        if proc.poll() is None:
            for p in _tree(proc.pid):
                known.setdefault(p.pid, p)

    def in_group(pid: int) -> bool:
        try:
            return os.name != "nt" and os.getpgid(pid) == proc.pid
        except OSError:
            return False

    def signal_all(sig: int) -> None:
        refresh()
        group_signalled = False
        if proc.poll() is None:
            try:
                if os.name != "nt":
                    os.killpg(proc.pid, sig)
                    group_signalled = True
                else:
                    proc.send_signal(sig)
            except OSError:
                pass
        # Whatever left the group (or the parent, if the group could not be signalled):
        # signalled once, never twice, since a second Ctrl+C means "quit now" to many programs.
        for p in _alive(list(known.values())):
            if p.pid == proc.pid or (group_signalled and in_group(p.pid)):
                continue
            try:
                p.send_signal(sig)
            except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
                pass

    def wait_for_all(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            refresh()
            if proc.poll() is not None and not _alive([p for p in known.values() if p.pid != proc.pid]):
                return True
            time.sleep(0.05)
        return proc.poll() is not None and not _alive([p for p in known.values() if p.pid != proc.pid])

    if proc.poll() is None:
        signal_all(first_signal)
        if not wait_for_all(grace / 2):
            signal_all(signal.SIGTERM)
            if not wait_for_all(grace / 2):
                if os.name != "nt" and proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                for p in _alive(list(known.values())):
                    try:
                        p.kill()
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
    # Leftovers of a parent that had already exited (re-parented grandchildren). A zombie
    # counts as gone: psutil.wait_procs would wait for it, and nobody may ever reap it.
    leftovers = [p for p in _alive(list(known.values())) if p.pid != proc.pid]
    for sig_name in ("terminate", "kill"):
        for p in leftovers:
            try:
                getattr(p, sig_name)()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        deadline = time.monotonic() + min(grace, 5.0)
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.05)
            leftovers = _alive(leftovers)
        if not leftovers:
            break
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return None


# --------------------------------------------------------------------------- ComfyUI


class ComfyUIService:
    """ComfyUI at `base_url`: adopted if it answers, else started from `comfyui_dir/main.py`."""

    name = "ComfyUI"

    def __init__(
        self,
        base_url: str,
        comfyui_dir: Path,
        python_exe: str,
        log_path: Path,
        extra_args: Sequence[str] = (),
        *,
        start_timeout: float = 300.0,
        stop_grace: float = 15.0,
        say: Say | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.comfyui_dir = Path(comfyui_dir)
        self.python_exe = python_exe
        self.log_path = Path(log_path)
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.say = say or _default_say
        self._proc: subprocess.Popen | None = None
        self._adopted = False
        self._dirty = False  # adopted and used since the last free

    @property
    def started_by_us(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def adopted(self) -> bool:
        return self._adopted

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def active(self) -> bool:
        """Holding (or possibly holding) GPU memory on our behalf."""
        return self.started_by_us or (self._adopted and self._dirty)

    def answers(self, timeout: float = CHECK_TIMEOUT) -> bool:
        return http_answers(f"{self.base_url}/system_stats", timeout)

    def command(self) -> list[str]:
        return [self.python_exe, "main.py", "--listen", "127.0.0.1", "--port", str(port_of(self.base_url)),
                *self.extra_args]

    def plan_start(self) -> str:
        """What ensure_running would do, for --dry-run; only a quick connection check."""
        if self.started_by_us:
            return f"keep {self.name} running (ours, pid {self.pid})"
        if self.answers():
            return f"adopt the {self.name} already running at {self.base_url} (it will only be freed, never stopped)"
        self._check_startable()
        return f"start {self.name}: {shlex.join(self.command())} (in {self.comfyui_dir})"

    def _check_startable(self) -> None:
        if not is_loopback_url(self.base_url):
            raise ServiceError(
                f"ComfyUI does not answer at {self.base_url}, which is not on this machine, so it "
                "cannot be started from here; start it there yourself or point COMFYUI_BASE_URL at it."
            )
        if not (self.comfyui_dir / "main.py").is_file():
            raise ServiceError(
                f"ComfyUI is not installed in {self.comfyui_dir} (no main.py there); install it as "
                "ComfyUI/README.md says, set COMFYUI_DIR to your ComfyUI folder, or use PIPELINE_ENGINE=offline."
            )

    def ensure_running(self) -> None:
        """Make ComfyUI answer: keep ours, adopt a running one, or start it and wait for it."""
        if self.started_by_us:
            self._dirty = True
            if not self.answers():
                wait_until(self.answers, timeout=self.start_timeout, what=self.name,
                           process=self._proc, log_path=self.log_path)
            return
        if self._proc is not None:  # ours, but it died since: say so and start again
            self.say(f"services: {self.name} (pid {self._proc.pid}) had exited with code "
                     f"{self._proc.returncode}; starting it again")
            self._proc = None
        if self.answers():
            if not self._adopted:
                self.say(f"services: adopted the {self.name} already running at {self.base_url} "
                         "(it will be freed, never stopped)")
            self._adopted = True
            self._dirty = True
            return
        self._adopted = False
        self._check_startable()
        self._start()

    def _start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self.command()
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"----- {self.name} start @ {stamp}: {shlex.join(command)} -----\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    command, cwd=self.comfyui_dir, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, **_new_group_kwargs(),
                )
            except OSError as exc:
                raise ServiceError(
                    f"could not run {command[0]} to start ComfyUI ({exc.strerror}); set COMFYUI_PYTHON "
                    "to the Python of your ComfyUI install."
                ) from None
        self.say(f"services: starting {self.name} (pid {self._proc.pid}) at {self.base_url}; log: {self.log_path}")
        try:
            took = wait_until(self.answers, timeout=self.start_timeout, what=self.name,
                              process=self._proc, log_path=self.log_path)
        except BaseException:
            self.stop()
            raise
        self._dirty = True
        self.say(f"services: {self.name} ready in {took:.1f}s (pid {self._proc.pid})")

    def free(self) -> None:
        """Ask a server to unload its models and free memory; a failure is logged, not fatal."""
        try:
            response = requests.post(f"{self.base_url}/free", json={"unload_models": True, "free_memory": True},
                                     timeout=10)
            ok = response.status_code == 200
            detail = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            ok, detail = False, type(exc).__name__
        if ok:
            self.say(f"services: freed {self.name} at {self.base_url} (models unloaded, memory freed)")
        else:
            self.say(f"services: could not free {self.name} at {self.base_url} ({detail}); it keeps its memory")
        self._dirty = False

    def release(self) -> None:
        """Give the GPU back: stop ours, free an adopted one."""
        if self.started_by_us:
            self.stop()
        elif self._adopted and self._dirty:
            self.free()

    def stop(self) -> None:
        """Stop the process tree we started; an adopted server is never touched here."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is not None:
            self.say(f"services: {self.name} (pid {proc.pid}) had already exited with code {proc.returncode}")
            stop_process_tree(proc, grace=self.stop_grace)
            return
        started = time.monotonic()
        code = stop_process_tree(proc, grace=self.stop_grace)
        self.say(f"services: stopped {self.name} (pid {proc.pid}, exit {code}) in {time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------- LLM server


class LLMService:
    """Any OpenAI-compatible server at `base_url`; LM Studio's `lms` CLI starts/loads/frees it."""

    name = "LLM server"

    def __init__(
        self,
        base_url: str,
        lms_cmd: str,
        model: str | None,
        *,
        start_timeout: float = 300.0,
        say: Say | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.lms_cmd = lms_cmd
        self.model = (model or "").strip()
        self.start_timeout = start_timeout
        self.say = say or _default_say
        self._started = False
        self._adopted = False
        self._is_lm_studio: bool | None = None
        self._dirty = False
        self._loaded: str | None = None  # the model we last loaded

    @property
    def started_by_us(self) -> bool:
        return self._started

    @property
    def adopted(self) -> bool:
        return self._adopted

    @property
    def active(self) -> bool:
        return self._started or (self._adopted and self._dirty)

    def answers(self, timeout: float = CHECK_TIMEOUT) -> bool:
        return http_answers(f"{self.base_url}/models", timeout)

    def lms_argv(self) -> list[str] | None:
        """LM_STUDIO_CMD split like a shell would (it may be 'python /path/fake_lms.py'); None if absent."""
        return resolve_command(self.lms_cmd)

    def _lms(self, *args: str, timeout: float = LMS_QUICK_TIMEOUT) -> tuple[int, str, str]:
        """Run an lms sub-command -> (exit code, stdout, stderr).

        Output goes to temp files, never pipes: `lms server start` may leave a daemon behind
        that would hold a pipe open, and we would wait for its end forever.
        """
        argv = self.lms_argv()
        if argv is None:
            raise ServiceError(f"the LM Studio command {self.lms_cmd!r} was not found; install LM Studio's "
                               "`lms` CLI or set LM_STUDIO_CMD.")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                code = subprocess.run([*argv, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                      timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                code = -1
            except OSError as exc:
                raise ServiceError(f"could not run {argv[0]} ({exc.strerror}); check LM_STUDIO_CMD.") from None
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", errors="replace").strip()
            stderr = err.read().decode("utf-8", errors="replace").strip()
        if code == -1:
            stderr = (stderr + "\n" if stderr else "") + f"(no answer after {timeout:.0f} s)"
        return code, stdout, stderr

    def _lms_checked(self, *args: str, timeout: float = LMS_QUICK_TIMEOUT) -> str:
        code, out, err = self._lms(*args, timeout=timeout)
        if code != 0:
            raise ServiceError(
                f"`lms {' '.join(args)}` failed (exit {code}): {_last_line(err or out)}; "
                "check LM Studio (run the same command by hand to see more)."
            )
        return out

    def is_lm_studio(self) -> bool:
        """Whether the server at base_url is LM Studio's, i.e. `lms` can free it.

        Asked of `lms server status` once: a running LM Studio server on our port means yes.
        Anything else (Ollama, llama.cpp, vLLM, or no `lms` at all) means we cannot free it.
        """
        if self._is_lm_studio is None:
            if self._started:
                self._is_lm_studio = True
            elif self.lms_argv() is None or not is_loopback_url(self.base_url):
                self._is_lm_studio = False
            else:
                code, out, err = self._lms("server", "status")
                self._is_lm_studio = code == 0 and _status_says_running_on(f"{out}\n{err}", port_of(self.base_url))
        return self._is_lm_studio

    def plan_start(self) -> str:
        if self._started:
            return f"keep the {self.name} running (ours)"
        if self.answers():
            return f"adopt the {self.name} already running at {self.base_url} (it will only be freed, never stopped)"
        self._check_startable()
        load = f", then `lms load {self.model} -y`" if self._model_to_load() else ""
        return f"start the {self.name}: `lms server start --port {port_of(self.base_url)}`{load}"

    def _model_to_load(self, model: str | None = None) -> str | None:
        model = (model or self.model or "").strip()
        return model if model and model.lower() != "auto" else None

    def _check_startable(self) -> None:
        if not is_loopback_url(self.base_url):
            raise ServiceError(
                f"no LLM server answers at {self.base_url}, which is not on this machine, so it cannot be "
                "started from here; start it there yourself or point LM_STUDIO_BASE_URL at it."
            )
        if self.lms_argv() is None:
            raise ServiceError(
                f"no LLM server answers at {self.base_url} and the LM Studio command {self.lms_cmd!r} was not "
                "found; start LM Studio's server (or any OpenAI-compatible server) there, set LM_STUDIO_CMD, "
                "or use PIPELINE_ENGINE=offline."
            )

    def ensure_running(self, model: str | None = None) -> None:
        """Make the server answer with the model loaded (`model`, else the service's own): keep,
        adopt, or `lms server start`."""
        if self._started or self.answers():
            if not self._started and not self._adopted:
                self._adopted = True
                kind = "LM Studio" if self.is_lm_studio() else "not LM Studio: it will not be freed"
                self.say(f"services: adopted the {self.name} already running at {self.base_url} ({kind})")
            if self._started and not self.answers():
                wait_until(self.answers, timeout=self.start_timeout, what=self.name)
            self._dirty = True
            if self._started or self.is_lm_studio():
                self._load_model(model)
            return
        self._adopted = False
        self._check_startable()
        port = port_of(self.base_url)
        self.say(f"services: starting the {self.name} with `lms server start --port {port}`")
        # Marked ours before the command: if we are interrupted while it runs, shutdown still stops it.
        self._started = True
        self._is_lm_studio = True
        self._lms_checked("server", "start", "--port", str(port), timeout=self.start_timeout)
        took = wait_until(self.answers, timeout=self.start_timeout, what=f"the {self.name} at {self.base_url}")
        self.say(f"services: {self.name} ready at {self.base_url} in {took:.1f}s")
        self._dirty = True
        self._load_model(model)

    def _load_model(self, wanted: str | None = None) -> None:
        model = self._model_to_load(wanted)
        if model is None:
            return
        if self._is_loaded(model):
            return
        if self._loaded and self._loaded != model:
            # A step wants another model (2.motion.py's vision model): one model at a time in GPU memory.
            self._lms("unload", "--all")
            self.say(f"services: unloaded {self._loaded} for {model}")
        self.say(f"services: loading {model} with `lms load {model} -y`")
        started = time.monotonic()
        self._lms_checked("load", model, "-y", timeout=self.start_timeout)
        self._loaded = model
        self.say(f"services: {model} loaded in {time.monotonic() - started:.1f}s")

    def _is_loaded(self, model: str) -> bool:
        """Loading twice would make LM Studio load a second copy (":2"), doubling GPU memory."""
        code, out, err = self._lms("ps", "--json")
        if code == 0:
            try:
                entries = json.loads(out)
                keys = {str(e.get(k, "")).lower() for e in entries if isinstance(e, dict)
                        for k in ("identifier", "path", "modelKey")}
                return model.lower() in keys
            except (ValueError, AttributeError, TypeError):
                pass
        code, out, err = self._lms("ps")
        return code == 0 and model.lower() in out.lower()

    def free(self) -> None:
        if self.is_lm_studio():
            code, out, err = self._lms("unload", "--all")
            if code == 0:
                self.say(f"services: freed the {self.name} (`lms unload --all`)")
            else:
                self.say(f"services: `lms unload --all` failed (exit {code}): {_last_line(err or out)}")
        else:
            self.say(f"services: the {self.name} at {self.base_url} is not LM Studio; nothing to free "
                     "(it manages its own memory)")
        self._dirty = False
        self._loaded = None

    def release(self) -> None:
        """Unload models; stop the server too if we started it."""
        if self._started:
            self.stop()
        elif self._adopted and self._dirty:
            self.free()

    def stop(self) -> None:
        """`lms unload --all` + `lms server stop`, only for a server we started."""
        if not self._started:
            return
        self.free()
        self._started = False
        code, out, err = self._lms("server", "stop")
        if code == 0:
            self.say(f"services: stopped the {self.name} (`lms server stop`)")
        else:
            self.say(f"services: `lms server stop` failed (exit {code}): {_last_line(err or out)}")
        self._is_lm_studio = None


def resolve_command(command: str) -> list[str] | None:
    """Split a command setting and find its program on PATH (or as a path); None if missing."""
    try:
        argv = shlex.split(command, posix=os.name != "nt")
    except ValueError:
        return None
    if not argv:
        return None
    found = shutil.which(argv[0])
    if found is None:
        return None
    return [found, *argv[1:]]


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def _status_says_running_on(text: str, port: int) -> bool:
    """Read `lms server status` (plain or JSON) for 'running' and our port."""
    lowered = text.lower()
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            running = bool(data.get("running"))
            their_port = data.get("port")
            return running and (their_port is None or int(their_port) == port)
    except (ValueError, TypeError):
        pass
    if "not running" in lowered or "is off" in lowered or "stopped" in lowered:
        return False
    if "running" not in lowered:
        return False
    ports = [int(p) for p in re.findall(r"port\D{0,3}(\d{2,5})", lowered)]
    return not ports or port in ports


# --------------------------------------------------------------------------- manager


class ServiceManager:
    """Owns both services for one orchestrator run and keeps only the needed ones on the GPU."""

    def __init__(self, comfyui: ComfyUIService | None, llm: LLMService | None, *, say: Say | None = None) -> None:
        self.comfyui = comfyui
        self.llm = llm
        self.say = say or _default_say
        self._closed = False

    @classmethod
    def from_settings(
        cls, settings: Any, pipeline_dir: Path, *, use_comfyui: bool = True, use_llm: bool = True,
        say: Say | None = None,
    ) -> "ServiceManager":
        """Services per the settings; a service whose engine is offline is left out (None)."""
        say = say or _default_say
        comfyui = None
        if use_comfyui:
            extra = shlex.split(settings.COMFYUI_EXTRA_ARGS or "", posix=os.name != "nt")
            from common.services.comfyui.pool import server_urls

            # With several servers listed, the first is the one this machine may start; the
            # others (other GPUs, other machines) are the user's to run.
            comfyui = ComfyUIService(
                server_urls(settings.COMFYUI_BASE_URL)[0], Path(settings.COMFYUI_DIR), settings.COMFYUI_PYTHON,
                Path(pipeline_dir) / "output" / "comfyui.log", extra,
                start_timeout=float(settings.SERVICE_START_TIMEOUT), stop_grace=float(settings.SERVICE_STOP_GRACE),
                say=say,
            )
        llm = None
        if use_llm:
            llm = LLMService(settings.LM_STUDIO_BASE_URL, settings.LM_STUDIO_CMD, settings.LM_STUDIO_MODEL,
                             start_timeout=float(settings.SERVICE_START_TIMEOUT), say=say)
        return cls(comfyui, llm, say=say)

    def _services(self) -> list[tuple[ComfyUIService | LLMService, str]]:
        pairs: list[tuple[Any, str]] = []
        if self.comfyui is not None:
            pairs.append((self.comfyui, "comfyui"))
        if self.llm is not None:
            pairs.append((self.llm, "llm"))
        return pairs

    def prepare_for(self, needs_comfyui: bool, needs_llm: bool, llm_model: str | None = None) -> None:
        """Release what the next script does not need first (GPU memory), then start what it does
        (`llm_model`: the model that script asks for, when not the LLM service's own)."""
        needs = {"comfyui": needs_comfyui, "llm": needs_llm}
        for service, key in self._services():
            if not needs[key] and service.active:
                service.release()
        for service, key in self._services():
            if needs[key]:
                if isinstance(service, LLMService):
                    service.ensure_running(llm_model)
                else:
                    service.ensure_running()

    def shutdown(self) -> None:
        """Stop what we started and free what we adopted; safe to call more than once."""
        for service, _ in self._services():
            try:
                if service.started_by_us:
                    service.stop()
                elif service.active:
                    service.release()
            except Exception as exc:  # one failing service must not leave the other running
                self.say(f"services: could not stop {service.name}: {exc}")
            if isinstance(service, ComfyUIService):
                service.stop()  # reaps a child of ours that had already died
        self._closed = True

    def __enter__(self) -> "ServiceManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


__all__ = [
    "ComfyUIService", "LLMService", "ServiceManager", "wait_until", "stop_process_tree",
    "http_answers", "is_loopback_url", "port_of", "resolve_command", "log_tail",
]
