"""Benchmarks, measured in one run on this machine: `python bench/run.py [name ...]`.

Prints one `name value unit target` line per benchmark and exits non-zero if a target is
missed. Not part of the test suite: timings on shared machines are noisy, so they are
measured here, several times, and the median is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

Result = tuple[float, str, float, str]  # value, unit, target, comparison ('<=' or '>=')
BENCHMARKS: dict[str, Callable[[Path], Result]] = {}


def benchmark(name: str) -> Callable[[Callable[[Path], Result]], Callable[[Path], Result]]:
    def wrap(fn: Callable[[Path], Result]) -> Callable[[Path], Result]:
        BENCHMARKS[name] = fn
        return fn

    return wrap


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "COMFYUI_", "LM_STUDIO_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _gen_audio(work: Path, story: str | None = None) -> Path:
    """A copy of gen.audio (scripts, workflows, voices) with the sample story, or `story`."""
    pipeline = work / "gen.audio"
    for part in ("scripts", "workflow", "voices"):
        shutil.copytree(REPO / "gen.audio" / part, pipeline / part, ignore=shutil.ignore_patterns("__pycache__"))
    (pipeline / "input").mkdir()
    if story is None:
        shutil.copy2(REPO / "gen.audio" / "input" / "1.story.txt", pipeline / "input")
    else:
        (pipeline / "input" / "1.story.txt").write_text(story, encoding="utf-8")
    shutil.copy2(REPO / "gen.audio" / "generate.py", pipeline)
    return pipeline


def _generate(pipeline: Path, *args: str) -> str:
    """`python generate.py ARGS` offline; its output (the scripts' output between START/END markers)."""
    return subprocess.run([sys.executable, "generate.py", *args], cwd=pipeline, env=_env(PIPELINE_ENGINE="offline"),
                          check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout


@benchmark("noop_rerun_gen_audio")
def noop_rerun(work: Path) -> Result:
    """A finished gen.audio pipeline run again: every step must see its checkpoints and stop."""
    pipeline = _gen_audio(work)
    _generate(pipeline)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        _generate(pipeline)
        times.append(time.perf_counter() - started)
    return statistics.median(times), "s", 2.0, "<="


_ITEMS = re.compile(r"^\[(?P<label>[^\]]+)\] (?P<items>\d+) items: (?P<made>\d+) made", re.M)


def _made(output: str) -> dict[str, int]:
    """Items made per ctx.each label, from the `[label] N items: M made, ...` lines of a run."""
    made: dict[str, int] = {}
    for match in _ITEMS.finditer(output):
        made[match["label"]] = made.get(match["label"], 0) + int(match["made"])
    return made


def _stats(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@benchmark("touched_rerun_gen_audio")
def touched_rerun(work: Path) -> Result:
    """A finished gen.audio run again after its story file was touched (same text, new mtime): the run
    stamp no longer vouches for it, so all twelve scripts start and must each find, in their own
    checkpoints, that nothing is to be made. Fails unless 12 scripts ran and none made or rewrote anything."""
    pipeline = _gen_audio(work)
    labels = set(_made(_generate(pipeline)))  # every kind of checkpointed item the pipeline has
    outputs = pipeline / "output"
    # Not outputs: the checkpoints, the morning report and 12.youtube.py's dry-run manifest (what it would send,
    # written on every run until YouTube is set up).
    before = {k: v for k, v in _stats(outputs).items()
              if not k.startswith(("tracking/", "report.")) and k != "upload.manifest.json"}
    times = []
    for _ in range(3):
        os.utime(pipeline / "input" / "1.story.txt")
        started = time.perf_counter()
        output = _generate(pipeline)
        times.append(time.perf_counter() - started)
        started_scripts, checked = output.count("===== START "), _made(output)
        made = {label: n for label, n in checked.items() if n}
        if started_scripts != 12 or set(checked) != labels or made:
            raise RuntimeError(f"expected 12 scripts each finding everything done; {started_scripts} ran, checked "
                               f"{len(checked)} of {len(labels)} kinds of item, made: {made}")
    after = {k: v for k, v in _stats(outputs).items() if k in before}
    if after != before:
        raise RuntimeError(f"a touched rerun rewrote {sorted(k for k in before if after.get(k) != before[k])}")
    return statistics.median(times), "s", 5.0, "<="


def long_story(seconds: float) -> str:
    """The sample story's lines (no scene lines), numbered and repeated until about `seconds` are spoken
    (the offline voice says ~17 characters a second, pauses included)."""
    from common.formats.story import read_story

    sample = read_story(REPO / "gen.audio" / "input" / "1.story.txt").utterances
    lines, chars, n = [], 0, 0
    while chars < 17 * seconds:
        utterance = sample[n % len(sample)]
        lines.append(f"[{utterance.speaker}] {utterance.text} ({n // len(sample) + 1})")
        chars, n = chars + len(lines[-1]), n + 1
    return "\n".join(lines) + "\n"


def _edit_and_rerun(pipeline: Path, edited: int) -> tuple[float, dict[str, int]]:
    """Edit one word of story line `edited` (0-based), run steps 1-3 again: (seconds, items made per label).
    Raises unless that line's speech chunk alone was spoken again (and story.wav joined again)."""
    story_file, chunks = pipeline / "input" / "1.story.txt", pipeline / "output" / "story"
    state_file = pipeline / "output" / "tracking" / "2.story.state.json"
    lines = story_file.read_text(encoding="utf-8").splitlines()
    lines[edited] = lines[edited].replace("(", "(edited ", 1)
    before = _stats(chunks)
    fingerprints = {k: v["fingerprint"] for k, v in json.loads(state_file.read_text())["items"].items()}
    story_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    started = time.perf_counter()
    output = _generate(pipeline, "--until", "3.transcribe")
    took = time.perf_counter() - started
    after = _stats(chunks)
    changed = {k for k, v in json.loads(state_file.read_text())["items"].items() if fingerprints.get(k) != v["fingerprint"]}
    rewritten = sorted(k for k in after if before.get(k) != after[k])
    chunk = next(k for k in fingerprints if "_" in k and int(k.split("_")[0]) <= edited + 1 <= int(k.split("_")[1]))
    made = _made(output)
    if changed != {chunk, "story.wav"} or rewritten != [f"{chunk}.wav"] or made.get("story") != 1:
        raise RuntimeError(f"line {edited + 1} edited: expected chunk {chunk} alone redone; checkpoints changed: "
                           f"{sorted(changed)}, chunk files rewritten: {rewritten}, made: {made}")
    return took, made


@benchmark("edit_one_line_2h_story")
def edit_one_line(work: Path) -> Result:
    """Steps 1-3 of a two-hour story (offline), then one word of one line edited and the steps run
    again: the median seconds of three such reruns (a line a quarter, half and three quarters in).
    Fails unless each time exactly that line's speech chunk was spoken again and, of the rest, only
    what is made from the story text or from story.wav (the join, the line timings, the transcript,
    the subtitle files; the summary and chapters of that part) was redone."""
    pipeline = _gen_audio(work, long_story(2 * 3600.0))
    first = time.perf_counter()
    _generate(pipeline, "--until", "3.transcribe")
    first = time.perf_counter() - first
    count = len((pipeline / "input" / "1.story.txt").read_text(encoding="utf-8").splitlines())
    times, made = [], {}
    for edited in (count // 4, count // 2, 3 * count // 4):
        took, made = _edit_and_rerun(pipeline, edited)
        times.append(took)
    spoken = json.loads((pipeline / "output" / "story.timings.json").read_text())["duration"]
    chunks = len(list((pipeline / "output" / "story").glob("*.wav")))
    print(f"  {count} lines, {spoken / 3600:.2f} h spoken, {chunks} chunks; first run {first:.0f} s; each edit "
          f"redid {', '.join(f'{label} {n}' for label, n in made.items() if n)}; reruns "
          f"{', '.join(f'{t:.1f}' for t in times)} s", file=sys.stderr)
    return statistics.median(times), "s", 10.0, "<="


_LATE_SERVER = textwrap.dedent(
    """
    import http.server, sys, time
    port = int(sys.argv[sys.argv.index("--port") + 1])
    time.sleep(1.0)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"system": {}, "devices": []}'
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a): pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    open("ready_at", "w").write(repr(time.time()))
    server.serve_forever()
    """
)


@benchmark("service_readiness_delay")
def readiness_delay(work: Path) -> Result:
    """Seconds between a started ComfyUI answering and the orchestrator's service noticing it."""
    from common.services.comfyui.service import ComfyUIService
    from tests.fakes.llm_helpers import free_port

    comfy = work / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text(_LATE_SERVER)
    delays = []
    for _ in range(5):
        (comfy / "ready_at").unlink(missing_ok=True)
        service = ComfyUIService(f"http://127.0.0.1:{free_port()}", comfy, sys.executable, work / "comfy.log",
                                 say=lambda m: None)
        try:
            service.ensure_running()
            noticed = time.time()
            delays.append(noticed - float((comfy / "ready_at").read_text()))
        finally:
            service.stop()
    return max(delays), "s", 0.5, "<="


_MIX_DRIVER = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from common.audio.mix import mix_story
    work = Path(sys.argv[1])
    result = mix_story(work / "story.wav", work / "final.wav", sfx=work / "sfx.wav", music=work / "music.wav",
                       say=lambda m: None)
    print(json.dumps({"self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                      "summary": result.summary()}))
    """
)


def _write_blocks(path: Path, seconds: float, rate: int, block: Callable[[int, int], "object"]) -> None:
    """A mono 16-bit WAV written one 10-s block at a time: `block(start, n)` gives float samples."""
    import wave

    import numpy as np

    total = int(seconds * rate)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        for start in range(0, total, 10 * rate):
            n = min(10 * rate, total - start)
            samples = np.clip(np.asarray(block(start, n), dtype=np.float32), -1.0, 1.0)
            out.writeframes((samples * 32767.0).astype("<i2").tobytes())


def synth_story_inputs(work: Path, seconds: float, rate: int = 44100) -> None:
    """Speech-like story.wav (syllable-modulated noise bursts with pauses), a sparse sfx.wav and a music loop."""
    import numpy as np

    rng = np.random.default_rng(7)

    def speech(start: int, n: int):
        t = np.arange(n, dtype=np.float32) / rate
        syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
        phrase = (np.sin(2 * np.pi * 0.3 * (t + start / rate)) > -0.3).astype(np.float32)  # ~65% talking
        out = rng.standard_normal(n, dtype=np.float32) * syllables * phrase * 0.1
        # A plosive-like peak every 5 s, as real speech has: at -14 LUFS its peaks would pass
        # -1 dBTP, so the mix takes loudnorm's dynamic mode, the heavier path.
        for at in range(rate, n - 200, 5 * rate):
            out[at:at + 200] += 0.8 * np.hanning(200).astype(np.float32)
        return out

    def sfx(start: int, n: int):
        out = np.zeros(n, dtype=np.float32)
        if (start // (10 * rate)) % 3 == 0:  # a 1.5-s effect every 30 s
            k = min(n, int(1.5 * rate))
            out[:k] = np.sin(2 * np.pi * 330.0 * np.arange(k) / rate) * np.hanning(k) * 0.3
        return out

    _write_blocks(work / "story.wav", seconds, rate, speech)
    _write_blocks(work / "sfx.wav", seconds, rate, sfx)
    _write_blocks(work / "music.wav", 30.0, rate,
                  lambda s, n: 0.2 * np.sin(2 * np.pi * 220.0 * np.arange(s, s + n) / rate))


def mix_peak_memory_mb(work: Path, seconds: float) -> float:
    """Peak RSS (MB) of a mix of `seconds` of synthetic story: the Python process plus its ffmpeg children.

    Sampled as the process tree's summed RSS, and bounded from above by the kernel's own
    maxima (the driver's peak plus its largest child's): the larger of the two is reported.
    """
    import json

    import psutil

    synth_story_inputs(work, seconds)
    proc = subprocess.Popen([sys.executable, "-c", _MIX_DRIVER, str(work)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sampled = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            sampled = max(sampled, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the mix failed: {err.strip()[-500:]}")
    report = json.loads(out.strip().splitlines()[-1])
    kernel = (report["self_kb"] + report["children_kb"]) * 1024
    print(f"  mix of {seconds:.0f} s: {report['summary']}; peak RSS sampled {sampled / 2**20:.0f} MB, "
          f"kernel: driver {report['self_kb'] / 1024:.0f} MB + largest ffmpeg {report['children_kb'] / 1024:.0f} MB",
          file=sys.stderr)
    return max(sampled, kernel) / 2**20


@benchmark("combine_peak_memory_2h")
def combine_peak_memory(work: Path) -> Result:
    """8.combine.py's mix of a two-hour story (speech, sparse SFX, looped music) must stream, not load."""
    return mix_peak_memory_mb(work, 2 * 3600.0), "MB", 300.0, "<="


@benchmark("subtitles_2h_story")
def subtitles_2h_story(work: Path) -> Result:
    """3.transcribe.py's cue building for a two-hour story (~1,800 lines at 15 characters/s)."""
    import random

    from common.audio.subtitles import CueRules, build_cues, to_timeline, words_from_timings

    rng = random.Random(7)
    vocabulary = ("the", "keeper", "lamp", "extraordinarily", "a", "harbour", "night,", "fog.", "said", "Ada?")
    lines, at = [], 0.0
    while at < 7200:
        text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(3, 60)))
        end = at + len(text) / 15
        lines.append({"line": len(lines) + 1, "text": text, "start": at, "end": end})
        at = end + 0.3
    words = words_from_timings(lines)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        to_timeline(build_cues(words, CueRules(), total=at), at)
        times.append(time.perf_counter() - started)
    return statistics.median(times), "s", 3.0, "<="


@benchmark("sfx_queue_efficiency")
def sfx_queue_efficiency(work: Path) -> Result:
    """7.sfx.py against the fake ComfyUI (one job at a time, like a GPU server; 0.5 s per job, 12
    effects): wall time of the job phase / the time the server spent on jobs. 1.0 = it never
    waited for our next job. From the fake's own record: a job starts when it is queued or when
    the one before it ends, whichever is later, and ends at its job_done event."""
    from common.media import ffmpeg as media
    from tests.fakes import start_fake_comfyui

    pipeline = work / "gen.audio"
    for part in ("scripts", "workflow"):
        shutil.copytree(REPO / "gen.audio" / part, pipeline / part, ignore=shutil.ignore_patterns("__pycache__"))
    (pipeline / "input").mkdir()
    effects = [f"Bench effect number {n}, a soft rustle" for n in range(1, 13)]
    (pipeline / "input" / "4.sfx.txt").write_text("".join(f"0.500: Silence\n2.000: {e}\n" for e in effects))
    (pipeline / "output").mkdir()
    media.write_wav(pipeline / "output" / "story.wav", media.silence(2.5 * len(effects), 44100), 44100)
    with start_fake_comfyui(work, job_seconds=0.5) as comfy:
        env = _env(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=comfy.url, LM_STUDIO_BASE_URL="http://127.0.0.1:9/v1")
        subprocess.run([sys.executable, "7.sfx.py"], cwd=pipeline / "scripts", env=env, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        events = comfy.record_events()
    queued = {e["prompt_id"]: e["time"] for e in events if e["event"] == "prompt"}
    done = sorted((e["time"], e["prompt_id"]) for e in events if e["event"] == "job_done")
    if len(done) != len(effects):
        raise RuntimeError(f"expected {len(effects)} jobs, the fake ran {len(done)}")
    busy, previous_end = 0.0, None
    for ended, prompt_id in done:
        started = queued[prompt_id] if previous_end is None else max(queued[prompt_id], previous_end)
        busy += ended - started
        previous_end = ended
    wall = done[-1][0] - min(queued.values())
    return wall / busy, "ratio", 1.02, "<="


@benchmark("kenburns_speed")
def kenburns_speed(work: Path) -> Result:
    """The offline animation's Ken Burns render at 1024x576@24, as a multiple of realtime.

    A storyboard card is the real input (flat colour and text, what the offline engine moves
    over); a zoom and a pan are each timed three times, and the slower move's median counts.
    """
    from common.offline import cards, kenburns

    still = cards.scene_card("scene_1.1", "{{loc_1, a weathered stone lighthouse on a rocky point}}, {Autumn evening}",
                             [("female_keeper_niece_ada", "Determined, Standing in the boat, Tying the rope")],
                             work / "still.png", 1280, 720)
    seconds = 10.0
    multiples = []
    for move in ("zoom_in", "pan_left"):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            kenburns.ken_burns(still, work / "clip.mp4", seconds=seconds, width=1024, height=576, fps=24, move=move)
            times.append(time.perf_counter() - started)
        multiples.append(seconds / statistics.median(times))
    return min(multiples), "x realtime", 5.0, ">="


@benchmark("final_mp4_encode_speed")
def final_mp4_encode_speed(work: Path) -> Result:
    """final.mp4 from a 10-minute final.wav (48 kHz stereo, as 8.combine.py writes it) and a
    1280x720 thumbnail, as a multiple of realtime: audio seconds / wall seconds, AAC included.

    The picture has texture (blurred noise, shapes), so the one keyframe costs what a real
    thumbnail's would; the median of three encodes counts.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    from common.media.ffmpeg import write_wav
    from common.video.final import encode_still

    rate, seconds = 48000, 600.0
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(11)
    voice = 0.25 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    left, right = voice + 0.02 * rng.standard_normal(t.size), voice + 0.02 * rng.standard_normal(t.size)
    write_wav(work / "final.wav", np.stack([left, right], axis=1).astype(np.float32), rate)
    del t, voice, left, right
    noise = (rng.random((90, 160, 3)) * 255).astype("uint8")
    picture = Image.fromarray(noise).resize((1280, 720), Image.BICUBIC).filter(ImageFilter.GaussianBlur(4))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((80, 420, 1200, 640), fill=(20, 20, 30))
    draw.ellipse((900, 60, 1180, 340), fill=(230, 190, 60))
    picture.save(work / "thumbnail.png")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        encode_still(work / "thumbnail.png", work / "final.wav", work / "final.mp4", size=(1280, 720))
        times.append(time.perf_counter() - started)
    return seconds / statistics.median(times), "x realtime", 20.0, ">="


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    names = args.names or list(BENCHMARKS)
    missed = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            value, unit, target, cmp = BENCHMARKS[name](Path(tmp))
        ok = value <= target if cmp == "<=" else value >= target
        print(f"{name} {value:.3f} {unit} {cmp}{target:g}{'' if ok else '  MISSED'}", flush=True)
        if not ok:
            missed.append(name)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
