"""The engine of every `generate.py`: run a pipeline's scripts in order, overnight, unattended.

Why it is shaped like this (SPEC 6): each script runs as its own child process in its own
`scripts/` folder, so a crash or an out-of-memory kill costs one script, never the run's
bookkeeping. Before each script the services it needs are started (and the ones it does not
need are stopped or freed, because ComfyUI and the LLM share one GPU). The child's output is
streamed line by line to the terminal and appended, whole lines only, to `log.txt` between
START/END markers, so the log of a night tells what happened even after a power cut.
A failure stops the run with the child's exit code; Ctrl+C and SIGTERM are passed on to the
child, which checkpoints and exits; in every case the servers we started are stopped.

Two things keep a night going without doing anything twice: the run stamp (common/state/stamp.py)
skips the scripts a finished run proves to be no-ops, so re-running a finished pipeline costs
one process, not one per script; and a script that exits 5 (ComfyUI or the LLM stopped
answering or got stuck) gets its server restarted and runs again, SERVICE_RESTARTS times at
most, when that server is ours; a server the user started is never restarted.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Mapping, Sequence

from common.engines.choice import EngineChoice, child_environment, choose_engines
from common.run.errors import ConfigError, PipelineError, ServiceError
from common.run.report import RunRecord, StepResult, notify, now_text, status_lines, write_report
from common.state.stamp import SkipPlan, context_parts, plan_skips, record_run
from common.config.settings import load_settings

if TYPE_CHECKING:  # imported where used: a run with nothing to do never pays for requests/psutil
    from common.services.lifecycle import ServiceManager

REPO_ROOT = Path(__file__).resolve().parents[2]
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
Needs = Mapping[str, bool] | Collection[str]


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    position: int  # 1-based, as --list shows it
    name: str  # as written in SCRIPTS, e.g. "2.story.py" or "../../gen.audio/scripts/10.thumbnail.py"
    path: Path
    needs_comfyui: bool
    needs_llm: bool
    args: tuple[str, ...]

    @property
    def basename(self) -> str:
        return self.path.name

    @property
    def needs_text(self) -> str:
        needs = [label for flag, label in ((self.needs_comfyui, "ComfyUI"), (self.needs_llm, "LLM")) if flag]
        return " + ".join(needs) if needs else "-"


def _lookup(table: Needs | Mapping[str, Any], name: str, default: Any = False) -> Any:
    """Seed generate.py files key their tables by basename even for another pipeline's script."""
    base = Path(name).name
    if isinstance(table, Mapping):
        if name in table:
            return table[name]
        return table.get(base, default)
    return name in table or base in table


def build_steps(
    pipeline_dir: Path, scripts: Sequence[str], needs_comfyui: Needs, needs_lmstudio: Needs,
    script_args: Mapping[str, Sequence[str]],
) -> list[Step]:
    scripts_dir = pipeline_dir / "scripts"
    steps = []
    for position, name in enumerate(scripts, 1):
        path = Path(os.path.normpath(scripts_dir / name))
        steps.append(Step(position, name, path, bool(_lookup(needs_comfyui, name)),
                          bool(_lookup(needs_lmstudio, name)), tuple(_lookup(script_args, name, ()) or ())))
    return steps


# Scripts that ask their own model of the LLM server rather than LM_STUDIO_MODEL.
STEP_MODEL_SETTINGS = {"2.motion.py": "MODEL_MOTION_GENERATION"}


def llm_model_for(step: Step, settings: Any) -> str | None:
    """The model the orchestrator loads for `step` (None: the LLM service's own, LM_STUDIO_MODEL)."""
    name = STEP_MODEL_SETTINGS.get(step.basename)
    model = str(getattr(settings, name, "") or "").strip() if name else ""
    return model or None


