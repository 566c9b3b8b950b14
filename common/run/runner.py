"""The edge of every numbered script: flags, settings, checkpoints, progress and error handling.

A script builds a `Script`, declares its own flags, and hands `run()` a `main(ctx)`. Errors a
user can cause (PipelineError) become one sentence on stderr and that error's exit code;
PIPELINE_DEBUG=1 re-raises them with the traceback. Nothing here ever waits for keyboard
input unless stdin is a terminal and no --auto-confirm was given.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from common.run import cancel, notes
from common.run import lock as run_lock
from common.state.checkpoints import CheckpointStore, Entry, state_file
from common.run.errors import ConfigError, Interrupted, ItemsFailedError, JobError, PipelineError
from common.config.paths import WORKSPACE_ENV, code_dir, pipeline_dir_of, workspace_of
from common.run.progress import Progress
from common.config.settings import Settings, load_settings

T = TypeVar("T")


def _yes_no(value: str) -> str:
    text = value.strip().lower()
    if text in ("y", "yes"):
        return "y"
    if text in ("n", "no"):
        return "n"
    raise argparse.ArgumentTypeError("use y or n")


def standard_parser(description: str) -> argparse.ArgumentParser:
    """The flags every seed script accepted (SPEC 3); scripts add their own on top."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--force-start", action="store_true", help="ignore checkpoints and redo every item")
    parser.add_argument("--disable-resumable", action="store_true", help="neither read nor write checkpoints")
    parser.add_argument("--auto-confirm", type=_yes_no, metavar="y|n", help="answer every question with y or n")
    parser.add_argument("--force", action="store_true", help="overwrite outputs a script would otherwise keep")
    parser.add_argument("--bypass-validation", action="store_true", help="skip input validation (at your own risk)")
    parser.add_argument("--change-settings", type=_yes_no, metavar="y|n", help="y: ask for settings changes before running")
    return parser


