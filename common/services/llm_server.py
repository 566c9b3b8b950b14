"""Start, adopt, load, free and stop the LLM server (the rules in common.services.server).

Any OpenAI-compatible server is adopted as it is; only LM Studio's can be started, loaded and
freed from here, through its `lms` CLI. The process listening on the port once `lms server start`
has done is recorded (common.services.records) only to recognise the server on a later run: it
is stopped with `lms server stop`, never killed, since with LM Studio that process is the app.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import tempfile
import time
from typing import Any

from common.run.errors import ServiceError
from common.services.llm_endpoint import is_auto, normalize_base_url
from common.services.net import is_loopback_url, port_of
from common.services.processes import listening_pid, resolve_command, wait_until
from common.services.records import ServerRecord, ServerRecords, process_identity
from common.services.say import Say
from common.services.server import ManagedServer

LMS_QUICK_TIMEOUT = 60.0


class LLMService(ManagedServer):
    """Any OpenAI-compatible server at `base_url`; LM Studio's `lms` CLI starts/loads/frees it."""

    name = "LLM server"
    kind = "llm"
    health_path = "/models"

    def __init__(
        self,
        base_url: str,
        lms_cmd: str,
        model: str | None,
        *,
        start_timeout: float = 300.0,
        say: Say | None = None,
        records: ServerRecords | None = None,
    ) -> None:
        super().__init__(normalize_base_url(base_url), start_timeout=start_timeout, say=say, records=records)
        self.lms_cmd = lms_cmd
        self.model = (model or "").strip()
        self._started = False
        self._is_lm_studio: bool | None = None
        self._loaded: str | None = None  # the model we last loaded

    @property
    def started_by_us(self) -> bool:
        return self._started

    def _lms(self, *args: str, timeout: float = LMS_QUICK_TIMEOUT) -> tuple[int, str, str]:
        """Run an lms sub-command -> (exit code, stdout, stderr).

        Output goes to temp files, never pipes: `lms server start` may leave a daemon behind
        that would hold a pipe open, and we would wait for its end forever.
        """
        argv = resolve_command(self.lms_cmd)  # it may be 'python /path/fake_lms.py'
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

    def _lms_reported(self, *args: str, done: str) -> None:
        """An lms command whose failure is only told (freeing, stopping): the run goes on either way."""
        code, out, err = self._lms(*args)
        if code == 0:
            self.say(done)
        else:
            self.say(f"services: `lms {' '.join(args)}` failed (exit {code}): {_last_line(err or out)}")

    def is_lm_studio(self) -> bool:
        """Whether the server at base_url is LM Studio's, i.e. `lms` can free it.

        Asked of `lms server status` once: a running LM Studio server on our port means yes.
        Anything else (Ollama, llama.cpp, vLLM, or no `lms` at all) means we cannot free it.
        """
        if self._is_lm_studio is None:
            if self._started:
                self._is_lm_studio = True
            elif resolve_command(self.lms_cmd) is None or not is_loopback_url(self.base_url):
                self._is_lm_studio = False
            else:
                code, out, err = self._lms("server", "status")
                self._is_lm_studio = code == 0 and _status_says_running_on(f"{out}\n{err}", port_of(self.base_url))
        return self._is_lm_studio

    def _keep_plan(self) -> str:
        return f"keep the {self.name} running (ours)"

    def _start_plan(self) -> str:
        model = self._model_to_load()
        load = f", then `{load_command(model)}`" if model else ""
        return f"start the {self.name}: `lms server start --port {port_of(self.base_url)}`{load}"

    def _model_to_load(self, model: str | None = None) -> str | None:
        model = (model or self.model or "").strip()
        return None if is_auto(model) else model

    def _check_startable(self) -> None:
        if not is_loopback_url(self.base_url):
            raise ServiceError(
                f"no LLM server answers at {self.base_url}, which is not on this machine, so it cannot be "
                "started from here; start it there yourself or point LM_STUDIO_BASE_URL at it."
            )
        if resolve_command(self.lms_cmd) is None:
            raise ServiceError(
                f"no LLM server answers at {self.base_url} and the LM Studio command {self.lms_cmd!r} was not "
                "found; start LM Studio's server (or any OpenAI-compatible server) there, set LM_STUDIO_CMD, "
                "or use PIPELINE_ENGINE=offline."
            )

    def ensure_running(self, model: str | None = None) -> None:
        """Make the server answer with the model loaded (`model`, else the service's own): keep,
        adopt, or `lms server start`."""
        self._claim_orphan()
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
        listener = listening_pid(port)
        identity = process_identity(listener) if listener is not None else None
        if self.records is not None and identity is not None:
            self.records.add(self.kind, self.base_url, *identity)
        self.say(f"services: {self.name} ready at {self.base_url} in {took:.1f}s")
        self._dirty = True
        self._load_model(model)

    def _take_over(self, record: ServerRecord, proc: Any) -> None:
        assert self.records is not None
        if self.answers() and listening_pid(port_of(self.base_url)) == record.pid:
            self._started = True
            self._is_lm_studio = True
            self._dirty = True
            self.say(f"services: the {self.name} at {self.base_url} (pid {record.pid}) was started by an earlier "
                     "run of this pipeline that ended without stopping it; it is ours again: used, then stopped "
                     "like one this run starts")
            return
        # That process lives on but no longer serves here (LM Studio's app, its server stopped since): not ours.
        self.records.remove(self.kind, self.base_url)

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
        self.say(f"services: loading {model} with `{load_command(model)}`")
        started = time.monotonic()
        self._lms_checked(*load_args(model), timeout=self.start_timeout)
        self._loaded = model
        self.say(f"services: {model} loaded in {time.monotonic() - started:.1f}s")

    def _is_loaded(self, model: str) -> bool:
        """Loading twice would make LM Studio load a second copy (":2"), doubling GPU memory.

        Matched whole, never as a substring: `qwen3-4b` is not loaded when `qwen3-4b-2507` is.
        """
        code, out, err = self._lms("ps", "--json")
        names = _ps_json_names(out) if code == 0 else None
        if names is None:  # an lms without --json: read its table
            code, out, err = self._lms("ps")
            names = _ps_table_names(out) if code == 0 else set()
        return model.casefold() in names

    def free(self) -> None:
        if self.is_lm_studio():
            self._lms_reported("unload", "--all", done=f"services: freed the {self.name} (`lms unload --all`)")
        else:
            self.say(f"services: the {self.name} at {self.base_url} is not LM Studio; nothing to free "
                     "(it manages its own memory)")
        self._dirty = False
        self._loaded = None

    def stop(self) -> None:
        """`lms unload --all` + `lms server stop`, only for a server we started."""
        if not self._started:
            return
        self.free()
        self._started = False
        self._lms_reported("server", "stop", done=f"services: stopped the {self.name} (`lms server stop`)")
        self._is_lm_studio = None
        if self.records is not None:
            self.records.remove(self.kind, self.base_url)