def _resolve_position(token: str, steps: Sequence[Step], flag: str) -> int:
    """A 1-based position, or a script name / name prefix such as `2.story`."""
    token = token.strip()
    if token.isdigit():
        number = int(token)
        if 1 <= number <= len(steps):
            return number
        raise ConfigError(f"{flag} {token} is out of range; use a number from 1 to {len(steps)} (see --list).")
    exact = [s for s in steps if token in (s.name, s.basename, s.path.stem)]
    matches = exact or [s for s in steps if s.basename.startswith(token) or s.name.startswith(token)]
    own = [s for s in matches if "/" not in s.name.replace("\\", "/")]
    if len(matches) > 1 and len(own) == 1:
        matches = own  # `1.story` in gen.video means gen.video's own 1.story.py, not gen.image's
    if len(matches) == 1:
        return matches[0].position
    if not matches:
        raise ConfigError(f"{flag} {token} matches no script of this pipeline; see --list for the names.")
    names = ", ".join(s.name for s in matches)
    raise ConfigError(f"{flag} {token} matches several scripts ({names}); give more of the name or a number.")


def select_steps(steps: Sequence[Step], start: str | None, until: str | None, only: str | None) -> list[Step]:
    if only is not None:
        if start is not None or until is not None:
            raise ConfigError("--only cannot be combined with --from or --until; use one or the other.")
        position = _resolve_position(only, steps, "--only")
        return [steps[position - 1]]
    first = _resolve_position(start, steps, "--from") if start is not None else 1
    last = _resolve_position(until, steps, "--until") if until is not None else len(steps)
    if first > last:
        raise ConfigError(f"--from {start} comes after --until {until}; nothing would run.")
    return list(steps[first - 1:last])


def check_exist(steps: Sequence[Step], pipeline_dir: Path) -> None:
    missing = [s.name for s in steps if not s.path.is_file()]
    if missing:
        raise ConfigError(
            f"{len(missing)} script(s) listed in SCRIPTS do not exist ({', '.join(missing)}, looked in "
            f"{pipeline_dir / 'scripts'}); write them or take them out of generate.py."
        )


# --------------------------------------------------------------------------- output


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _to_terminal(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, errors="replace").decode(encoding) + "\n")
    stream.flush()


class RunLog:
    """Lines to the terminal and, whole and flushed, appended to log.txt.

    One os.write per line on an O_APPEND descriptor, under a lock, so the reader thread and
    the main thread never interleave half lines and a crash never leaves a torn line.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def line(self, text: str, *, err: bool = False, terminal: bool = True) -> None:
        with self._lock:
            if terminal:
                _to_terminal(text, err)
            if self._fd is not None:
                data = (text + "\n").encode("utf-8", errors="replace")
                while data:
                    written = os.write(self._fd, data)
                    data = data[written:]

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _clean_child_line(raw: bytes) -> str:
    """A child's line as a terminal would finally show it (progress bars redraw with \\r)."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    if "\r" in text:
        parts = [p for p in text.split("\r") if p.strip()]
        text = parts[-1] if parts else ""
    return text


# --------------------------------------------------------------------------- signals


class _Stopped(BaseException):
    """Raised by the signal handler while services are being prepared (no child to pass it to)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """Records Ctrl+C / SIGTERM; the main loop passes them on to the child."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self.raise_now = False
        self._previous: dict[int, Any] = {}

    def handler(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        if self.raise_now:
            self.raise_now = False
            raise _Stopped(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self.handler)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the child's whole process group (it and whatever it started)."""
    try:
        if os.name == "nt":
            if sig == getattr(signal, "SIGKILL", None) or sig == signal.SIGTERM:
                proc.kill()
            else:
                proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _kill_signal() -> int:
    return getattr(signal, "SIGKILL", signal.SIGTERM)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


# --------------------------------------------------------------------------- running


def _child_env(choice: EngineChoice) -> dict[str, str]:
    env = dict(os.environ)
    env.update(child_environment(choice))
    env["PYTHONUNBUFFERED"] = "1"  # progress must reach the terminal and log.txt as it happens
    env["PYTHONIOENCODING"] = "utf-8"
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _new_group_kwargs() -> dict[str, Any]:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def run_step(step: Step, env: Mapping[str, str], log: RunLog, signals: _Signals, grace: float,
             tail: deque[str] | None = None) -> int:
    """Run one script to its end, streaming its output; returns its exit code (signals as 128+n).

    `tail` receives the child's last lines, so the run's summary can repeat its error sentence.
    """
    log.line(f"===== START {step.name} @ {_now()} =====")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, step.basename, *step.args], cwd=step.path.parent, env=dict(env),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **_new_group_kwargs(),
    )

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            text = _clean_child_line(raw)
            log.line(text)
            if tail is not None and text.strip():
                tail.append(text.strip())

    reader = threading.Thread(target=pump, name=f"output of {step.basename}", daemon=True)
    reader.start()
    forwarded_at: float | None = None
    killed = False
    while True:
        try:
            returncode = proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if signals.signum is None:
            continue
        if forwarded_at is None:
            _signal_group(proc, signals.signum)
            forwarded_at = time.monotonic()
        elif not killed and (signals.count > 1 or time.monotonic() - forwarded_at > grace):
            _signal_group(proc, _kill_signal())
            killed = True
    reader.join(timeout=2.0)
    if reader.is_alive():
        # Something the script started still holds its output open: it dies with the step.
        _signal_group(proc, _kill_signal())
        reader.join(timeout=2.0)
    if proc.stdout is not None:
        proc.stdout.close()
    code = _exit_code(returncode)
    log.line(f"===== END {step.name} @ {_now()} (exit={code}, took={time.monotonic() - started:.2f}s) =====")
    return code