@dataclass
class ScriptContext:
    """What a running script needs, built once at the edge and passed down."""

    name: str
    pipeline_dir: Path
    args: argparse.Namespace
    settings: Settings
    out: Callable[[str], None] = print
    _stores: dict[str, CheckpointStore] = field(default_factory=dict)

    @property
    def input_dir(self) -> Path:
        return self.pipeline_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.pipeline_dir / "output"

    @property
    def code_dir(self) -> Path:
        """The pipeline folder with the scripts, workflow/ and voices/ (pipeline_dir in channel mode is
        the story's workspace folder, which holds only the story's data)."""
        return code_dir(self.pipeline_dir)

    def say(self, message: str) -> None:
        self.out(message)

    def checkpoints(self, name: str | None = None) -> CheckpointStore:
        """The script's checkpoint store, honouring --force-start / --disable-resumable / settings."""
        key = name or self.name
        if key not in self._stores:
            resumable = self.settings.ENABLE_RESUMABLE_MODE and not self.args.disable_resumable
            self._stores[key] = CheckpointStore(
                state_file(self.pipeline_dir, key), base_dir=self.pipeline_dir, resumable=resumable,
                force_start=self.args.force_start, warn=lambda text: print(text, file=sys.stderr, flush=True))
        return self._stores[key]

    def confirm(self, question: str, default: bool = True) -> bool:
        """Ask only when a person can answer; unattended runs take the default and say so."""
        if self.args.auto_confirm:
            return self.args.auto_confirm == "y"
        if not sys.stdin or not sys.stdin.isatty():
            self.say(f"{question} -> {'yes' if default else 'no'} (unattended)")
            return default
        answer = input(f"{question} [{'Y/n' if default else 'y/N'}] ").strip().lower()
        return default if not answer else answer.startswith("y")

    def each(self, items: Sequence[T], *, label: str, key: Callable[[T], str], fingerprint: Callable[[T], str],
             work: Callable[[T], tuple[Iterable[Path], dict[str, Any]]], preview: bool = False,
             store: CheckpointStore | None = None, workers: int = 1,
             chain: Callable[[T], str] | None = None) -> dict[str, Entry]:
        """`work(item)` -> (files written, data to remember) for each item not checkpointed yet; returns
        every entry, cached or new, by key. Each is checkpointed the moment it finishes, also with
        `workers` > 1 (to keep a ComfyUI queue full), so an interruption loses only those in flight.
        Items with the same `chain(item)` build on each other: one worker runs them in order, and after
        one fails the rest wait for the next run. A JobError fails its item only (one ItemsFailedError
        at the end) unless it would hit every item: then it stops at once. With `preview`, an item that
        has a real (non-preview) output keeps it: a night of GPU work is never swapped for previews.
        """
        store = store or self.checkpoints()
        progress = Progress(len(items), label)
        entries: dict[str, Entry] = {}
        failures: dict[str, JobError] = {}
        todo: list[tuple[T, str, str]] = []
        kept_real: list[str] = []
        redo_reduced = bool(self.settings.get("REDO_REDUCED", False))
        for item in items:
            item_key, item_fp = key(item), fingerprint(item)
            cached = store.lookup(item_key, item_fp)
            if cached is not None and redo_reduced and cached.data.get(notes.REDUCED):
                cached = None  # made smaller after running out of memory: now at full size
            if cached is None and preview:
                # A preview never replaces a real output (issue 13): the real one stays, and a real
                # run redoes it if its inputs changed. --force-start loads no entries, so it can.
                cached = store.real_entry(item_key)
                if cached is not None:
                    kept_real.append(item_key)
            if cached is not None:
                entries[item_key] = cached
                progress.done(item_key, cached=True)
            else:
                todo.append((item, item_key, item_fp))
        if kept_real:
            self.say(f"[{label}] kept {len(kept_real)} real output(s) ({', '.join(kept_real[:5])}"
                     f"{', ...' if len(kept_real) > 5 else ''}) instead of replacing them with previews; "
                     "run this script alone with --force-start to replace them.")

        def run_one(job: tuple[T, str, str]) -> tuple[str, Entry]:
            item, item_key, item_fp = job
            started = time.monotonic()
            try:
                with notes.collecting() as noted:  # e.g. {"reduced": True}: made smaller after running out of memory
                    files, data = work(item)
                data = {**data, **noted} if noted else data
            except JobError as exc:
                if exc.affects_every_item:
                    raise
                # This item is given up for this run; the others are independent and go on.
                failures[item_key] = exc
                return item_key, store.record(item_key, item_fp, data={"error": str(exc)},
                                              took=time.monotonic() - started, status="failed")
            took = time.monotonic() - started
            return item_key, store.record(item_key, item_fp, files=files, data=data, preview=preview, took=took)

        lock = threading.Lock()

        def finished(item_key: str, entry: Entry) -> None:
            with lock:  # workers report from their own threads
                entries[item_key] = entry
                if entry.status == "failed":
                    progress.done(item_key, failed=True)
                    self.say(f"[{label}] {item_key} failed: {entry.data.get('error', '')}")
                else:
                    progress.done(item_key, entry.took)

        chains: dict[str, list[tuple[T, str, str]]] = {}
        for job in todo:
            chains.setdefault(chain(job[0]) if chain else job[1], []).append(job)

        def run_chain(jobs: list[tuple[T, str, str]]) -> None:
            for job in jobs:
                if cancel.stop_requested():
                    raise KeyboardInterrupt
                progress.begin(job[1])
                item_key, entry = run_one(job)
                finished(item_key, entry)
                if entry.status == "failed":
                    return  # what follows builds on this item

        if workers <= 1 or len(chains) <= 1:
            for jobs in chains.values():
                run_chain(jobs)
        else:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=label)
            try:
                futures = [pool.submit(run_chain, jobs) for jobs in chains.values()]
                for future in as_completed(futures):
                    future.result()
            except KeyboardInterrupt:
                cancel.request_stop()  # the workers' jobs are cancelled on their servers, not awaited
                raise
            finally:
                # On an error or Ctrl+C, start nothing new; jobs in flight finish or fail on their own.
                pool.shutdown(wait=True, cancel_futures=True)
        self.say(progress.summary())
        if failures:
            raise items_failed(label, [key(item) for item in items], failures)
        return {key(item): entries[key(item)] for item in items}

    def finish(self) -> None:
        for store in self._stores.values():
            store.finish(cleanup=self.settings.CLEANUP_TRACKING_FILES)


