"""Start, adopt, free and stop ComfyUI (the rules in common.services.server).

A ComfyUI we start runs in its own process group/session, bound to 127.0.0.1, logs to
output/comfyui.log, and is stopped as a whole tree. Its pid and create time are recorded as soon
as it runs (common.services.records), so a run killed before it could stop it leaves the next
run able to take it over as its own.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

import requests

from common.run.errors import ServiceError
from common.services.net import is_loopback_url, port_of
from common.services.processes import (EarlierProcess, command_line, listening_pid, new_group_kwargs,
                                       stop_process_tree, tree_pids, wait_until)
from common.services.records import ServerRecord, ServerRecords, process_identity
from common.services.say import Say
from common.services.server import ManagedServer


class ComfyUIService(ManagedServer):
    """ComfyUI at `base_url`: adopted if it answers, else started from `comfyui_dir/main.py` with
    `python_exe` (`python_reason`: why that Python, from common.services.comfyui.interpreter)."""

    name = "ComfyUI"
    kind = "comfyui"
    health_path = "/system_stats"

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
        records: ServerRecords | None = None,
        python_reason: str = "",
    ) -> None:
        super().__init__(base_url, start_timeout=start_timeout, say=say, records=records)
        self.comfyui_dir = Path(comfyui_dir)
        self.python_exe = python_exe
        self.python_reason = python_reason
        self.log_path = Path(log_path)
        self.extra_args = tuple(extra_args)
        self.stop_grace = stop_grace
        self._proc: subprocess.Popen | EarlierProcess | None = None

    @property
    def started_by_us(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        return [self.python_exe, "main.py", "--listen", "127.0.0.1", "--port", str(port_of(self.base_url)),
                *self.extra_args]

    def _python_text(self) -> str:
        return f"{self.python_exe} ({self.python_reason})" if self.python_reason else self.python_exe

    def _exit_advice(self) -> str:
        """What most often fixes a ComfyUI that exits before it is ready: its Python or its flags."""
        return (f"it ran with {self._python_text()}: if that Python lacks ComfyUI's requirements (No module "
                "named 'torch'), set COMFYUI_PYTHON to the Python of your ComfyUI install, and if ComfyUI "
                "rejects a flag or finds no usable GPU, fix COMFYUI_EXTRA_ARGS (e.g. --cpu without a GPU, "
                "--lowvram for a small one)")

    def _wait_ready(self) -> float:
        return wait_until(self.answers, timeout=self.start_timeout, what=self.name, process=self._proc,
                          log_path=self.log_path, exit_advice=self._exit_advice())

    def _keep_plan(self) -> str:
        return f"keep {self.name} running (ours, pid {self.pid})"

    def _start_plan(self) -> str:
        why = f"; its Python: {self.python_reason}" if self.python_reason else ""
        return f"start {self.name}: {command_line(self.command())} (in {self.comfyui_dir}{why})"

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
        self._claim_orphan()
        if self.started_by_us:
            self._dirty = True
            if not self.answers():
                self._wait_ready()
            return
        if self._proc is not None:  # ours, but it died since: say so and start again
            self.say(f"services: {self.name} (pid {self._proc.pid}) had exited with code "
                     f"{self._proc.returncode}; starting it again")
            self._proc = None
            self._forget()
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
            log.write(f"----- {self.name} start @ {stamp}: {command_line(command)} -----\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    command, cwd=self.comfyui_dir, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, **new_group_kwargs(),
                )
            except OSError as exc:
                raise ServiceError(
                    f"could not run {self._python_text()} to start ComfyUI ({exc.strerror}); set "
                    "COMFYUI_PYTHON to the Python of your ComfyUI install."
                ) from None
        identity = process_identity(self._proc.pid)
        if self.records is not None and identity is not None:
            self.records.add(self.kind, self.base_url, *identity)
        self.say(f"services: starting {self.name} (pid {self._proc.pid}) at {self.base_url} with "
                 f"{self._python_text()}; log: {self.log_path}")
        try:
            took = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._dirty = True
        self.say(f"services: {self.name} ready in {took:.1f}s (pid {self._proc.pid})")

    def _take_over(self, record: ServerRecord, proc: Any) -> None:
        earlier = EarlierProcess(proc)
        self._proc = earlier
        listener = listening_pid(port_of(self.base_url))
        where = f"{self.name} (pid {earlier.pid}) was started by an earlier run of this pipeline that ended without stopping it"
        if self.answers() and (listener is None or listener in tree_pids(proc)):
            self._adopted = False
            self._dirty = True
            self.say(f"services: {where}; it is ours again: used, then stopped like one this run starts")
            return
        self.say(f"services: {where} and it does not answer at {self.base_url}; stopping it")
        self.stop()

    def _forget(self) -> None:
        if self.records is not None:
            self.records.remove(self.kind, self.base_url)

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

    def stop(self) -> None:
        """Stop the process tree we started; an adopted server is never touched here."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is not None:
            self.say(f"services: {self.name} (pid {proc.pid}) had already exited with code {proc.returncode}")
            stop_process_tree(proc, grace=self.stop_grace)  # type: ignore[arg-type]
            self._forget()
            return
        started = time.monotonic()
        code = stop_process_tree(proc, grace=self.stop_grace)  # type: ignore[arg-type]
        self._forget()
        self.say(f"services: stopped {self.name} (pid {proc.pid}, exit {code}) in {time.monotonic() - started:.1f}s")
