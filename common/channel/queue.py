"""Channel mode: `generate.py --stories DIR` makes a folder of stories, one after another, overnight.

Why it is shaped like this: each story is an ordinary run of the pipeline
(common.run.orchestrator.run_story) in its own workspace `DIR/<story>/`, with its own run lock,
log, checkpoints, run stamp and report; so whatever makes one story crash-safe makes the queue
crash-safe, and a kill at any moment loses at most the job in flight of the one story running.
One story runs at a time: the GPU is one. The queue adds only what a folder of stories needs:
the order (name order, or DIR/queue.txt), the limits (--max-stories, --until-time), its own lock
(`DIR/channel.lock`: two queues at once are refused, exit 8), its record of how each story's
last run ended (common.channel.state), the morning report (common.channel.report), and the
upload quota: once YouTube's daily quota is spent the later stories are made but not uploaded,
and the next run uploads them. A story that fails is recorded with its reason and the queue goes
on; one that is finished is recognised by its run stamp, without starting anything, in
milliseconds. Only a server that cannot be reached (exit 5) or a signal stops the queue itself.
"""
from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from common.channel.report import status_lines, story_rows, write_channel_report
from common.channel.schedule import local_now
from common.channel.series import channel_series_dir
from common.channel.state import FAILED, FINISHED, RUNNING, STOPPED, UPLOAD_WAITS, ChannelState, StoryRecord
from common.channel.stories import Story, StoryList, find_stories, prepare_workspace
from common.config.paths import WORKSPACE_ENV
from common.config.settings import load_settings
from common.engines.choice import EngineChoice, choose_engines
from common.run.errors import ConfigError, PipelineError, QuotaError, ServiceError
from common.run.lock import acquire_at
from common.run.report import notify
from common.run.step_process import SIGNAL_EXIT, RunLog, Signals, to_terminal
from common.run.steps import Step
from common.state.checkpoints import fingerprint, now_text
from common.state.stamp import SkipPlan

LOCK_FILE = "channel.lock"
LOG_FILE = "channel.log"
UPLOAD_STEP = "12.youtube.py"
_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)\Z")


@dataclass(frozen=True)
class Queue:
    """What a queue run needs from generate.py: its pipeline folder, the stories folder, and the selected
    steps of that pipeline for a story workspace."""

    code_dir: Path
    folder: Path
    steps_for: Callable[[Path], list[Step]]


def until_datetime(text: str, now: datetime) -> datetime:
    """--until-time HH:MM as the next such local time after `now` (a run started at 23:00 with 07:00 stops
    the next morning)."""
    match = _HHMM.match(text.strip())
    if not match:
        raise ConfigError(f"--until-time {text} is not a time of day; write it as HH:MM, e.g. 07:00.")
    limit = now.replace(hour=int(match.group(1)), minute=int(match.group(2)), second=0, microsecond=0)
    return limit if limit > now else limit + timedelta(days=1)


@dataclass
class _Planned:
    """One story looked at before it runs: its steps, settings, engines, and what the run stamp says."""

    story: Story
    data_dir: Path
    steps: list[Step]
    settings: Any
    choice: EngineChoice
    plan: SkipPlan | None  # None: --force-start
    upload_cut: bool = False  # its upload step was left out: the quota is spent

    @property
    def up_to_date(self) -> bool:
        return self.plan is not None and bool(self.steps) and len(self.plan.skipped) == len(self.steps)


@dataclass
class _Night:
    """What one run of the queue did, for its end and its exit code."""

    started: int = 0
    first_failure: int = 0
    uploads_wait: bool = False
    stop: str = ""  # why no further story starts, said once
    code: int = 0
    notes: list[str] = field(default_factory=list)


class _Runner:
    def __init__(self, queue: Queue, args: argparse.Namespace, clock: Callable[[], datetime]) -> None:
        self.queue, self.args, self.clock = queue, args, clock
        self.folder = queue.folder
        self.choices: dict[str, EngineChoice] = {}

    def plan(self, story: Story, uploads_wait: bool) -> _Planned:
        """Prepare the story's workspace and look at it; raises what would stop it (a bad setting, no server)."""
        from common.run.orchestrator import up_to_date

        prepare_workspace(story, self.queue.code_dir.parent)
        steps = self.queue.steps_for(story.workspace)
        cut = next((i for i, s in enumerate(steps) if s.basename == UPLOAD_STEP), len(steps))
        upload_cut = uploads_wait and cut < len(steps)
        if upload_cut:  # YouTube's quota is spent: make the video, upload it on the next run
            steps = steps[:cut]
        data_dir = story.workspace / self.queue.code_dir.name
        settings = load_settings(data_dir)
        key = fingerprint(dict(settings.values))  # one probe of the servers per set of settings, not per story
        if key not in self.choices:
            self.choices[key] = choose_engines(settings, steps=steps)
        choice = self.choices[key]
        plan = None if self.args.force_start else up_to_date(data_dir, steps, settings, choice)
        return _Planned(story, data_dir, steps, settings, choice, plan, upload_cut)