def _print_list(steps: Sequence[Step], pipeline_dir: Path) -> None:
    width = max((len(s.name) for s in steps), default=0)
    _to_terminal(f"{pipeline_dir.name}: {len(steps)} script(s)")
    for s in steps:
        missing = "" if s.path.is_file() else "   (missing)"
        args = f"   args: {shlex.join(s.args)}" if s.args else ""
        _to_terminal(f"{s.position:3d}. {s.name:<{width}}  needs: {s.needs_text}{args}{missing}")


def _dry_run(steps: Sequence[Step], manager: ServiceManager, plan: SkipPlan) -> int:
    """Say what a run would start, stop and run; starts and runs nothing."""
    _to_terminal("dry run: nothing is started, stopped or run")
    for line in _plan_lines(plan, steps):
        _to_terminal(line)
    steps = [s for s in steps if s.position not in plan.positions]
    services = {"comfyui": manager.comfyui, "llm": manager.llm}
    plans: dict[str, str] = {}
    active = {"comfyui": False, "llm": False}
    for step in steps:
        _to_terminal(f"[{step.position}] {step.name}  (needs: {step.needs_text})")
        needs = {"comfyui": step.needs_comfyui, "llm": step.needs_llm}
        for key, service in services.items():
            if service is not None and active[key] and not needs[key]:
                adopted = plans.get(key, "").startswith("adopt")
                _to_terminal(f"      would {'free' if adopted else 'stop'} {service.name}")
                active[key] = False
        for key, service in services.items():
            if not needs[key]:
                continue
            if service is None:
                _to_terminal(f"      {'ComfyUI' if key == 'comfyui' else 'LLM'} not used: offline engine")
                continue
            if active[key]:
                _to_terminal(f"      would keep {service.name}")
                continue
            if key not in plans:
                try:
                    plans[key] = service.plan_start()
                except ServiceError as exc:
                    _to_terminal(f"      the run would stop here: {exc}")
                    return ServiceError.exit_code
            _to_terminal(f"      would {plans[key]}")
            active[key] = True
        _to_terminal(f"      would run: {shlex.join(['python', step.basename, *step.args])}  (in {step.path.parent})")
    for key, service in services.items():
        if service is not None and active[key]:
            adopted = plans.get(key, "").startswith("adopt")
            _to_terminal(f"at the end: would {'free' if adopted else 'stop'} {service.name}")
    return 0


