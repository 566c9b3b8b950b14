"""Chaos harness: run the overnight chain, cut its power at random moments, check what survives.

Why a harness of its own: a "power cut" must hit every process of the run at once. The
orchestrator starts each script in a session of its own (so Ctrl+C reaches it only through the
orchestrator), hence a SIGKILL of the orchestrator's process group alone would leave the
running script alive, writing on. `power_cut` freezes the whole tree first (nothing can
start a new process or finish a write after the freeze), then SIGKILLs every process group
in it, which is what a machine losing power does to the files.

What is compared after the chain finally finishes is everything a user keeps: the inputs the
steps write and every output, against an uninterrupted run of an identical project.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.fakes.llm_helpers import free_port
from tests.support.project import copy_pipeline, env_for

PIPELINES = ("gen.audio", "gen.image", "gen.video")

# Short, but every step has real work: four speakers (narrator + three characters), three
# locations, five scenes over three parts (chapters), two locations shared by two scenes each.
STORY = """\
[narrator] Fog hid the lighthouse on Gull Point.
(scene_1.1) {{loc_1, a stone lighthouse on a rocky point, grey sea, fog}}, {Autumn evening, fog}; ((female_keeper_niece_ada)){Determined}, {Standing in a rowing boat}{Tying the rope};
[female_keeper_niece_ada] The lamp is dark, Bram.
(scene_1.2) {{loc_1}}, {Autumn evening, fog}; ((female_keeper_niece_ada)){Worried}, {Looking up}{Shading her eyes}; ((male_fisherman_bram)){Gruff}, {On the jetty}{Holding a lantern};
[male_fisherman_bram] Take my lantern, Ada.
(scene_2.1) {{loc_2, the lamp room at the top of the lighthouse, a great glass lens, rain on the windows}}, {Night, rain}; ((male_keeper_silas)){Weary}, {Sitting at the chart table}{Turning a logbook};
[male_keeper_silas] I put it out myself, child.
(scene_2.2) {{loc_2}}, {Night, rain}; ((female_keeper_niece_ada)){Shocked}, {In the doorway}{Setting the lantern down}; ((male_keeper_silas)){Calm}, {At the table}{Pointing at the logbook};
[narrator] At dawn the smugglers were caught.
(scene_3.1) {{loc_3, a small harbour at dawn, fishing boats, calm water}}, {Dawn, calm}; ((male_fisherman_bram)){Excited}, {Running along the quay}{Waving his cap};
"""

_WORDS = "a weathered figure in a dark wool coat stands beside warm lamplight with steady hands and calm eyes".split()
# The fake's own derived answers pass every other step's validation; these prompts want long
# prose, a camera move or hex colours (the asset library's style bible), which a derived sentence is not.
LLM_ANSWERS = [
    {"contains": "This picture is", "answer": "The figures shift gently while fog drifts past. The camera pans slowly to the left."},
    {"contains": "Turn these attributes of the character", "answer": " ".join((_WORDS * 10)[:80]) + "."},
    {"contains": "Turn these attributes of the location", "answer": " ".join((_WORDS * 10)[:60]) + "."},
    {"contains": "Write the style bible", "answer": {"palette": ["#5b6770", "#d9d2c5", "#2f3b44"], "lens": "35 mm",
                                                     "lighting": "soft fog light", "mood": "quiet suspense"}},
]

# Small pictures and few, short Shorts keep a whole run near half a minute on 2 cores; the
# published sizes (final.mp4, final_sd.mp4 at 1280x720, Shorts at 1080x1920) are fixed.
# CHUNK_SIZE and SFX_BATCH_SIZE are small so the TTS and the sound-effect questions are
# several checkpointed items each, i.e. places where a kill can land between items.
SETTINGS = dict(
    CHUNK_SIZE="2", SFX_BATCH_SIZE="2", SHORTS_VARIATIONS="1", SHORTS_SECONDS="4",
    VIDEO_WIDTH="256", VIDEO_HEIGHT="144", IMAGE_WIDTH="320", IMAGE_HEIGHT="180",
    CHARACTER_WIDTH="160", CHARACTER_HEIGHT="240", SLIDESHOW_WIDTH="320", SLIDESHOW_HEIGHT="180",
    LM_STUDIO_MODEL="auto", MODEL_MOTION_GENERATION="auto",
)

# What the orchestrator and the checkpoints write for themselves (timestamps, durations, pids):
# compared by their meaning (state items) or not at all (logs, the morning report).
_OWN = ("log.txt", "output/report.md", "output/report.html", "output/report.json")


def make_project(root: Path) -> Path:
    """gen.audio (with STORY), gen.image and gen.video side by side in root; returns gen.video."""
    root.mkdir(parents=True, exist_ok=True)
    copy_pipeline(root, "gen.audio", story=STORY)
    copy_pipeline(root, "gen.image")
    return copy_pipeline(root, "gen.video")


def chain_env(root: Path, llm_url: str) -> dict[str, str]:
    """Offline media (PIPELINE_ENGINE=offline), LLM text from the fake (PIPELINE_TEXT_ENGINE=llm)."""
    return env_for(PIPELINE_ENGINE="offline", PIPELINE_TEXT_ENGINE="llm", LM_STUDIO_BASE_URL=llm_url,
                   COMFYUI_BASE_URL=f"http://127.0.0.1:{free_port()}", COMFYUI_DIR=str(root / "no-comfyui"),
                   LM_STUDIO_CMD=str(root / "no-lms"), **SETTINGS)


def start_chain(pipeline: Path, env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    """`python generate.py ARGS` in pipeline, as the leader of a new process group."""
    handle = open(log, "ab")
    try:
        return subprocess.Popen([sys.executable, "generate.py", *args], cwd=pipeline, env=env,
                                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        handle.close()  # the child has its own descriptor


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def power_cut(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGKILL the run and every process it started, all at one instant; returns how many died.

    Freeze (SIGSTOP) until the tree stops growing, then SIGKILL each process group and each
    process: a frozen process cannot fork or write, so no survivor finishes anything later.
    """
    frozen: dict[int, psutil.Process] = {}
    for _ in range(20):
        new = [p for p in _tree(proc.pid) if p.pid not in frozen]
        if not new:
            break
        for p in new:
            try:
                p.suspend()
            except psutil.Error:
                pass
            frozen[p.pid] = p
    groups = set()
    for p in frozen.values():
        try:
            groups.add(os.getpgid(p.pid))
        except OSError:
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    for p in frozen.values():
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait(timeout=timeout)
    others = [p for p in frozen.values() if p.pid != proc.pid]
    # Dead is enough: an orphan stays a zombie until whatever adopted it reaps it, which some
    # container inits do only now and then (psutil.wait_procs would wait for that).
    assert wait_for(lambda: all(_dead(p) for p in others), timeout), "a process of the run survived the power cut"
    return len(frozen)


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop_chain(proc: subprocess.Popen[bytes] | None) -> None:
    """Always-run cleanup: whatever is left of a run dies."""
    if proc is not None and proc.poll() is None:
        power_cut(proc)