def _settings(queue: Queue, folder: Path) -> Any:
    """The queue's own settings: the pipeline's settings.toml, then the stories folder's."""
    return load_settings(queue.code_dir, files=[queue.code_dir / "settings.toml", folder / "settings.toml"])


def _stories(queue: Queue, settings: Any) -> StoryList:
    return find_stories(queue.folder, {channel_series_dir(settings, queue.folder)})


def run_queue(queue: Queue, args: argparse.Namespace, *, now: Callable[[], datetime] | None = None) -> int:
    """`generate.py --stories DIR` (with --status, --dry-run, --check, --max-stories, --until-time)."""
    clock = now or local_now
    queue = Queue(queue.code_dir, Path(queue.folder).expanduser().resolve(), queue.steps_for)
    try:
        if args.setup:
            raise ConfigError("--setup installs what the pipeline needs, the same for every story: run it without "
                              "--stories.")
        if args.max_stories is not None and args.max_stories < 1:
            raise ConfigError(f"--max-stories {args.max_stories}: give 1 or more.")
        settings = _settings(queue, queue.folder)
        listing = _stories(queue, settings)
        until = until_datetime(args.until_time, clock()) if args.until_time else None
        if args.status:  # reads only: no lock
            for line in status_lines(queue.folder, _rows(queue, listing, queue_running=_queue_running(queue)),
                                     listing.notes):
                to_terminal(line)
            return 0
        if args.dry_run:
            return _dry_run(_Runner(queue, args, clock), listing)
        lock = acquire_at(queue.folder / LOCK_FILE, f"the stories of {queue.folder}", "generate.py --stories")
    except PipelineError as exc:
        to_terminal(f"error: {exc}", err=True)
        return exc.exit_code
    try:
        if args.check:
            return _check(_Runner(queue, args, clock), listing)
        return _run(_Runner(queue, args, clock), listing, settings, until, lock)
    finally:
        lock.release()


def _queue_running(queue: Queue) -> bool:
    from common.run.lock import read_record

    record = read_record(queue.folder / LOCK_FILE)
    return record is not None and bool(record.living())


def _rows(queue: Queue, listing: StoryList, queue_running: bool) -> list[Any]:
    return story_rows(queue.folder, queue.code_dir.name, listing.stories, queue.steps_for, queue_running)


def _dry_run(runner: _Runner, listing: StoryList) -> int:
    """What the queue would do with each story; starts and writes nothing but the workspaces."""
    to_terminal(f"dry run of {len(listing.stories)} stor{'y' if len(listing.stories) == 1 else 'ies'} in "
                f"{runner.folder}: nothing is started")
    for story in listing.stories:
        try:
            planned = runner.plan(story, False)
        except PipelineError as exc:
            to_terminal(f"  {story.name}: would fail: {exc}")
            continue
        if planned.up_to_date:
            to_terminal(f"  {story.name}: finished, up to date since {planned.plan.since}: skipped")
        else:
            first = planned.steps[len(planned.plan.skipped) if planned.plan else 0]
            to_terminal(f"  {story.name}: would run from {first.name} ({planned.choice.reason})")
    for note in listing.notes:
        to_terminal(f"  note: {note}")
    return 0


def _check(runner: _Runner, listing: StoryList) -> int:
    """--check: the preflight of the first story the queue would run (the machine and servers are the
    same for all), after reading every story (a broken one is named, with its line)."""
    from common.formats.story import read_story
    from common.run.orchestrator import _check as check_pipeline

    broken = 0
    first: _Planned | None = None
    for story in listing.stories:
        try:
            read_story(story.source)
            planned = runner.plan(story, False)
        except PipelineError as exc:
            to_terminal(f"{story.name}: {exc}")
            broken += 1
            continue
        if first is None and not planned.up_to_date:
            first = planned
    if first is None:
        to_terminal("every readable story is finished: nothing to check" if not broken else "no story to check")
        return 1 if broken else 0
    to_terminal(f"checking with the first story to run, {first.story.name}:")
    code = check_pipeline(first.data_dir, first.steps, first.settings, first.choice)
    return 1 if broken or code else 0


def _outcome_state(outcome: Any) -> str:
    if outcome.code == 0:
        return FINISHED
    if outcome.stopped_by_deadline or outcome.code in SIGNAL_EXIT.values():
        return STOPPED
    if outcome.code == QuotaError.exit_code and outcome.step == UPLOAD_STEP:
        return UPLOAD_WAITS
    return FAILED