def _parse(argv: Sequence[str] | None, pipeline_dir: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="generate.py",
        description=f"Run the {pipeline_dir.name} pipeline, starting and stopping ComfyUI / the LLM "
                    "server as each script needs; finished work is kept across runs.",
    )
    parser.add_argument("--list", action="store_true", help="list the scripts and what each needs, then exit")
    parser.add_argument("--from", dest="start", metavar="N", help="start at script N (number or name prefix)")
    parser.add_argument("--until", metavar="N", help="stop after script N (number or name prefix)")
    parser.add_argument("--only", metavar="N", help="run only script N (number or name prefix)")
    parser.add_argument("--dry-run", action="store_true", help="say what would start, stop and run; do nothing")
    parser.add_argument("--check", action="store_true",
                        help="run the preflight checks for the selected scripts, print them, exit 0 (ok) or 1")
    parser.add_argument("--status", action="store_true",
                        help="items done / preview / failed / left per script, from the checkpoints only")
    parser.add_argument("--force-start", action="store_true",
                        help="run every selected script even when nothing changed since the last finished run "
                             "(each still resumes from its checkpoints; to redo a script from scratch run it "
                             "alone with --force-start)")
    return parser.parse_args(argv)


def run_pipeline(
    pipeline_dir: Path,
    *,
    scripts: list[str],
    needs_comfyui: Needs,
    needs_lmstudio: Needs,
    script_args: Mapping[str, Sequence[str]],
    argv: list[str] | None = None,
) -> int:
    """Run (part of) a pipeline; returns the exit code for `sys.exit`."""
    pipeline_dir = Path(pipeline_dir).resolve()
    try:
        args = _parse(argv, pipeline_dir)
    except SystemExit as exc:  # --help or a bad flag: argparse has already said why
        return int(exc.code or 0)
    try:
        steps = build_steps(pipeline_dir, scripts, needs_comfyui, needs_lmstudio, script_args)
        if args.list:
            _print_list(steps, pipeline_dir)
            check_exist(steps, pipeline_dir)
            return 0
        selected = select_steps(steps, args.start, args.until, args.only)
        if args.status:
            for line in status_lines(pipeline_dir, selected):
                _to_terminal(line)
            return 0
        check_exist(selected, pipeline_dir)
        settings = load_settings(pipeline_dir)
        choice = choose_engines(settings)
    except PipelineError as exc:
        _to_terminal(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:  # before our handlers are installed: nothing was started yet
        _to_terminal("interrupted before anything started.", err=True)
        return SIGNAL_EXIT[signal.SIGINT]

    if args.check and not args.dry_run:
        return _check(pipeline_dir, selected, settings, choice)
    context = context_parts(settings, (choice.media, choice.text))
    if settings.ENABLE_RESUMABLE_MODE:
        plan = plan_skips(pipeline_dir, selected, context, force=args.force_start)
    else:  # without checkpoints every script redoes its work: nothing is a no-op
        plan = SkipPlan([], None, "ENABLE_RESUMABLE_MODE is off: every selected script runs")
    if args.dry_run:
        from common.services.lifecycle import ServiceManager

        _to_terminal(choice.reason)
        manager = ServiceManager.from_settings(settings, pipeline_dir, use_comfyui=choice.media == "comfyui",
                                               use_llm=choice.text == "llm", say=_to_terminal)
        return _dry_run(selected, manager, plan)
    return _run(pipeline_dir, selected, settings, choice, plan, context)


def _plan_lines(plan: SkipPlan, steps: Sequence[Step]) -> list[str]:
    """What the run stamp decided, in the words the log and the terminal use."""
    lines = [f"[{s.position}] {s.name}: up to date since {plan.since}, skipped" for s in plan.skipped]
    if plan.reason and len(plan.skipped) < len(steps):
        lines.append(f"run stamp: {plan.reason}; running {'the rest' if plan.skipped else 'every selected script'}")
    return lines


def _check(pipeline_dir: Path, steps: Sequence[Step], settings: Any, choice: EngineChoice) -> int:
    """`--check`: the preflight screen alone; a server it had to start is stopped again."""
    from common.run.preflight import run_preflight
    from common.services.lifecycle import ServiceManager

    manager = ServiceManager.from_settings(settings, pipeline_dir, use_comfyui=choice.media == "comfyui",
                                           use_llm=choice.text == "llm", say=_to_terminal)
    try:
        report = run_preflight(pipeline_dir, steps, settings, choice, manager)
    except KeyboardInterrupt:
        _to_terminal("interrupted.", err=True)
        return SIGNAL_EXIT[signal.SIGINT]
    finally:
        manager.shutdown()
    for line in report.lines():
        _to_terminal(line)
    return 0 if report.ok else 1


def _report(pipeline_dir: Path, steps: Sequence[Step], results: dict[int, StepResult], started_at: str,
            code: int, summary: str, choice: EngineChoice, preflight: list[str], settings: Any, log: RunLog) -> None:
    """The morning report and NOTIFY_CMD; neither may change how the run ended."""
    record = RunRecord(pipeline_dir, steps, [results.get(s.position, StepResult(s, None)) for s in steps],
                       started_at, now_text(), code, summary, choice.reason, preflight)
    try:
        path = write_report(record)
    except Exception as exc:  # a report that cannot be written must not hide the run's own outcome
        log.line(f"report: could not write {pipeline_dir / 'output' / 'report.md'} ({exc})", err=True)
        return
    log.line(f"report: {path}")
    command = str(getattr(settings, "NOTIFY_CMD", "") or "").strip()
    if command:
        notify(command, path, lambda message: log.line(message, err=True))


def _owned(service: Any) -> bool:
    """Ours to restart: we started it (it may have died since); an adopted server never is."""
    if service.adopted:
        return False
    return service.started_by_us or getattr(service, "pid", None) is not None


def _suspects(step: Step, manager: ServiceManager) -> list[Any]:
    """The servers a step's exit 5 is about: those it needs that stopped answering, else all it needs."""
    needed = [svc for flag, svc in ((step.needs_comfyui, manager.comfyui), (step.needs_llm, manager.llm))
              if flag and svc is not None]
    silent = [svc for svc in needed if not svc.answers()]
    return silent or needed


def _script_sentence(tail: Sequence[str]) -> str:
    errors = [line for line in tail if line.startswith("error:")]
    return (errors or list(tail) or [""])[-1]


@dataclass
class _Outcome:
    """How a step ended after any server restarts: its exit code, the restarts it took, the last
    lines it printed, and why its server could not be restarted (empty when that was not the case)."""

    code: int
    restarts: int
    tail: Sequence[str]
    not_ours: str = ""

    def failure_summary(self, step: Step) -> str:
        said = _script_sentence(self.tail)
        if self.not_ours:
            return f"{step.name} failed (exit {self.code}): {said} {self.not_ours}"
        if self.code == ServiceError.exit_code and self.restarts:
            return (f"{step.name} failed (exit {self.code}) again after {self.restarts} restart(s) of its server: "
                    f"{said} Check the server's log, then run generate.py again: finished work is kept")
        return (f"{step.name} failed (exit {self.code}); fix the problem above and run generate.py again: "
                "finished work is kept")


def _run_with_restarts(step: Step, env: Mapping[str, str], log: RunLog, signals: _Signals, grace: float,
                       manager: ServiceManager, restarts: int) -> _Outcome:
    """Run a step; when it exits 5 and the server it needs is ours, restart that server and run it
    again, `restarts` times at most. A server the user started is never restarted."""
    attempt = 0
    while True:
        tail: deque[str] = deque(maxlen=20)
        code = run_step(step, env, log, signals, grace, tail)
        if signals.signum is not None or code != ServiceError.exit_code:
            return _Outcome(code, attempt, tail)
        suspects = _suspects(step, manager)
        theirs = [svc for svc in suspects if not _owned(svc)]
        if theirs:
            names = " and ".join(f"the {svc.name} at {svc.base_url}" for svc in theirs)
            return _Outcome(code, attempt, tail,
                            f"{names} was already running when the run started, so it is not ours to restart: "
                            "restart it yourself, then run generate.py again (finished work is kept)")
        if not suspects or attempt >= restarts:
            return _Outcome(code, attempt, tail)
        attempt += 1
        names = " and ".join(svc.name for svc in suspects)
        log.line(f"services: {step.name} exited 5 ({_script_sentence(tail) or 'service error'}); "
                 f"restarting {names} (restart {attempt} of {restarts}) and running {step.name} again")
        signals.raise_now = True
        try:
            for svc in suspects:
                svc.stop()
                svc.ensure_running()
        finally:
            signals.raise_now = False


def _run(pipeline_dir: Path, steps: Sequence[Step], settings: Any, choice: EngineChoice, plan: SkipPlan,
         context: Mapping[str, str]) -> int:
    log = RunLog(pipeline_dir / "log.txt")
    signals = _Signals()
    signals.install()
    to_run = [s for s in steps if s.position not in plan.positions]
    manager: ServiceManager | None = None
    if to_run:
        from common.services.lifecycle import ServiceManager

        manager = ServiceManager.from_settings(settings, pipeline_dir, use_comfyui=choice.media == "comfyui",
                                               use_llm=choice.text == "llm", say=log.line)
    grace = float(settings.SERVICE_STOP_GRACE)
    restarts = max(0, int(settings.SERVICE_RESTARTS))
    env = _child_env(choice)
    started = time.monotonic()
    started_at = now_text()
    results: dict[int, StepResult] = {}
    preflight: list[str] = []
    current: Step | None = None
    code = 0
    summary = ""
    finished = False
    try:
        log.line(choice.reason)
        for line in _plan_lines(plan, steps):
            log.line(line)
        for step in plan.skipped:
            results[step.position] = StepResult(step, 0, 0.0, skipped_since=plan.since)
        if not to_run:
            summary = (f"nothing to do: all {len(steps)} script(s) are up to date since {plan.since} (nothing "
                       "changed since that finished run); generate.py --force-start runs them anyway")
            finished = True
            return code
        assert manager is not None
        from common.run.preflight import run_preflight

        signals.raise_now = True
        try:
            checked = run_preflight(pipeline_dir, to_run, settings, choice, manager)
        finally:
            signals.raise_now = False
        preflight = checked.lines()
        for line in preflight:
            log.line(line, err=not checked.ok)
        if not checked.ok:
            raise checked.error()
        if signals.signum is not None:
            raise _Stopped(signals.signum)
        for step in to_run:
            current = step
            if signals.signum is None:
                signals.raise_now = True
                try:
                    manager.prepare_for(step.needs_comfyui, step.needs_llm, llm_model_for(step, settings))
                finally:
                    signals.raise_now = False
            if signals.signum is not None:
                raise _Stopped(signals.signum)
            step_started = time.monotonic()
            outcome = _run_with_restarts(step, env, log, signals, grace, manager, restarts)
            code = outcome.code
            results[step.position] = StepResult(step, code, time.monotonic() - step_started,
                                                restarts=outcome.restarts)
            if signals.signum is not None:
                raise _Stopped(signals.signum)
            if code != 0:
                summary = outcome.failure_summary(step)
                break
        else:
            took = time.monotonic() - started
            skipped = f" ({len(plan.skipped)} skipped: up to date since {plan.since})" if plan.skipped else ""
            summary = f"done: {len(to_run)} script(s) finished in {took:.1f}s{skipped}"
            finished = True
    except _Stopped as stop:
        code = SIGNAL_EXIT.get(stop.signum, 130)
        what = "Ctrl+C" if stop.signum == signal.SIGINT else "SIGTERM"
        during = f" during {current.name}" if current else ""
        summary = f"interrupted ({what}){during}; run generate.py again to continue: finished work is kept"
    except PipelineError as exc:
        code = exc.exit_code
        during = f" before {current.name}" if current else ""
        summary = f"error{during}: {exc}"
    finally:
        signals.raise_now = False
        try:
            if manager is not None:
                manager.shutdown()
        finally:
            if finished and code == 0 and signals.signum is None:
                try:
                    record_run(pipeline_dir, steps, context, now_text(), plan)
                except OSError as exc:  # the stamp only saves time: never a reason to fail a run
                    log.line(f"run stamp: could not be written ({exc}); the next run checks every script", err=True)
            if summary:
                log.line(summary, err=code != 0)
            _report(pipeline_dir, steps, results, started_at, code, summary, choice, preflight, settings, log)
            log.close()
            signals.restore()
    return code


__all__ = ["run_pipeline", "Step", "build_steps", "select_steps", "RunLog", "run_step"]
