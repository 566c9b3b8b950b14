import json
from pathlib import Path

from common.state.checkpoints import CheckpointStore, fingerprint


def _store(tmp_path: Path, **kw) -> CheckpointStore:
    return CheckpointStore(tmp_path / "output" / "tracking" / "s.state.json", base_dir=tmp_path, warn=lambda m: None, **kw)


def test_record_and_lookup_survive_reload(tmp_path: Path) -> None:
    out = tmp_path / "output" / "a.wav"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"RIFF....")
    store = _store(tmp_path)
    store.record("chunk_1_5", "fp1", files=[out], data={"spans": [[0, 1]]}, preview=True, took=1.5)
    again = _store(tmp_path)
    entry = again.lookup("chunk_1_5", "fp1")
    assert entry is not None and entry.files == ("output/a.wav",) and entry.data == {"spans": [[0, 1]]}
    assert entry.preview and again.any_preview()
    assert again.lookup("chunk_1_5", "other") is None  # inputs changed -> redo


def test_missing_or_empty_file_invalidates(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    out.write_bytes(b"png")
    store = _store(tmp_path)
    store.record("k", "fp", files=[out])
    out.write_bytes(b"")
    assert store.lookup("k", "fp") is None
    out.unlink()
    assert store.lookup("k", "fp") is None


def test_corrupt_state_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "output" / "tracking" / "s.state.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"items": {"k": {"fingerp')
    warnings: list[str] = []
    store = CheckpointStore(path, base_dir=tmp_path, warn=warnings.append)
    assert store.entries() == {}
    assert not path.exists()
    assert len(list(path.parent.glob("s.state.corrupt-*.json"))) == 1
    assert "unreadable" in warnings[0]


def test_force_start_and_disabled(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.record("k", "fp")
    assert _store(tmp_path, force_start=True).lookup("k", "fp") is None
    off = _store(tmp_path, resumable=False)
    assert off.lookup("k", "fp") is None
    off.record("j", "fp")
    saved = json.loads((tmp_path / "output/tracking/s.state.json").read_text())
    assert "j" not in saved["items"]


def test_fingerprint_follows_file_content(tmp_path: Path) -> None:
    f = tmp_path / "voice.wav"
    f.write_bytes(b"one")
    a = fingerprint("line", f, {"b": 1, "a": 2})
    assert a == fingerprint("line", f, {"a": 2, "b": 1})
    f.write_bytes(b"two!")
    assert a != fingerprint("line", f, {"a": 2, "b": 1})


def test_state_file_is_always_valid_json(tmp_path: Path) -> None:
    store = _store(tmp_path)
    for i in range(50):
        store.record(f"k{i}", "fp")
        json.loads((tmp_path / "output/tracking/s.state.json").read_text())
    assert not list((tmp_path / "output/tracking").glob(".*tmp*"))


def test_atomic_files_get_normal_permissions_unless_asked(tmp_path: Path) -> None:
    import os
    import stat

    from common.state.atomic import atomic_path, atomic_write_text

    umask = os.umask(0o022)
    os.umask(umask)
    plain = atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask
    with atomic_path(tmp_path / "secret.json", mode=0o600) as tmp:
        tmp.write_text("{}")
    assert stat.S_IMODE((tmp_path / "secret.json").stat().st_mode) == 0o600


def test_a_temp_state_left_by_a_kill_is_removed_on_load(tmp_path: Path) -> None:
    state = tmp_path / "tracking" / "2.story.state.json"
    first = CheckpointStore(state, base_dir=tmp_path)
    first.record("chunk_1", "fp1")
    stale = state.parent / ".2.story.state.k1ll3d.tmp.json"
    stale.write_text('{"items": {"half', encoding="utf-8")
    other = state.parent / ".3.transcribe.state.abc.tmp.json"  # another script's: not ours to touch
    other.write_text("{}", encoding="utf-8")
    again = CheckpointStore(state, base_dir=tmp_path)
    assert not stale.exists() and other.exists()
    assert again.is_done("chunk_1", "fp1")
