"""gen.audio step 4: did the TTS say every line as written? A report, line by line, of what
was skipped, repeated or garbled (stdout and output/quality.json), and with --retake a
repair: only the chunks holding failing lines are spoken again, then transcribed and checked
again, up to QUALITY_MAX_RETAKES times per chunk (counted in this step's checkpoint, so a
rerun does not spend the budget twice). A failing line is not an error unless --strict:
the report is the product. --strict also fails (exit 4) when nothing was heard (the line
timings stand in for Whisper), since every line then passes without being checked.
"""
from __future__ import annotations

from typing import Any

from common.state.atomic import atomic_write_json
from common.state.checkpoints import fingerprint
from common.run.errors import ConfigError, InputError, JobError
from common.config.paths import require_file
from common.audio.quality import (
    REPORT_FILE, Report, check_lines, chunk_fingerprints, chunk_size_of, forget_chunks, format_table,
    heard_nothing, load_words, read_report, redo_command, run_step, strict_without_hearing, summary,
    transcript_source,
)
from common.run.runner import Script, ScriptContext
from common.audio.speech import TIMINGS_FILE
from common.audio.transcribe import read_timings

script = Script(__file__, "check the transcript against the story line by line; --retake regenerates failing chunks")
script.add_argument("--strict", action="store_true", help="exit with an error when any line fails")
script.add_argument("--retake", action="store_true", help="regenerate the chunks of failing lines, then check again")
script.add_argument("--chunk", action="append", default=[], metavar="START_END",
                    help="with --retake: regenerate this chunk (e.g. 6_10) even if it passed; repeatable")
script.add_argument("--threshold", type=float, setting="QUALITY_THRESHOLD", help="similarity a line needs (default 0.80)")
script.add_argument("--max-retakes", type=int, setting="QUALITY_MAX_RETAKES", help="retakes per chunk (default 2)")


def timings(ctx: ScriptContext) -> dict[str, Any]:
    path = require_file(ctx.output_dir / TIMINGS_FILE, "the line timings", "run 2.story.py first; it writes them.")
    return read_timings(path)


def check(ctx: ScriptContext) -> Report:
    """The report, redone only when the timings, the transcript or the threshold changed."""
    timings_path = ctx.output_dir / TIMINGS_FILE
    lines = timings(ctx)["lines"]
    source = transcript_source(ctx.pipeline_dir)
    threshold = ctx.settings.QUALITY_THRESHOLD
    report_path = ctx.output_dir / REPORT_FILE

    def work(_: str) -> tuple[list, dict[str, Any]]:
        words, label = load_words(source)
        report = Report(tuple(check_lines(lines, words, threshold)), threshold, label)
        atomic_write_json(report_path, report.to_json(), indent=1)
        return [report_path], {"failed_lines": [c.line for c in report.failed], "failing_chunks": report.failing_chunks()}

    ctx.each(["report"], label="quality", key=lambda k: k,
             fingerprint=lambda k: fingerprint(timings_path, source, threshold), work=work)
    return read_report(report_path)


