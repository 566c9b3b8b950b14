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
