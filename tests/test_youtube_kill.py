"""12.youtube.py SIGKILLed at random moments against a fake YouTube: never a second video, thumbnail or track.

The kills are planned from the fake server's own record (one JSON line per thing it did), never
from sleeps: a run is killed the moment the server has recorded the n-th event of that run (n
drawn from a seeded generator), i.e. the server has opened the session, stored a chunk, created
the video, set the thumbnail or added the track, and the script may or may not have heard the
answer: killed at `video_created` it has not checkpointed it, which is exactly the state a kill
between YouTube's final answer and the "done" checkpoint leaves.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.project import copy_pipeline, env_for
from tests.support.youtube import make_video, make_wav, start_fake_youtube, write_inputs, write_token_for

SEED = 1313
WANTED_KILLS = 15
RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {"video": make_video(folder / "video.mp4"), "wav": make_wav(folder / "final.wav"),
            "short": make_video(folder / "short.mp4", size="180x320")}


def _pipeline(folder: Path, media: dict[str, Path], url: str) -> Path:
    pipeline = write_inputs(copy_pipeline(folder, story=""), media)
    (pipeline / "client_secrets.json").write_text("{}", encoding="utf-8")
    write_token_for(pipeline / "token.json", url)
    tracking = pipeline / "output" / "tracking"
    tracking.mkdir(parents=True, exist_ok=True)
    # What 11.video.py leaves after making the real (not preview) video.
    (tracking / "11.video.state.json").write_text(json.dumps({"version": 1, "items": {
        "final.mp4": {"fingerprint": "f", "files": [], "status": "done"}}}), encoding="utf-8")
    return pipeline


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in env_for().items() if not k.startswith("YOUTUBE_")}
    env.update(YOUTUBE_API_URL=url, YOUTUBE_CHUNK_MB="0.25", YOUTUBE_MAX_RETRIES="2")
    return env


def _start(pipeline: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "12.youtube.py"], cwd=pipeline / "scripts", env=env,
                                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen[bytes], fake, target: int) -> bool:
    """True when the server recorded `target` events while the script still ran (then it is killed)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        if len(fake.events()) >= target:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                return True
            return False
        if proc.poll() is not None:
            return False
        time.sleep(0.002)  # polling the record file, not a timing guess
    proc.kill()
    proc.wait(timeout=10)
    raise AssertionError("12.youtube.py neither finished nor progressed within the time limit")


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_sigkill_at_random_moments_never_publishes_twice(tmp_path, media):
    rng = random.Random(SEED)
    moments: list[str] = []
    night = 0
    # Kill moments come from observed events; which event a kill lands after depends on the machine's
    # speed, so nights go on until every kind of moment was hit (bounded), not for a fixed count only.
    wanted = {"token", "chunk", "video_created", "thumbnail_set", "caption_added"}
    while len(moments) < WANTED_KILLS or not wanted <= set(moments):
        night += 1
        assert night <= 12, f"only {len(moments)} kills in {night - 1} nights, at {sorted(set(moments))}: {moments}"
        folder = tmp_path / f"night{night}"
        folder.mkdir()
        with start_fake_youtube(folder) as fake:
            pipeline = _pipeline(folder, media, fake.url)
            env, log = _env(fake.url), folder / "runs.log"
            for _ in range(20):
                before = len(fake.events())
                proc = _start(pipeline, env, log)
                if not _wait(proc, fake, before + rng.randint(1, 4)):
                    break
                moments.append(fake.events()[-1]["event"])
            else:
                raise AssertionError(f"never finished after 20 runs: {log.read_text()[-2000:]}")
            assert proc.returncode == 0, log.read_text()[-3000:]
            if len(moments) >= WANTED_KILLS and wanted <= set(moments):  # the last night: nothing left to do
                again = subprocess.run([sys.executable, "12.youtube.py"], cwd=pipeline / "scripts", env=env,
                                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT)
                assert again.returncode == 0 and "0 sent, 3 already done" in again.stdout, again.stdout

            created = fake.events("video_created")
            assert len(created) == 1, (created, moments)
            video_id = created[0]["video_id"]
            assert created[0]["size"] == (pipeline / "output" / "final.mp4").stat().st_size
            state = fake.control("state")["videos"]
            assert list(state) == [video_id]
            assert state[video_id]["thumbnail"] is not None  # one thumbnail: setting it again replaces it
            assert state[video_id]["captions"] == ["en"], (state, moments)  # one caption track per language
            # A thumbnail is set again only after a kill that came before its checkpoint.
            assert len(fake.events("thumbnail_set")) <= 1 + moments.count("thumbnail_set")
            items = json.loads((pipeline / "output" / "tracking" / "12.youtube.state.json").read_text())["items"]
            assert items["video"]["data"]["video_id"] == video_id
            assert items["captions"]["data"]["caption_id"] == fake.events("caption_added")[0]["caption_id"]
    # The kills fell before, during and after the chunks, and between the video, thumbnail and captions.
    assert wanted <= set(moments), moments
