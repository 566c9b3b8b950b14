"""Issue 13, points 2, 3 (readers) and 12: a damaged state file costs only what is really lost; step 12 never
guesses; whoever only reads another script's state writes nothing; the umask is read once, at import."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.publish.checks import made_as_preview
from common.state.checkpoints import CheckpointStore, read_entries
from tests.support.project import REPO, copy_pipeline, env_for, run_script
from tests.support.youtube import make_video, make_wav, write_inputs


def _state_with_files(tmp_path: Path, keys: list[str]) -> tuple[Path, dict[str, Path]]:
    path = tmp_path / "output" / "tracking" / "2.story.state.json"
    files = {}
    store = CheckpointStore(path, base_dir=tmp_path, warn=lambda m: None)
    for key in keys:
        files[key] = tmp_path / "output" / "chunks" / f"{key}.wav"
        files[key].parent.mkdir(parents=True, exist_ok=True)
        files[key].write_bytes(b"RIFF" + key.encode())
        store.record(key, f"fp-{key}", files=[files[key]], data={"nested": {"fingerprint": "not an entry"}})
    return path, files


def test_a_torn_state_keeps_every_entry_that_parses_and_whose_files_are_in_place(tmp_path: Path) -> None:
    path, files = _state_with_files(tmp_path, ["c1", "c2", "c3", "c4", "c5"])
    files["c3"].unlink()  # its entry parses, but its file is gone: lost
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:text.index('"c5"') + 30], encoding="utf-8")  # torn inside c5's entry
    warnings: list[str] = []
    store = CheckpointStore(path, base_dir=tmp_path, warn=warnings.append)
    assert sorted(store.entries()) == ["c1", "c2", "c4"]
    assert store.is_done("c4", "fp-c4") and not store.is_done("c3", "fp-c3")
    assert len(warnings) == 1 and "kept 3 item(s)" in warnings[0] and "lost 2" in warnings[0]
    assert len(list(path.parent.glob("2.story.state.corrupt-*.json"))) == 1  # the damaged file is kept aside
    # The salvaged state is written back at once: a status or a later run reads it whole.
    assert sorted(json.loads(path.read_text(encoding="utf-8"))["items"]) == ["c1", "c2", "c4"]


def test_a_damaged_entry_in_the_middle_costs_that_entry_only(tmp_path: Path) -> None:
    path, _files = _state_with_files(tmp_path, ["c1", "c2", "c3"])
    text = path.read_text(encoding="utf-8")
    broken = text.replace('"fingerprint": "fp-c2"', '"fingerprint": fp-c2"')  # a bad hand edit
    assert broken != text
    path.write_text(broken, encoding="utf-8")
    assert sorted(read_entries(path)) == ["c1", "c3"]  # a reader sees what the owner will keep, and writes nothing
    assert path.read_text(encoding="utf-8") == broken
    warnings: list[str] = []
    store = CheckpointStore(path, base_dir=tmp_path, warn=warnings.append)
    assert sorted(store.entries()) == ["c1", "c3"] and "kept 2" in warnings[0] and "lost 1" in warnings[0]


def test_an_entry_without_its_fields_is_lost_alone(tmp_path: Path) -> None:
    path, _files = _state_with_files(tmp_path, ["c1", "c2"])
    raw = json.loads(path.read_text(encoding="utf-8"))
    del raw["items"]["c1"]["fingerprint"]
    path.write_text(json.dumps(raw), encoding="utf-8")
    warnings: list[str] = []
    store = CheckpointStore(path, base_dir=tmp_path, warn=warnings.append)
    assert list(store.entries()) == ["c2"] and "kept 1" in warnings[0] and "lost 1" in warnings[0]


# --------------------------------------------------------------------------- step 12 never starts again


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {"video": make_video(folder / "video.mp4"), "wav": make_wav(folder / "final.wav"),
            "short": make_video(folder / "short.mp4", size="180x320")}


def test_an_unreadable_youtube_state_stops_step_12_and_is_left_alone(tmp_path: Path, media) -> None:
    pipeline = write_inputs(copy_pipeline(tmp_path, story=""), media)
    tracking = pipeline / "output" / "tracking"
    tracking.mkdir(parents=True)
    state = tracking / "12.youtube.state.json"
    damaged = '{"version": 1, "items": {"video": {"fingerprint": "f", "status": "done", "data": {"video_id": "ab'
    state.write_text(damaged, encoding="utf-8")
    env = {k: v for k, v in env_for().items() if not k.startswith("YOUTUBE_")}
    done = run_script(pipeline, "12.youtube.py", "--dry-run", env=env, timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr
    said = done.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("error: ") and str(state) in said[0]
    assert "YouTube Studio" in said[0] and "Traceback" not in done.stderr
    assert state.read_text(encoding="utf-8") == damaged
    assert sorted(p.name for p in tracking.iterdir()) == ["12.youtube.state.json"]
    assert not (pipeline / "output" / "upload.manifest.json").exists()


# --------------------------------------------------------------------------- readers write nothing


def test_the_preview_check_reads_other_scripts_state_without_touching_it(tmp_path: Path) -> None:
    pipeline = tmp_path / "gen.audio"
    (pipeline / "scripts").mkdir(parents=True)
    tracking = pipeline / "output" / "tracking"
    tracking.mkdir(parents=True)
    video = pipeline / "output" / "final.mp4"
    video.write_bytes(b"mp4")
    (tracking / "2.story.state.json").write_text(json.dumps({"version": 1, "items": {
        "chunk_1": {"fingerprint": "f", "files": [], "status": "done"}}}), encoding="utf-8")
    running = tracking / ".2.story.state.x1y2.tmp.json"  # 2.story.py is writing its next state right now
    running.write_text('{"items": {"chunk_1": {', encoding="utf-8")
    torn = tracking / "7.sfx.state.json"
    torn.write_text('{"version": 1, "items": {"sfx_1": {"fingerprint": "f", "preview": true}, "sfx_2": {"fi',
                    encoding="utf-8")
    stamp = tracking / "orchestrator.state.json"  # the run stamp: no items table, not a script's state
    stamp.write_text('{"version": 1, "steps": [], "context": {}, "trees": {}}\n', encoding="utf-8")
    before = {p.name: p.read_bytes() for p in tracking.iterdir()}
    assert made_as_preview(video, warn=lambda m: pytest.fail(f"a reader warned: {m}")) is True
    assert {p.name: p.read_bytes() for p in tracking.iterdir()} == before


# --------------------------------------------------------------------------- umask


UMASK_PROBE = r"""
import os, sys, threading, tempfile
calls = []
real = os.umask
def spy(mask):
    calls.append(threading.current_thread() is threading.main_thread())
    return real(mask)
os.umask = spy
from common.state.atomic import atomic_write_text
at_import = len(calls)
folder = tempfile.mkdtemp()
worker = threading.Thread(target=lambda: atomic_write_text(os.path.join(folder, "a.txt"), "x"))
worker.start(); worker.join()
atomic_write_text(os.path.join(folder, "b.txt"), "y")
print(at_import, len(calls), all(calls))
"""


def test_the_umask_is_read_once_at_import_never_from_a_worker_thread() -> None:
    done = subprocess.run([sys.executable, "-c", UMASK_PROBE], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=env_for())
    assert done.returncode == 0, done.stderr
    at_import, total, main_only = done.stdout.split()
    assert int(at_import) == 2 and int(total) == 2 and main_only == "True"
