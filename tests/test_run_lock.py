"""Issue 13, point 3: one run of a pipeline at a time, with real processes.

The second run stops at once naming the holder; `--status` still reads; a lock left by a dead
process is taken over; a script run on its own holds the lock, one run by generate.py joins it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

from common.run.lock import lock_path  # noqa: E402

pytestmark = pytest.mark.timeout(120)

STARTED = r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"

# A numbered script built like the real ones (common.run.runner.Script): it reports the lock it runs under.
LOCK_STEP = r'''
import json, os, sys
from common.run.runner import Script

script = Script(__file__, "report the run lock")


def main(ctx):
    record = json.loads((ctx.pipeline_dir / "output" / "run.lock").read_text())
    with open(os.environ["TEST_EVENTS"], "a") as fh:
        fh.write(json.dumps({"kind": "lock", "script": os.path.basename(__file__), "me": os.getpid(),
                             "holder": record["pid"], "joined": [m["pid"] for m in record["joined"]]}) + "\n")


script.run(main)
'''

HOLDER = r'''
import sys
from pathlib import Path
from common.run.lock import hold
with hold(Path(sys.argv[1]), "holder.py"):
    print("held", flush=True)
    sys.stdin.read()
'''


def env_for(tmp_path: Path, pipe: Path) -> dict[str, str]:
    env = S.service_env(tmp_path, engine="offline")
    env.update(TEST_EVENTS=str(pipe / "events.jsonl"), PYTHONPATH=str(S.REPO))
    return env


def generate(pipe: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(pipe / "generate.py"), *args], env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """Starts a process that holds a pipeline's lock until the test ends."""
    procs: list[subprocess.Popen] = []

    def start(pipe: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(pipe)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(S.REPO)))
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield start  # type: ignore[misc]
    for proc in procs:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_a_second_run_stops_at_once_naming_the_first_and_status_still_reads(tmp_path: Path) -> None:
    pipe = S.make_pipeline(tmp_path, ["1.slow.py", "2.after.py"], script_args={"1.slow.py": ["--sleep", "60"]})
    env = env_for(tmp_path, pipe)
    first = subprocess.Popen([sys.executable, str(pipe / "generate.py")], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        S.wait_for(lambda: any(e["kind"] == "sleeping" for e in S.events(pipe)), what="first run's step 1 working")
        second = generate(pipe, env)
        assert second.returncode == 8, second.stdout + second.stderr
        said = second.stderr.strip().splitlines()
        assert len(said) == 1 and said[0].startswith("error: another run of gen.test is in progress")
        assert f"pid {first.pid}" in said[0] and re.search(STARTED, said[0]), said[0]
        assert len(S.runs(pipe)) == 1  # the second run started no script
        status = generate(pipe, env, "--status")
        assert status.returncode == 0, status.stderr
        assert "1.slow.py" in status.stdout
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    assert not lock_path(pipe).exists()  # released when the run ends, even interrupted


def test_a_lock_left_by_a_dead_process_or_a_reused_pid_is_taken_over(tmp_path: Path) -> None:
    pipe = S.make_pipeline(tmp_path, ["1.quick.py"])
    env = env_for(tmp_path, pipe)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = lock_path(pipe)
    lock.parent.mkdir(parents=True)
    for pid, created in ((int(gone.stdout), 1_700_000_000.0), (os.getpid(), 1.0)):  # dead; alive but another process
        lock.write_text(json.dumps({"pid": pid, "created": created, "what": "generate.py",
                                    "since": "2026-01-01 03:00:00", "joined": []}))
        done = generate(pipe, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"run lock: took over {lock} from generate.py (pid {pid}, started 2026-01-01 03:00:00)" in done.stdout
        assert not lock.exists()
    # The lock is no file of the project: the second run is still a no-op by the run stamp.
    assert len(S.runs(pipe)) == 1 and "1.quick.py: up to date since" in done.stdout


def test_a_script_alone_holds_the_lock_and_under_generate_joins_it(tmp_path: Path, holder) -> None:
    pipe = S.make_pipeline(tmp_path, ["1.lock.py"])
    (pipe / "scripts" / "1.lock.py").write_text(LOCK_STEP, encoding="utf-8")
    env = env_for(tmp_path, pipe)

    run = subprocess.Popen([sys.executable, str(pipe / "generate.py")], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 0, out
    seen = [e for e in S.events(pipe) if e["kind"] == "lock"]
    assert seen[-1]["holder"] == run.pid and seen[-1]["joined"] == [seen[-1]["me"]]

    alone = subprocess.run([sys.executable, "1.lock.py"], cwd=pipe / "scripts", env=env, capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert alone.returncode == 0, alone.stderr
    seen = [e for e in S.events(pipe) if e["kind"] == "lock"]
    assert seen[-1]["holder"] == seen[-1]["me"] and seen[-1]["joined"] == []
    assert not lock_path(pipe).exists()

    other = holder(pipe)  # a run in another terminal holds it now
    refused = subprocess.run([sys.executable, "1.lock.py"], cwd=pipe / "scripts", env=env, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert refused.returncode == 8, refused.stdout + refused.stderr
    assert f"(holder.py, pid {other.pid}, " in refused.stderr and "Traceback" not in refused.stderr
    assert len([e for e in S.events(pipe) if e["kind"] == "lock"]) == 2
    # A stray GEN_RUN_LOCK naming some other process does not let a script in either.
    stray = subprocess.run([sys.executable, "1.lock.py"], cwd=pipe / "scripts", capture_output=True, text=True,
                           env=dict(env, GEN_RUN_LOCK=f"{os.getpid()}:{psutil.Process().create_time()!r}"),
                           timeout=60, stdin=subprocess.DEVNULL)
    assert stray.returncode == 8, stray.stdout + stray.stderr


def test_a_script_of_a_killed_run_keeps_the_lock_until_it_ends(tmp_path: Path) -> None:
    pipe = S.make_pipeline(tmp_path, ["1.lock.py"])
    slow = LOCK_STEP.replace("def main(ctx):\n", "def main(ctx):\n    import time\n    open(os.environ['TEST_EVENTS'], 'a').write(json.dumps({'kind': 'sleeping', 'script': 'x'}) + '\\n')\n    deadline = time.monotonic() + 60\n    while time.monotonic() < deadline and not os.path.exists(os.environ['TEST_EVENTS'] + '.go'):\n        time.sleep(0.05)\n")
    (pipe / "scripts" / "1.lock.py").write_text(slow, encoding="utf-8")
    env = env_for(tmp_path, pipe)
    run = subprocess.Popen([sys.executable, str(pipe / "generate.py")], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = None
    try:
        S.wait_for(lambda: any(e["kind"] == "sleeping" for e in S.events(pipe)), what="the step working")
        record = json.loads(lock_path(pipe).read_text())
        child = record["joined"][0]["pid"]
        run.kill()  # kill -9: no clean-up; the step (its own process group) lives on
        run.wait(10)
        again = generate(pipe, env)
        assert again.returncode == 8, again.stdout + again.stderr
        assert f"(1.lock.py, pid {child}, " in again.stderr
    finally:
        Path(env["TEST_EVENTS"] + ".go").write_text("go")
        if child is not None:
            S.wait_for(lambda: S.pid_gone(child), what="the orphaned step ending")
    assert not lock_path(pipe).exists()
    assert generate(pipe, env).returncode == 0
