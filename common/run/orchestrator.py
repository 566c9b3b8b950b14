"""The engine of every `generate.py`: run a pipeline's scripts in order, overnight, unattended.

Why it is shaped like this (SPEC 6): each script runs as its own child process in its own
`scripts/` folder, so a crash or an out-of-memory kill costs one script, never the run's
bookkeeping. Before each script the services it needs are started (and the ones it does not
need are stopped or freed, because ComfyUI and the LLM share one GPU). The child's output is
streamed line by line to the terminal and appended, whole lines only, to `log.txt` between
START/END markers, so the log of a night tells what happened even after a power cut.
A failure stops the run with the child's exit code; Ctrl+C and SIGTERM (and SIGHUP, as SIGTERM)
are passed on to the child, which checkpoints and exits; in every case the servers we started are stopped.

Two things keep a night going without doing anything twice: the run stamp (common/state/stamp.py)
skips the scripts a finished run proves to be no-ops, so re-running a finished pipeline costs
one process, not one per script; and a script that exits 5 (ComfyUI or the LLM stopped
answering or got stuck) gets its server restarted and runs again, SERVICE_RESTARTS times at
most, when that server is ours; a server the user started is never restarted.

A story can live in a workspace instead of the pipeline folder (channel mode, `--stories DIR`, or
PIPELINE_WORKSPACE for one story): the steps then read and write there, and the run's log, lock,
stamp and report are the workspace's. common/channel/queue.py runs a folder of stories through
`run_story`, one after another.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from common.channel.stories import refresh_workspace, workspace_from_env
from common.config.paths import WORKSPACE_ENV
from common.config.settings import load_settings
from common.engines.choice import EngineChoice, choose_engines
from common.run.errors import ConfigError, PipelineError, ServiceError
from common.run.lock import RUN_LOCK_ENV, RunLock, acquire as acquire_run_lock
from common.run.report import RunRecord, StepResult, notify, status_lines, write_report
from common.run.step_process import (SIGNAL_EXIT, SIGNAL_NAMES, RunLog, Signals, Stopped, child_env, run_step,
                                     to_terminal)
from common.run.steps import Needs, Step, build_steps, check_exist, llm_model_for, print_list, select_steps
from common.state.checkpoints import now_text
from common.state.stamp import SkipPlan, context_parts, plan_skips, record_run

if TYPE_CHECKING:  # imported where used: a run with nothing to do never pays for requests/psutil
    from common.services.lifecycle import ServiceManager


def _manager(settings: Any, pipeline_dir: Path, choice: EngineChoice, say: Callable[..., None]) -> ServiceManager:
    """The run's services: only those the chosen engines use."""
    from common.services.lifecycle import ServiceManager

    return ServiceManager.from_settings(settings, pipeline_dir, use_comfyui=choice.media == "comfyui",
                                        use_llm=choice.text == "llm", say=say)