def _run(runner: _Runner, listing: StoryList, settings: Any, until: datetime | None, lock: Any) -> int:
    from common.run.orchestrator import run_story

    folder, args = runner.folder, runner.args
    log = RunLog(folder / LOG_FILE)
    signals = Signals()
    signals.install()
    state = ChannelState.load(folder, runner.queue.code_dir.name)
    night = _Night(notes=list(listing.notes))
    log.line(f"===== QUEUE {folder} @ {now_text()}: {len(listing.stories)} stor"
             f"{'y' if len(listing.stories) == 1 else 'ies'} =====")
    if lock.took_over is not None:
        log.line(lock.takeover_note())
    try:
        for story in listing.stories:
            if signals.signum is not None:
                break
            try:
                planned = runner.plan(story, night.uploads_wait)
            except ServiceError as exc:  # no server, no story: the queue stops here
                _record(state, story, FAILED, exc.exit_code, str(exc))
                night.stop, night.code = f"{story.name}: {exc}", exc.exit_code
                break
            except PipelineError as exc:
                _record(state, story, FAILED, exc.exit_code, str(exc))
                log.line(f"story {story.name}: failed: {exc}", err=True)
                night.first_failure = night.first_failure or exc.exit_code
                continue
            if planned.up_to_date:
                log.line(f"story {story.name}: finished, up to date since {planned.plan.since}: skipped")
                if state.get(story.name).state != FINISHED:
                    _record(state, story, FINISHED, 0, f"up to date since {planned.plan.since}")
                continue
            if args.max_stories is not None and night.started >= args.max_stories:
                night.stop = f"--max-stories {args.max_stories}: the other stories wait for the next run"
                break
            if until is not None:
                current = runner.clock()
                if current >= until:
                    night.stop = f"--until-time {args.until_time}: no story starts after it; the others wait"
                    break
                signals.deadline = time.monotonic() + (until - current).total_seconds()
            night.started += 1
            if not _run_one(run_story, planned, state, night, signals, log):
                break
    finally:
        signals.raise_now = False
        if night.stop:
            log.line(f"queue: {night.stop}")
        try:
            _finish(runner, listing, settings, night, log)
        finally:
            log.close()
            signals.restore()
    if signals.signum is not None and not signals.deadline_hit:
        return SIGNAL_EXIT.get(signals.signum, 130)
    return night.code or night.first_failure


def _run_one(run_story: Callable[..., Any], planned: _Planned, state: ChannelState, night: _Night,
             signals: Signals, log: RunLog) -> bool:
    """Run one story; False when the queue must stop after it (a signal, --until-time, no server)."""
    story = planned.story
    started_at, started = now_text(), time.monotonic()
    state.put(story.name, StoryRecord(RUNNING, None, "", started_at))
    log.line(f"===== STORY {story.name} @ {started_at} ({planned.data_dir}) =====")
    try:
        outcome = run_story(planned.data_dir, planned.steps, planned.settings, planned.choice,
                            force=planned.plan is None, signals=signals,
                            extra_env={WORKSPACE_ENV: str(story.workspace)})
    except PipelineError as exc:  # its workspace's lock is held by a run of that story alone
        _record(state, story, FAILED, exc.exit_code, str(exc), started_at, time.monotonic() - started)
        night.first_failure = night.first_failure or exc.exit_code
        return True
    kind = _outcome_state(outcome)
    reason = (outcome.reason if kind == FAILED else outcome.summary).removeprefix("error: ")
    if kind == UPLOAD_WAITS:
        reason = f"made; the next run uploads it ({outcome.reason})"
    if kind == FINISHED and planned.upload_cut:
        kind, reason = UPLOAD_WAITS, "made; YouTube's upload quota is spent: the next run uploads it"
    _record(state, story, kind, outcome.code, reason, started_at, time.monotonic() - started)
    log.line(f"===== STORY {story.name}: {kind} (exit {outcome.code}) =====", err=kind == FAILED)
    if kind == UPLOAD_WAITS:
        night.uploads_wait = True
    elif kind == FAILED:
        night.first_failure = night.first_failure or outcome.code
        if outcome.code == ServiceError.exit_code:
            night.stop, night.code = f"{story.name} could not reach its servers: {reason}", outcome.code
            return False
    return kind != STOPPED and signals.signum is None


def _record(state: ChannelState, story: Story, kind: str, code: int, reason: str, started_at: str = "",
            took: float = 0.0) -> None:
    previous = state.get(story.name)
    ended_at = now_text()
    if not started_at and kind == FINISHED and previous.started_at:  # up to date: the run that finished it stays
        started_at, ended_at, took = previous.started_at, previous.ended_at, previous.took
    state.put(story.name, StoryRecord(kind, code, reason, started_at, ended_at, round(took, 3)))


def _finish(runner: _Runner, listing: StoryList, settings: Any, night: _Night, log: RunLog) -> None:
    """The channel report and NOTIFY_CMD; neither may change how the queue ended."""
    notes = night.notes + ([night.stop] if night.stop else [])
    try:
        rows = story_rows(runner.folder, runner.queue.code_dir.name, listing.stories, runner.queue.steps_for, False)
        path = write_channel_report(runner.folder, f"Channel report: {runner.folder} (queue run ending {now_text()})",
                                    rows, notes)
    except Exception as exc:  # a report that cannot be written must not hide how the queue ended
        log.line(f"channel report: could not be written ({exc})", err=True)
        return
    done = sum(1 for r in rows if r.state == FINISHED)
    log.line(f"queue: {done} of {len(rows)} stories finished, {night.started} started this run; report: {path}")
    command = str(getattr(settings, "NOTIFY_CMD", "") or "").strip()
    if command:
        notify(command, path, lambda message: log.line(message, err=True))