def wait_chain(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        power_cut(proc)
        raise


# ---------------------------------------------------------------- what a kill may leave


# Scratch folders a step makes with tempfile.TemporaryDirectory inside an output folder; a
# SIGKILL skips their clean-up: `.video.XXXXXXXX` (common/video/encode.py, e.g. in output/shorts/),
# `.sfx.`, `.concat.`, `.espeak.` (dotted, beside the file they make), `concat-` (slideshow.py),
# and `speech-` (common/offline/engine.py).
_SCRATCH = re.compile(r"^(\.[a-z]+\.|speech-|concat-)[a-z0-9_]{8}$")


def is_temp(path: Path) -> bool:
    """common.state.atomic's temp names (`.<stem>.<random>.tmp<suffix>`), or a file in a scratch folder."""
    if path.name.startswith(".") and ".tmp" in path.name:
        return True
    return any(_SCRATCH.match(part) for part in path.parts)


def files_of(root: Path) -> dict[str, Path]:
    """Every file of the three pipelines' input/ and output/ folders, by path relative to root."""
    found: dict[str, Path] = {}
    for name in PIPELINES:
        for part in ("input", "output"):
            base = root / name / part
            if base.is_dir():
                for path in base.rglob("*"):
                    if path.is_file():
                        found[path.relative_to(root).as_posix()] = path
    return found


def check_after_kill(root: Path) -> tuple[list[str], list[str]]:
    """(problems, temp files) right after a power cut.

    Problems: a state file or JSON output that does not parse (a torn write), a state file
    whose done items name missing or empty files. Temp files are legitimate leftovers of an
    interrupted atomic write; the caller checks they never end up among the outputs.
    """
    problems: list[str] = []
    temps: list[str] = []
    for rel, path in sorted(files_of(root).items()):
        if is_temp(path):
            temps.append(rel)
            continue
        if path.suffix != ".json":
            continue
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{rel} does not parse: {exc}")
            continue
        if rel.endswith(".state.json") and "/tracking/" in rel and isinstance(value, dict) and "items" in value:
            pipeline = root / rel.split("/", 1)[0]
            for key, item in value["items"].items():
                if item.get("status") != "done":
                    continue
                for name in item.get("files", []):
                    target = pipeline / name
                    if not target.is_file() or target.stat().st_size == 0:
                        problems.append(f"{rel}: done item {key} names {name}, which is missing or empty")
    return problems, temps


# ---------------------------------------------------------------- comparing with the reference


def _state_items(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    items = value.get("items", {}) if isinstance(value, dict) else {}
    return {key: (item.get("status"), item.get("fingerprint"), sorted(item.get("files", [])))
            for key, item in items.items()}


def media_summary(path: Path) -> dict[str, Any]:
    """Duration, streams and frame/sample counts of an mp4, by demuxing and decoding it all."""
    import av  # noqa: PLC0415 - only the chaos test needs it here

    summary: dict[str, Any] = {"streams": []}
    with av.open(str(path)) as container:
        summary["duration_ms"] = round((container.duration or 0) / 1000)
        for stream in container.streams:
            ctx = stream.codec_context
            info: dict[str, Any] = {"type": stream.type, "codec": ctx.name}
            if stream.type == "video":
                info.update(width=ctx.width, height=ctx.height, pix_fmt=ctx.pix_fmt, rate=str(stream.average_rate))
            elif stream.type == "audio":
                info.update(sample_rate=ctx.sample_rate, channels=ctx.channels)
            info["frames"] = 0
            info["samples"] = 0
            summary["streams"].append(info)
        for packet in container.demux():
            info = summary["streams"][packet.stream.index]
            for frame in packet.decode():
                info["frames"] += 1
                info["samples"] += getattr(frame, "samples", 0) or 0
    return summary


# Running the reference twice showed every output byte-identical (mp4 included: x264, AAC and
# the muxer embed nothing random or dated here) except for text that names the project folder
# (storyboard.json, upload.manifest.json, review.html) and, in the review page, the times the
# page and each picture were made.
# So text is compared with those two things masked, everything else byte for byte.
TEXT = (".txt", ".srt", ".json", ".html", ".md", ".ass", ".csv")
_WHEN = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _normal(path: Path, root: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix in TEXT:
        for spelling in {str(root), str(root.resolve()), json.dumps(str(root))[1:-1]}:
            data = data.replace(spelling.encode("utf-8"), b"<PROJECT>")
        if path.suffix == ".html":
            data = _WHEN.sub(b"<TIME>", data)
    return data


def compare(reference: Path, chaos: Path, *, only_present: bool = False) -> list[str]:
    """Differences between the chaos run's files and the reference's (empty: the same).

    only_present: compare just the files the chaos project has (it ran part of the chain).
    """
    ref_files = {rel: p for rel, p in files_of(reference).items() if not is_temp(p) and not rel.endswith(_OWN)}
    got_files = {rel: p for rel, p in files_of(chaos).items() if not is_temp(p) and not rel.endswith(_OWN)}
    problems = []
    if only_present:
        ref_files = {rel: p for rel, p in ref_files.items() if rel in got_files}
    for rel in sorted(set(ref_files) | set(got_files)):
        if rel.endswith("orchestrator.state.json"):
            continue  # the run stamp: stats (mtimes) of files, which two projects never share
        if rel not in got_files:
            problems.append(f"{rel}: missing after the chaos run")
            continue
        if rel not in ref_files:
            problems.append(f"{rel}: not made by the reference run")
            continue
        a, b = ref_files[rel], got_files[rel]
        if rel.endswith(".state.json"):
            # Checkpoints hold when and how long; what must match is which items are done,
            # from which inputs (fingerprint), with which files.
            ref_items, got_items = _state_items(a), _state_items(b)
            if ref_items == got_items:
                continue
            problems.append(f"{rel}: checkpoint items differ: {ref_items} != {got_items}")
        elif _normal(a, reference) != _normal(b, chaos):
            detail = ""
            if a.suffix == ".mp4":  # say how they differ, for whoever reads the failure
                detail = f": {media_summary(a)} != {media_summary(b)}"
            problems.append(f"{rel}: bytes differ{detail}")
    return problems


# ---------------------------------------------------------------- LLM questions asked again


def chat_requests(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    rows = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r.get("path") == "/v1/chat/completions"]


def question_key(request: dict[str, Any]) -> str:
    """What makes two requests the same question, from what the fake records.

    The fake records the last user message (the question itself on a first ask) and the
    message count; a retry after a refused answer has more messages, so it is not confused
    with a first ask.
    """
    return json.dumps([request.get("model"), request.get("messages"), request.get("images"),
                       request.get("response_format"), request.get("last_user")])


@dataclass
class Runs:
    """Start times (time.time()) of the chaos runs and whether each was killed."""

    starts: list[float] = field(default_factory=list)
    killed: list[bool] = field(default_factory=list)

    def run_of(self, t: float) -> int:
        index = 0
        for i, start in enumerate(self.starts):
            if t >= start:
                index = i
        return index


@dataclass
class Accounting:
    asked: int
    distinct: int
    repeats: int
    explained: int
    rerun: int
    details: list[str]


def account(requests: list[dict[str, Any]], runs: Runs, in_flight: int) -> Accounting:
    """Questions asked again, minus those a kill explains.

    A repeat is explained when its previous asking was among the last `in_flight` questions of a
    run that was killed: those may have been on the wire, or answered but not yet checkpointed,
    at the instant of the power cut. Any other repeat is a finished job re-run.
    """
    by_run: dict[int, list[str]] = {}
    for request in requests:
        # By when the question came, not when it was answered: a killed run's last question may be
        # answered (and recorded) after the next run started.
        by_run.setdefault(runs.run_of(request.get("arrived", request["t"])), []).append(question_key(request))
    seen: Counter[str] = Counter()
    explained = rerun = 0
    details: list[str] = []
    for index in sorted(by_run):
        for key in by_run[index]:
            if seen[key]:
                previous = [i for i in by_run if i < index and key in by_run[i]]
                last = previous[-1] if previous else index
                tail = by_run[last][-in_flight:]
                if last < index and runs.killed[last] and key in tail:
                    explained += 1
                else:
                    rerun += 1
                    details.append(f"run {index} asked again (asked in run {last}): {json.loads(key)[-1][:120]!r}")
            seen[key] += 1
    total = sum(seen.values())
    return Accounting(total, len(seen), total - len(seen), explained, rerun, details)


def step_windows(log: Path) -> list[tuple[str, str]]:
    """(step, START or END) markers of log.txt, in order (to say where each kill landed)."""
    marks = []
    if log.is_file():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("===== START ") or line.startswith("===== END "):
                kind, rest = line[6:].split(" ", 1)
                marks.append((rest.split(" @ ", 1)[0].rsplit("/", 1)[-1], kind))
    return marks


def current_step(log: Path) -> str:
    marks = step_windows(log)
    if not marks:
        return "(start-up)"
    step, kind = marks[-1]
    return step if kind == "START" else f"after {step}"


def wait_for(predicate, timeout: float, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False

