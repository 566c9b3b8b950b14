"""Publishing state an unattended run can rely on: the token file, the run stamp, the preview mark."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from common.config.settings import load_settings
from common.publish import auth
from common.publish.auth import save_token
from common.run import preflight
from common.run.preflight import PreflightReport
from common.state.stamp import context_parts
from tests.support.youtube import Transport, credentials, token_ok, write_token


def test_token_json_is_never_readable_by_others_not_even_for_a_moment(tmp_path, monkeypatch):
    modes: list[int] = []
    real_chmod = os.chmod

    def watch(path, mode, *a, **k):
        modes.append(mode)
        return real_chmod(path, mode, *a, **k)

    monkeypatch.setattr(os, "chmod", watch)
    old_umask = os.umask(0o022)
    try:
        save_token(credentials(), tmp_path / "token.json")
    finally:
        os.umask(old_umask)
    assert all(mode & 0o077 == 0 for mode in modes), [oct(m) for m in modes]
    assert stat.S_IMODE((tmp_path / "token.json").stat().st_mode) == 0o600


class _Step:
    basename = "12.youtube.py"

    def __init__(self, pipeline_dir: Path) -> None:
        self.pipeline_dir = pipeline_dir


def test_the_preflight_check_does_not_rewrite_the_token(tmp_path, monkeypatch):
    pipeline = tmp_path / "gen.audio"
    pipeline.mkdir()
    token = write_token(pipeline / "token.json", expired=True)
    before = (token.read_bytes(), token.stat().st_mtime_ns)
    monkeypatch.setattr(auth, "default_http", lambda: Transport([token_ok("ya29.FRESH")]))
    report = PreflightReport("test")
    preflight._check_youtube(report, [_Step(pipeline)], load_settings(pipeline, environ={}))
    assert "authorised" in str(report.__dict__)
    assert (token.read_bytes(), token.stat().st_mtime_ns) == before  # the run stamp stays "up to date"


def test_a_token_given_as_home_relative_path_is_fingerprinted_by_the_run_stamp(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    pipeline = tmp_path / "gen.audio"
    pipeline.mkdir()
    token = write_token(home / "yt-token.json")
    settings = load_settings(pipeline, environ={"YOUTUBE_TOKEN": "~/yt-token.json"})
    before = context_parts(settings, ("offline", ""), environ={})["settings"]
    token.write_text(token.read_text() + " ")
    after = context_parts(settings, ("offline", ""), environ={})["settings"]
    assert before != after


# ----------------------------------------------------------------------------- point 9: the preview mark

import pytest  # noqa: E402

from common.publish.checks import made_as_preview, refuse_preview  # noqa: E402
from common.run.errors import InputError  # noqa: E402
from common.state.checkpoints import CheckpointStore  # noqa: E402


def _made(pipeline: Path, *, preview: bool, cleanup: bool) -> Path:
    """A final.mp4 as steps 9 and 11 leave it, their checkpoints cleaned up or not."""
    (pipeline / "scripts").mkdir(parents=True)
    video = pipeline / "output" / "final.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"not checked here")
    for script in ("9.media", "11.video"):
        store = CheckpointStore(pipeline / "output" / "tracking" / f"{script}.state.json", base_dir=pipeline)
        store.record("item", "fp", preview=preview and script == "11.video")
        store.finish(cleanup=cleanup)
    return video


@pytest.mark.parametrize("cleanup", [False, True])
def test_a_preview_is_refused_even_after_its_checkpoints_were_cleaned_up(tmp_path, cleanup):
    video = _made(tmp_path / "gen.audio", preview=True, cleanup=cleanup)
    assert made_as_preview(video)
    with pytest.raises(InputError, match="--allow-preview"):
        refuse_preview(video, allow=False)
    assert refuse_preview(video, allow=True) is True


@pytest.mark.parametrize("cleanup", [False, True])
def test_a_real_video_passes_after_its_checkpoints_were_cleaned_up(tmp_path, cleanup):
    video = _made(tmp_path / "gen.audio", preview=False, cleanup=cleanup)
    assert refuse_preview(video, allow=False) is False


def test_with_no_evidence_either_way_a_real_upload_refuses(tmp_path):
    pipeline = tmp_path / "gen.audio"
    video = _made(pipeline, preview=True, cleanup=False)
    for state in (pipeline / "output" / "tracking").iterdir():
        state.unlink()  # what CLEANUP_TRACKING_FILES did before it kept a mark
    (pipeline / "output" / "tracking" / "12.youtube.state.json").write_text('{"version": 1, "items": {}}')
    with pytest.raises(InputError, match="cannot tell"):
        refuse_preview(video, allow=False)
    assert made_as_preview(video)  # the dry run says so too
    assert refuse_preview(video, allow=True)