def retake(ctx: ScriptContext, report: Report) -> Report:
    """Regenerate failing chunks (and --chunk ones) until they pass or their retakes are spent."""
    limit = ctx.settings.QUALITY_MAX_RETAKES
    store = ctx.checkpoints()
    lines = timings(ctx)["lines"]
    known = list(dict.fromkeys(str(l.get("chunk", "")) for l in lines))
    unknown = [c for c in ctx.args.chunk if c not in known]
    if unknown:
        raise InputError(f"--chunk {', '.join(unknown)}: story.wav has no such chunk; its chunks are {', '.join(known)}.")
    previous = store.entries().get("retakes")
    fps = chunk_fingerprints(ctx.pipeline_dir)
    # Retakes already spent on the current version of each chunk (an edited line starts afresh).
    spent = {key: int(v["attempts"]) for key, v in (previous.data.get("chunks", {}) if previous else {}).items()
             if v.get("fingerprint") == fps.get(key)}
    for chunk in ctx.args.chunk:
        spent[chunk] = 0  # asked for by name: a fresh budget
    forced = list(ctx.args.chunk)
    rounds: list[dict[str, Any]] = []
    scripts_dir = ctx.code_dir / "scripts"
    chunk_size = chunk_size_of(lines)
    while True:
        todo = [c for c in dict.fromkeys(forced + report.failing_chunks()) if spent.get(c, 0) < limit]
        forced = []
        if not todo:
            break
        failing = [str(c.line) for c in report.failed if c.chunk in todo]
        ctx.say(f"retake {len(rounds) + 1}: regenerating chunk(s) {', '.join(todo)}"
                + (f" for failing line(s) {', '.join(failing)}" if failing else " as asked")
                + f"; attempt {', '.join(f'{c}: {spent.get(c, 0) + 1}/{limit}' for c in todo)}")
        forget_chunks(ctx.pipeline_dir, todo)
        run_step(scripts_dir, "2.story.py", "--chunk-size", str(chunk_size))
        run_step(scripts_dir, "3.transcribe.py")
        for chunk in todo:
            spent[chunk] = spent.get(chunk, 0) + 1
        report = check(ctx)
        fps = chunk_fingerprints(ctx.pipeline_dir)
        rounds.append({"round": len(rounds) + 1, "chunks": todo, "failing_after": report.failing_chunks()})
        store.record("retakes", "retakes", data={
            "chunks": {c: {"fingerprint": fps.get(c, ""), "attempts": n} for c, n in spent.items()},
            "rounds": rounds,
        })
        ctx.say(f"after retake {len(rounds)}: {summary(report)}")
        if report.failed:
            ctx.say(format_table(report, only_failed=True))
    if not rounds:
        spent_out = [c for c in report.failing_chunks() if spent.get(c, 0) >= limit]
        ctx.say("nothing to retake" + (f": chunk(s) {', '.join(spent_out)} already had {limit} retake(s)" if spent_out else ""))
    return report


def main(ctx: ScriptContext) -> None:
    if not 0.0 <= ctx.settings.QUALITY_THRESHOLD <= 1.0:
        raise ConfigError(f"QUALITY_THRESHOLD is {ctx.settings.QUALITY_THRESHOLD}; use a similarity between 0 and 1 (seed 0.80).")
    if ctx.settings.QUALITY_MAX_RETAKES < 0:
        raise ConfigError(f"QUALITY_MAX_RETAKES is {ctx.settings.QUALITY_MAX_RETAKES}; use 0 or more (default 2).")
    if ctx.args.chunk and not ctx.args.retake:
        raise ConfigError("--chunk names chunks to regenerate, so it needs --retake too.")
    report = check(ctx)
    ctx.say(format_table(report))
    if ctx.args.retake:
        report = retake(ctx, report)
    ctx.checkpoints().retain_only(["report", "retakes"])
    if heard_nothing(report):
        ctx.say("note: the transcript is the story text timed by the TTS (no Whisper), so every line passes; "
                "install Whisper (pip install -e .[whisper]) for a real check.")
    ctx.say(f"report: {ctx.output_dir / REPORT_FILE}")
    leftover = report.failing_chunks()
    if leftover:
        lines = ", ".join(str(c.line) for c in report.failed)
        ctx.say(f"still failing: line(s) {lines} in chunk(s) {', '.join(leftover)}. To speak them again: "
                f"cd {ctx.pipeline_dir / 'scripts'} && {redo_command(leftover)}  "
                f"(or reword those lines in input/1.story.txt and run 2.story.py).")
        if ctx.args.strict:
            raise JobError(f"{len(report.failed)} line(s) failed the quality check (see {REPORT_FILE}); "
                           f"run `{redo_command(leftover)}` or reword them, then check again.")
    if ctx.args.strict and heard_nothing(report):
        raise strict_without_hearing()


if __name__ == "__main__":
    script.run(main)