def items_failed(label: str, keys: Sequence[str], failures: dict[str, JobError]) -> ItemsFailedError:
    """One sentence for the morning: how many failed, the first reason, and how to redo just those."""
    failed = [k for k in keys if k in failures]
    first = failed[0]
    reason = str(failures[first]).rstrip(".")
    others = f" (also failed: {', '.join(failed[1:6])}{', ...' if len(failed) > 6 else ''})" if len(failed) > 1 else ""
    kept = len(keys) - len(failed)
    return ItemsFailedError(
        f"{len(failed)} of {len(keys)} {label} failed, first {first}: {reason}{others}; the other {kept} are done "
        "and kept: fix the cause and run the same command again to redo only the failed ones.")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class Script:
    """A numbered script: `Script(__file__, "what it does")`, add flags, then `.run(main)`."""

    def __init__(self, script_file: str, description: str, settings_keys: Sequence[str] = ()) -> None:
        """`settings_keys` are the settings this script uses: `--change-settings y` offers them."""
        self.file = Path(script_file).resolve()
        self.settings_keys = tuple(settings_keys)
        self.name = self.file.stem
        self.description = description
        self.parser = standard_parser(f"{self.file.name}: {description}")
        self._settings_flags: dict[str, str] = {}

    def add_argument(self, *names: str, setting: str | None = None, **kwargs: Any) -> None:
        """Add a flag; with `setting=`, the flag overrides that setting (flag -> env -> file -> default)."""
        action = self.parser.add_argument(*names, **kwargs)
        if setting:
            self._settings_flags[action.dest] = setting

    def context(self, argv: Sequence[str] | None = None) -> ScriptContext:
        args = self.parser.parse_args(argv)
        overrides = {setting: getattr(args, dest) for dest, setting in self._settings_flags.items()}
        pipeline_dir = pipeline_dir_of(self.file)
        if os.environ.get(WORKSPACE_ENV, "").strip() and workspace_of(pipeline_dir) is None:
            raise ConfigError(f"{WORKSPACE_ENV} is {os.environ[WORKSPACE_ENV]}, which is not a story workspace (it has "
                              "no workspace.json); run generate.py --stories on its stories folder once, or unset it.")
        settings = load_settings(pipeline_dir, overrides)
        if args.force_start:  # redo every item: a finished job a server still holds is no exception
            settings = settings.with_overrides(COMFYUI_REUSE_JOBS=False)
        if args.change_settings == "y":
            settings = self._ask_settings(settings)
        return ScriptContext(self.name, pipeline_dir, args, settings, out=lambda m: print(m, flush=True))

    def _ask_settings(self, settings: Settings) -> Settings:
        """The seed's interactive settings review, for this run only; unattended runs keep them."""
        keys = self.settings_keys or tuple(self._settings_flags.values())
        if not sys.stdin or not sys.stdin.isatty():
            print("--change-settings y: no terminal to ask on, keeping the settings as they are.", flush=True)
            return settings
        changes: dict[str, str] = {}
        for key in keys:
            answer = input(f"{key} = {settings.get(key)!r} (from {settings.source_of(key)}); new value or Enter: ").strip()
            if answer:
                changes[key] = answer
        return settings.with_overrides(**changes) if changes else settings

    def run(self, main: Callable[[ScriptContext], None], argv: Sequence[str] | None = None) -> None:
        """Run `main` and exit: 0 on success, the error's code on a user-caused failure."""
        signal.signal(signal.SIGTERM, _raise_interrupt)
        sys.exit(run_guarded(lambda: self._run_once(main, argv)))

    def _run_once(self, main: Callable[[ScriptContext], None], argv: Sequence[str] | None) -> None:
        cancel.clear()  # a script run in-process after an interrupted one starts afresh
        ctx = self.context(argv)
        with run_lock.hold(ctx.pipeline_dir, self.file.name):  # joined, not retaken, under generate.py
            main(ctx)
            ctx.finish()


def run_guarded(body: Callable[[], None]) -> int:
    """Turn user-caused failures into one sentence and an exit code; our bugs keep tracebacks."""
    debug = os.environ.get("PIPELINE_DEBUG", "") not in ("", "0")
    try:
        body()
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: finished items are kept; run the same command again to continue.", file=sys.stderr, flush=True)
        return Interrupted.exit_code
    except PipelineError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