def load_args(model: str) -> list[str]:
    """`lms load` for `model`, named `model` in the API whatever file the fuzzy match picks.

    Without `--identifier`, LM Studio names the loaded model by the key of the file it chose
    (`lms load qwen3-4b -y` may load and name `qwen/qwen3-4b-2507`), and the questions asking
    for LM_STUDIO_MODEL would find no such model.
    """
    return ["load", model, "--identifier", model, "-y"]


def load_command(model: str) -> str:
    """The `lms load` command line, as told to the user."""
    return "lms " + " ".join(shlex.quote(a) for a in load_args(model))


def _ps_json_names(out: str) -> set[str] | None:
    """The identifiers and model keys in `lms ps --json` (a list of loaded-model infos), casefolded;
    None if that is not what the output is."""
    try:
        entries = json.loads(out)
    except ValueError:
        return None
    if not isinstance(entries, list):
        return None
    return {str(e[k]).casefold() for e in entries if isinstance(e, dict)
            for k in ("identifier", "modelKey") if e.get(k)}


def _ps_table_names(out: str) -> set[str]:
    """The identifiers and model keys `lms ps` prints, casefolded: its table (IDENTIFIER, MODEL,
    STATUS... columns) or the older `Identifier: X` lines."""
    names: set[str] = set()
    in_table = False
    for line in out.splitlines():
        stripped = line.strip()
        labelled = re.match(r"identifier\s*:\s*(\S+)", stripped.lstrip("•").strip(), re.IGNORECASE)
        if labelled:
            names.add(labelled.group(1).casefold())
        elif stripped.upper().startswith("IDENTIFIER"):
            in_table = True
        elif in_table and stripped:
            names.update(cell.casefold() for cell in re.split(r"\s{2,}", stripped)[:2])
    return names


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
