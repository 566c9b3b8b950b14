"""Benchmarks, measured in one run on this machine: `python bench/run.py [name ...]`.

Prints one `name value unit target` line per benchmark and exits non-zero if a target is
missed. Not part of the test suite: timings on shared machines are noisy, so they are
measured here, several times, and the median is reported.
"""
from __future__ import annotations

import argparse
import os
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


@benchmark("noop_rerun_gen_audio")
def noop_rerun(work: Path) -> Result:
    """A finished gen.audio pipeline run again: every step must see its checkpoints and stop."""
    pipeline = work / "gen.audio"
    for part in ("scripts", "workflow", "voices", "input"):
        shutil.copytree(REPO / "gen.audio" / part, pipeline / part,
                        ignore=shutil.ignore_patterns("__pycache__", "*.speakers.txt", "9.*", "10.*", "12.*"))
    shutil.copy2(REPO / "gen.audio" / "generate.py", pipeline)
    env = _env(PIPELINE_ENGINE="offline")
    run = lambda: subprocess.run([sys.executable, "generate.py"], cwd=pipeline, env=env, check=True,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), "s", 2.0, "<="


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
    from common.services import ComfyUIService
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
