"""The stall watchdog (common/services/comfyui/watchdog.py, client.py, pool.py) against the fake
ComfyUI, which reports progress and takes interrupts as the real one does: only samplers send
`progress`, and an interrupt reaches a silent node (load, decode, save, TTS) only once it ends.

What a night with one GPU needs: a slow silent node is not taken for a stalled one; a sampler that
goes quiet is interrupted and its job retried; an interrupt that lands late is a stall, not a
stuck server; a server that stops answering is stuck, and is used again once it answers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from common.services.comfyui.client import ComfyClient, job_id
from common.services.comfyui.errors import JobStalledError
from common.services.comfyui.messages import Progress
from common.services.comfyui.pool import ComfyPool, Recovery
from tests.support.seed import image_prompt
from tests.fakes import FakeServer, start_fake_comfyui

pytestmark = pytest.mark.timeout(120)

SAMPLER, DECODE, SAVE = "16", "20", "21"  # in gen.image/workflow/character_location.json


def interrupted_in(fake: FakeServer, pid: str) -> dict[str, Any]:
    """The `execution_interrupted` message of a job, from its history."""
    entry = ComfyClient(fake.url).history(pid)
    assert entry is not None
    (message,) = [data for event, data in entry["status"]["messages"] if event == "execution_interrupted"]
    return message


def test_a_silent_node_slower_than_the_stall_timeout_is_not_interrupted(fixtures_dir: Path, tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.1, node_seconds={"VAEDecode": 3.0}) as fake:
        files = ComfyClient(fake.url).run(image_prompt("a long decode"), tmp_path / "out", timeout=60,
                                          stall_timeout=1, silent_timeout=60)
        assert [f.suffix for f in files] == [".png"]
        assert not fake.record_events("interrupt") and fake.jobs_run("success") == 1


def test_a_sampler_that_goes_quiet_after_progress_is_interrupted_and_retried(fixtures_dir: Path, tmp_path: Path) -> None:
    said: list[str] = []
    with start_fake_comfyui(tmp_path, job_seconds=0.1, fail_mode="hang", fail_jobs=1) as fake:
        pool = ComfyPool([fake.url], recovery=Recovery(stall_timeout=1, silent_timeout=0, job_retries=1), say=said.append)
        try:
            prompt = image_prompt("a quiet sampler")
            files = pool.run(lambda client, lowered: prompt, tmp_path / "out", timeout=60, what="the picture")
        finally:
            pool.close()
        assert [f.suffix for f in files] == [".png"]
        assert [e["node"] for e in fake.record_events("interrupt")] == [SAMPLER]
        assert fake.jobs_run("interrupted") == 1 and fake.jobs_run("success") == 1
        assert any("the picture stalled" in line and "trying again (1 of 1)" in line for line in said), said


def test_an_interrupt_that_lands_late_in_a_silent_node_is_a_stall_not_a_stuck_server(
        fixtures_dir: Path, tmp_path: Path) -> None:
    with start_fake_comfyui(tmp_path, job_seconds=0.1, node_seconds={"VAEDecode": 4.0}) as fake:
        client = ComfyClient(fake.url)
        with pytest.raises(JobStalledError) as stalled:
            client.run(image_prompt("a decode too long"), tmp_path / "out", timeout=60,
                       stall_timeout=1, silent_timeout=1)
        message = str(stalled.value)
        assert f"node {DECODE} (VAEDecode)" in message and "raise COMFYUI_SILENT_NODE_TIMEOUT" in message
        assert message.count(".") == 1 and message.endswith(".")  # one sentence
        # Interrupted while the decode ran, it stopped once the decode had ended, at the save.
        (event,) = fake.record_events("interrupt")
        landed = interrupted_in(fake, event["prompt_id"])
        assert event["node"] == DECODE and landed["node_id"] == SAVE and DECODE in landed["executed"]

        # Through the pool: the stall is retried on the same server, not taken for a stuck one. The
        # retry finds the decode ComfyUI finished (and cached) before it stopped, and completes.
        said: list[str] = []
        pool = ComfyPool([fake.url], recovery=Recovery(stall_timeout=1, silent_timeout=1, job_retries=1), say=said.append)
        try:
            files = pool.run(lambda client, lowered: image_prompt("another long decode"),
                             tmp_path / "out", timeout=60, what="the picture")
        finally:
            pool.close()
        assert [f.suffix for f in files] == [".png"]
        assert [e["node"] for e in fake.record_events("interrupt")] == [DECODE, DECODE]
        assert fake.jobs_run("interrupted") == 2 and fake.jobs_run("success") == 1
        assert not any("stuck" in line for line in said), said
        assert any("the picture stalled" in line and "trying again (1 of 1)" in line for line in said), said


def test_a_server_that_stops_answering_is_stuck_and_used_again_once_it_answers(fixtures_dir: Path, tmp_path: Path) -> None:
    thaw = tmp_path / "thaw"
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if "is stuck" in line:
            thaw.touch()  # the server answers again from now on

    with start_fake_comfyui(tmp_path, job_seconds=0.1, fail_mode="stuck", fail_jobs=1, stuck_until=thaw) as fake:
        pool = ComfyPool([fake.url], recovery=Recovery(stall_timeout=1, silent_timeout=0, return_wait=60), say=say)
        try:
            prompt = image_prompt("a wedged server")
            files = pool.run(lambda client, lowered: prompt, tmp_path / "out", timeout=90, what="the picture")
        finally:
            pool.close()
        assert [f.suffix for f in files] == [".png"]
        stuck = [line for line in said if "is stuck" in line]
        assert len(stuck) == 1 and "waiting for it to answer again" in stuck[0], said
        assert said.index(stuck[0]) < max(i for i, line in enumerate(said) if f"ComfyUI at {fake.url} is back" in line)
        assert [e["event"] for e in fake.record_events() if e["event"] in ("frozen", "thawed")] == ["frozen", "thawed"]
        assert fake.jobs_run("success") == 1  # the same server made the picture after all


def test_a_job_taken_over_that_ends_interrupted_is_made_again(fixtures_dir: Path, tmp_path: Path) -> None:
    """After a stuck server answers again, the retry takes over the job left there (same graph, same
    id); if the watchdog's interrupt lands on it then, the picture is made by a new job."""
    with start_fake_comfyui(tmp_path, job_seconds=0.5) as fake:
        client = ComfyClient(fake.url)
        prompt = image_prompt("taken over, then stopped")
        left = client.queue(prompt, prompt_id=job_id(prompt))  # what the run that lost the server left

        def interrupt_once(progress: Progress) -> None:
            if progress.max and not fake.record_events("interrupt"):
                requests.post(fake.url + "/interrupt", json={"prompt_id": left}, timeout=10)

        files = client.run(prompt, tmp_path / "out", timeout=60, on_progress=interrupt_once)
        assert [f.suffix for f in files] == [".png"]
        ids = [e["prompt_id"] for e in fake.record_events("prompt")]
        assert len(ids) == 2 and ids[0] == left and fake.record_events("interrupt")[0]["prompt_id"] == left
        assert fake.jobs_run("interrupted") == 1 and fake.jobs_run("success") == 1