def _dry_run(steps: Sequence[Step], manager: ServiceManager, plan: SkipPlan) -> int:
    """Say what a run would start, stop and run; starts and runs nothing."""
    to_terminal("dry run: nothing is started, stopped or run")
    for line in _plan_lines(plan, steps):
        to_terminal(line)
    steps = [s for s in steps if s.position not in plan.positions]
    services = {"comfyui": manager.comfyui, "llm": manager.llm}
    plans: dict[str, str] = {}
    active = {"comfyui": False, "llm": False}

    def release(key: str) -> str:  # a server we only adopted is freed, never stopped
        return f"would {'free' if plans.get(key, '').startswith('adopt') else 'stop'} {services[key].name}"

    for step in steps:
        to_terminal(f"[{step.position}] {step.name}  (needs: {step.needs_text})")
        needs = {"comfyui": step.needs_comfyui, "llm": step.needs_llm}
        for key, service in services.items():
            if service is not None and active[key] and not needs[key]:
                to_terminal(f"      {release(key)}")
                active[key] = False
        for key, service in services.items():
            if not needs[key]:
                continue
            if service is None:
                to_terminal(f"      {'ComfyUI' if key == 'comfyui' else 'LLM'} not used: offline engine")
                continue
            if active[key]:
                to_terminal(f"      would keep {service.name}")
                continue
            if key not in plans:
                try:
                    plans[key] = service.plan_start()
                except ServiceError as exc:
                    to_terminal(f"      the run would stop here: {exc}")
                    return ServiceError.exit_code
            to_terminal(f"      would {plans[key]}")
            active[key] = True
        to_terminal(f"      would run: {shlex.join(['python', step.basename, *step.args])}  (in {step.path.parent})")
    for key, service in services.items():
        if service is not None and active[key]:
            to_terminal(f"at the end: {release(key)}")
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
    parser.add_argument("--setup", action="store_true",
                        help="install what the selected scripts' ComfyUI workflows need (ComfyUI, node packs, model "
                             "files; ComfyUI/manifest.toml); with --dry-run only list it")
    parser.add_argument("--yes", action="store_true", help="with --setup: download without asking, whatever the size")
    parser.add_argument("--status", action="store_true",
                        help="items done / preview / failed / left per script, from the checkpoints only")
    parser.add_argument("--serve", action="store_true",
                        help="open the dailies page on this machine (tonight's status, every picture and clip to "
                             "approve, retake or edit, the morning report, the upload's approval); prints its address")
    parser.add_argument("--port", type=int, default=0, help="with --serve: the port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="with --serve: the address to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument("--force-start", action="store_true",
                        help="run every selected script even when nothing changed since the last finished run "
                             "(each still resumes from its checkpoints; to redo a script from scratch run it "
                             "alone with --force-start)")
    channel = parser.add_argument_group("channel mode: a folder of stories, one after another")
    channel.add_argument("--stories", metavar="DIR",
                         help="run every DIR/*.txt story (or those DIR/queue.txt lists, in its order), each in its own "
                              "workspace DIR/<story>/; finished stories are skipped, unfinished ones continue")
    channel.add_argument("--max-stories", type=int, metavar="N", help="with --stories: start at most N stories")
    channel.add_argument("--until-time", metavar="HH:MM",
                         help="with --stories: start no story after this local time; the story running then stops "
                              "at a checkpoint and continues on the next run")
    return parser.parse_args(argv)


def run_pipeline(pipeline_dir: Path, *, scripts: list[str], script_args: Mapping[str, Sequence[str]],
                 needs_comfyui: Needs | None = None, needs_lmstudio: Needs | None = None,
                 argv: list[str] | None = None, now: Callable[[], datetime] | None = None) -> int:
    """`now` (local, aware) is the clock --until-time reads; tests give their own."""
    pipeline_dir = Path(pipeline_dir).resolve()
    try:
        args = _parse(argv, pipeline_dir)
    except SystemExit as exc:  # --help or a bad flag: argparse has already said why
        return int(exc.code or 0)
    try:
        workspace = workspace_from_env(os.environ, queue=bool(args.stories))
        data_dir = pipeline_dir if workspace is None else workspace / pipeline_dir.name
        steps = build_steps(pipeline_dir, scripts, needs_comfyui, needs_lmstudio, script_args, workspace)
        if args.list:
            print_list(steps, pipeline_dir)
            check_exist(steps, pipeline_dir)
            return 0
        if args.serve:  # reads only, and writes the request files a person would: no lock, no engine
            from common.dailies.server import serve

            return serve(pipeline_dir, steps, host=args.host, port=args.port, say=to_terminal)
        selected = select_steps(steps, args.start, args.until, args.only)
        if args.stories:
            from common.channel.queue import Queue, run_queue

            check_exist(selected, pipeline_dir)
            queue = Queue(pipeline_dir, Path(args.stories),
                          lambda ws: select_steps(build_steps(pipeline_dir, scripts, needs_comfyui, needs_lmstudio,
                                                              script_args, ws), args.start, args.until, args.only))
            return run_queue(queue, args, now=now)
        if args.max_stories is not None or args.until_time:
            raise ConfigError("--max-stories and --until-time work on a queue of stories: add --stories DIR.")
        if args.status:
            for line in status_lines(data_dir, selected):
                to_terminal(line)
            return 0
        check_exist(selected, pipeline_dir)
        settings = load_settings(data_dir)
        if args.setup:
            return _setup(pipeline_dir, selected, settings, args)
        choice = choose_engines(settings, steps=selected)
    except PipelineError as exc:
        to_terminal(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:  # before our handlers are installed: nothing was started yet
        to_terminal("interrupted before anything started.", err=True)
        return SIGNAL_EXIT[signal.SIGINT]

    if args.dry_run:  # reads only: no lock, like --status and --list
        to_terminal(choice.reason)
        plan = _skip_plan(data_dir, selected, settings, context_parts(settings, (choice.media, choice.text)),
                          args.force_start)
        return _dry_run(selected, _manager(settings, data_dir, choice, to_terminal), plan)
    try:  # one run of a pipeline at a time: --check too, since it starts and frees servers
        lock = acquire_run_lock(data_dir, "generate.py")
    except PipelineError as exc:
        to_terminal(f"error: {exc}", err=True)
        return exc.exit_code
    try:
        if args.check:
            if lock.took_over is not None:
                to_terminal(lock.takeover_note())
            return _check(data_dir, selected, settings, choice)
        extra = {}
        if workspace is not None:  # one story of a channel: its copy of the story follows DIR/<story>.txt
            refresh_workspace(workspace, pipeline_dir.parent)
            extra[WORKSPACE_ENV] = str(workspace)
        context = context_parts(settings, (choice.media, choice.text))
        plan = _skip_plan(data_dir, selected, settings, context, args.force_start)
        return _run(data_dir, selected, settings, choice, plan, context, lock, extra_env=extra).code
    except PipelineError as exc:  # the story of a workspace run alone could not be read
        to_terminal(f"error: {exc}", err=True)
        return exc.exit_code
    finally:
        lock.release()


@dataclass(frozen=True)
class RunOutcome:
    """How a run of a pipeline's steps ended: its exit code and summary line, whether --until-time stopped
    it, and which script ended it."""

    code: int
    summary: str
    stopped_by_deadline: bool = False
    step: str = ""  # the script that ended a failed or stopped run (its file name)
    said: str = ""  # that script's own last error sentence

    @property
    def reason(self) -> str:
        """One line for a record: the failed script's own sentence, else the summary."""
        return f"{self.step}: {self.said}" if self.said and self.step else self.summary


def up_to_date(data_dir: Path, steps: Sequence[Step], settings: Any, choice: EngineChoice) -> SkipPlan:
    """What the run stamp says of `steps` in `data_dir`, without running or writing anything."""
    return _skip_plan(data_dir, steps, settings, context_parts(settings, (choice.media, choice.text)), False)


def run_story(data_dir: Path, steps: Sequence[Step], settings: Any, choice: EngineChoice, *, force: bool,
              signals: Signals, extra_env: Mapping[str, str]) -> RunOutcome:
    """One story of a queue: its steps under its own run lock, log and report (notified by the queue)."""
    context = context_parts(settings, (choice.media, choice.text))
    plan = _skip_plan(data_dir, steps, settings, context, force)
    lock = acquire_run_lock(data_dir, "generate.py --stories")
    try:
        return _run(data_dir, steps, settings, choice, plan, context, lock, extra_env=extra_env, signals=signals,
                    notify_report=False)
    finally:
        lock.release()


def _setup(pipeline_dir: Path, selected: Sequence[Step], settings: Any, args: argparse.Namespace) -> int:
    """`--setup`: needs no engine choice (nothing is started); holds the run lock unless it only lists."""
    from common.setup.run import run_setup

    if args.dry_run:
        return run_setup(pipeline_dir, selected, settings, dry_run=True, say=to_terminal)
    lock = acquire_run_lock(pipeline_dir, "generate.py --setup")
    try:
        return run_setup(pipeline_dir, selected, settings, yes=args.yes, say=to_terminal)
    finally:
        lock.release()


def _skip_plan(pipeline_dir: Path, selected: Sequence[Step], settings: Any, context: Mapping[str, str],
               force: bool) -> SkipPlan:
    if settings.ENABLE_RESUMABLE_MODE:
        return plan_skips(pipeline_dir, selected, context, force=force)
    # without checkpoints every script redoes its work: nothing is a no-op
    return SkipPlan([], None, "ENABLE_RESUMABLE_MODE is off: every selected script runs")


def _plan_lines(plan: SkipPlan, steps: Sequence[Step]) -> list[str]:
    """What the run stamp decided, in the words the log and the terminal use."""
    lines = [f"[{s.position}] {s.name}: up to date since {plan.since}, skipped" for s in plan.skipped]
    if plan.reason and len(plan.skipped) < len(steps):
        lines.append(f"run stamp: {plan.reason}; running {'the rest' if plan.skipped else 'every selected script'}")
    return lines


def _check(pipeline_dir: Path, steps: Sequence[Step], settings: Any, choice: EngineChoice) -> int:
    """`--check`: the preflight screen alone; a server it had to start is stopped again."""
    from common.run.preflight import run_preflight

    manager = _manager(settings, pipeline_dir, choice, to_terminal)
    try:
        report = run_preflight(pipeline_dir, steps, settings, choice, manager)
    except KeyboardInterrupt:
        to_terminal("interrupted.", err=True)
        return SIGNAL_EXIT[signal.SIGINT]
    finally:
        manager.shutdown()
    for line in report.lines():
        to_terminal(line)
    return 0 if report.ok else 1


def _report(pipeline_dir: Path, steps: Sequence[Step], results: dict[int, StepResult], started_at: str,
            code: int, summary: str, choice: EngineChoice, preflight: list[str], settings: Any, log: RunLog,
            notify_report: bool = True) -> None:
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
    if command and notify_report:
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


def _run_with_restarts(step: Step, env: Mapping[str, str], log: RunLog, signals: Signals, grace: float,
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
        with signals.raising():
            for svc in suspects:
                svc.stop()
                svc.ensure_running()


def _run(pipeline_dir: Path, steps: Sequence[Step], settings: Any, choice: EngineChoice, plan: SkipPlan,
         context: Mapping[str, str], lock: RunLock, *, extra_env: Mapping[str, str] | None = None,
         signals: Signals | None = None, notify_report: bool = True) -> RunOutcome:
    """Run the steps `plan` does not skip. `signals` given: the caller (a queue) installed them and keeps them."""
    log = RunLog(pipeline_dir / "log.txt")
    own_signals = signals is None
    signals = signals or Signals()
    if own_signals:
        signals.install()
    to_run = [s for s in steps if s.position not in plan.positions]
    manager = _manager(settings, pipeline_dir, choice, log.line) if to_run else None
    grace = float(settings.SERVICE_STOP_GRACE)
    restarts = max(0, int(settings.SERVICE_RESTARTS))
    env = child_env(choice)
    env.update(extra_env or {})
    env[RUN_LOCK_ENV] = lock.token  # our scripts join this run's lock instead of taking it again
    started = time.monotonic()
    started_at = now_text()
    results: dict[int, StepResult] = {}
    preflight: list[str] = []
    current: Step | None = None
    code = 0
    summary = ""
    said = ""  # the failed script's own sentence
    finished = False
    try:
        if lock.took_over is not None:
            log.line(lock.takeover_note())
        log.line(choice.reason)
        for line in _plan_lines(plan, steps):
            log.line(line)
        for step in plan.skipped:
            results[step.position] = StepResult(step, 0, 0.0, skipped_since=plan.since)
        if not to_run:
            summary = (f"nothing to do: all {len(steps)} script(s) are up to date since {plan.since} (nothing "
                       "changed since that finished run); generate.py --force-start runs them anyway")
            finished = True
            return RunOutcome(code, summary)
        assert manager is not None
        from common.run.preflight import run_preflight

        with signals.raising():
            checked = run_preflight(pipeline_dir, to_run, settings, choice, manager)
        preflight = checked.lines()
        for line in preflight:
            log.line(line, err=not checked.ok)
        if not checked.ok:
            raise checked.error()
        signals.check()
        for step in to_run:
            current = step
            if signals.signum is None:
                with signals.raising():
                    manager.prepare_for(step.needs_comfyui, step.needs_llm, llm_model_for(step, settings))
            signals.check()
            step_started, step_started_at = time.monotonic(), now_text()
            outcome = _run_with_restarts(step, env, log, signals, grace, manager, restarts)
            code = outcome.code
            results[step.position] = StepResult(step, code, time.monotonic() - step_started,
                                                restarts=outcome.restarts, started_at=step_started_at)
            signals.check()
            if code != 0:
                summary = outcome.failure_summary(step)
                said = _script_sentence(outcome.tail).removeprefix("error:").strip()
                break
        else:
            took = time.monotonic() - started
            skipped = f" ({len(plan.skipped)} skipped: up to date since {plan.since})" if plan.skipped else ""
            summary = f"done: {len(to_run)} script(s) finished in {took:.1f}s{skipped}"
            finished = True
    except Stopped as stop:
        code = SIGNAL_EXIT.get(stop.signum, 130)
        what = SIGNAL_NAMES.get(stop.signum, "SIGTERM")
        during = f" during {current.name}" if current else ""
        if signals.deadline_hit:
            summary = (f"stopped at the --until-time{during}; the next run continues it from its checkpoints")
        else:
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
            _report(pipeline_dir, steps, results, started_at, code, summary, choice, preflight, settings, log,
                    notify_report)
            log.close()
            if own_signals:
                signals.restore()
    return RunOutcome(code, summary, stopped_by_deadline=signals.deadline_hit,
                      step=current.basename if current is not None and code != 0 else "", said=said)
