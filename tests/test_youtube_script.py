"""12.youtube.py as a user runs it: the dry run without credentials, and one sentence when a person is needed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.project import copy_pipeline, env_for, run_script
from tests.support.youtube import SECRETS, make_video, make_wav, write_inputs, write_token

SCRIPT = "12.youtube.py"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {"video": make_video(folder / "video.mp4"), "wav": make_wav(folder / "final.wav"),
            "short": make_video(folder / "short.mp4", size="180x320")}


@pytest.fixture
def pipeline(tmp_path: Path, media) -> Path:
    return write_inputs(copy_pipeline(tmp_path, story=""), media, shorts=2)


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in env_for(**extra).items() if not k.startswith("YOUTUBE_") or k in extra}
    return clean


def manifest(pipeline: Path) -> dict:
    return json.loads((pipeline / "output" / "upload.manifest.json").read_text())


def test_without_credentials_it_is_a_dry_run_that_lists_every_request(pipeline):
    done = run_script(pipeline, SCRIPT, "--upload-shorts", env=env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cd gen.audio/scripts && python 12.youtube.py --authorize" in done.stdout.splitlines()[-1]
    data = manifest(pipeline)
    assert data["dry_run"] == "no YouTube credentials"
    assert [r["item"] for r in data["requests"]] == ["video", "thumbnail", "captions", "short_v1", "short_v2"]
    video = data["requests"][0]
    assert video["api_method"] == "youtube.videos.insert" and video["http_method"] == "POST"
    assert video["url"] == "https://youtube.googleapis.com/upload/youtube/v3/videos"
    assert video["parameters"] == {"part": "snippet,status", "alt": "json", "uploadType": "resumable"}
    assert video["media"] == {"file": str(pipeline / "output" / "final.mp4"),
                              "size": (pipeline / "output" / "final.mp4").stat().st_size,
                              "mimetype": "video/mp4", "upload": "resumable", "chunk_size": 8 * 1024 * 1024}
    assert video["body"]["status"]["containsSyntheticMedia"] is True
    assert video["body"]["snippet"]["title"] == "The Crimson Rose of Rosemund Valley"
    thumbnail, captions, short = data["requests"][1], data["requests"][2], data["requests"][3]
    assert thumbnail["api_method"] == "youtube.thumbnails.set" and thumbnail["parameters"]["videoId"] == "{VIDEO_ID}"
    assert thumbnail["media"]["mimetype"] == "image/png" and thumbnail["depends_on"] == "video"
    assert captions["api_method"] == "youtube.captions.insert" and captions["body"]["snippet"]["videoId"] == "{VIDEO_ID}"
    assert "https://youtu.be/{VIDEO_ID}" in short["body"]["snippet"]["description"]
    assert data["video"]["checks"]["video"]["video_codec"] == "h264" and data["video"]["preview"] is False
    assert not (pipeline / "token.json").exists()


def test_dry_run_flag_with_a_token_sends_nothing_and_leaks_no_secret(pipeline):
    write_token(pipeline / "token.json")
    done = run_script(pipeline, SCRIPT, "--dry-run", env=env(), timeout=120)
    assert done.returncode == 0, done.stderr
    text = (pipeline / "output" / "upload.manifest.json").read_text()
    assert not any(secret in text or secret in done.stdout + done.stderr for secret in SECRETS)
    assert manifest(pipeline)["dry_run"] == "--dry-run"


def test_a_preview_is_marked_in_the_dry_run(pipeline):
    tracking = pipeline / "output" / "tracking"
    tracking.mkdir(parents=True)
    (tracking / "11.video.state.json").write_text(json.dumps({"version": 1, "items": {
        "final.mp4": {"fingerprint": "f", "files": [], "status": "done", "preview": True}}}))
    done = run_script(pipeline, SCRIPT, env=env(), timeout=120)
    assert done.returncode == 0, done.stderr
    data = manifest(pipeline)
    assert data["video"]["preview"] is True
    assert any("--allow-preview" in note for note in data["notes"])


def test_set_up_but_not_authorised_stops_before_any_work(pipeline):
    (pipeline / "client_secrets.json").write_text("{}")
    done = run_script(pipeline, SCRIPT, env=env(), timeout=60)
    assert done.returncode == 4
    assert done.stderr.strip() == (
        f"error: YouTube is not authorised yet ({pipeline / 'token.json'} not found): run "
        "cd gen.audio/scripts && python 12.youtube.py --authorize once, then run again.")
    assert not (pipeline / "output" / "tracking").exists() and not (pipeline / "output" / "upload.manifest.json").exists()


def test_check_auth_and_authorize_without_a_client_file(pipeline):
    check = run_script(pipeline, SCRIPT, "--check-auth", env=env(), timeout=60)
    assert check.returncode == 4 and "not set up" in check.stderr
    auth = run_script(pipeline, SCRIPT, "--authorize", "--no-browser", env=env(), timeout=60)
    assert auth.returncode == 4 and "Desktop app" in auth.stderr and "client_secrets.json" in auth.stderr


def test_a_bad_setting_is_named(pipeline):
    done = run_script(pipeline, SCRIPT, env=env(YOUTUBE_CHUNK_MB="1.1"), timeout=60)
    assert done.returncode == 4 and "YOUTUBE_CHUNK_MB" in done.stderr



def test_with_require_approval_only_the_approved_video_as_it_was_is_uploaded(tmp_path, media):
    """YOUTUBE_REQUIRE_APPROVAL=1: nothing is sent until the video is approved (the dailies page writes
    the approval beside the upload state); a video changed after its approval needs a new one."""
    import os

    from common.publish.approval import approval_path, approve
    from tests.support.youtube import start_fake_youtube, write_token_for

    pipeline = write_inputs(copy_pipeline(tmp_path, story=""), media)
    (pipeline / "client_secrets.json").write_text("{}", encoding="utf-8")
    tracking = pipeline / "output" / "tracking"
    tracking.mkdir(parents=True, exist_ok=True)
    (tracking / "11.video.state.json").write_text(json.dumps({"version": 1, "items": {
        "final.mp4": {"fingerprint": "f", "files": [], "status": "done"}}}), encoding="utf-8")  # a real video
    video = pipeline / "output" / "final.mp4"
    with start_fake_youtube(tmp_path) as fake:
        write_token_for(pipeline / "token.json", fake.url)
        run_env = env(YOUTUBE_API_URL=fake.url, YOUTUBE_REQUIRE_APPROVAL="1")
        done = run_script(pipeline, SCRIPT, env=run_env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "YOUTUBE_REQUIRE_APPROVAL is on and final.mp4 was not uploaded: nobody approved it yet" in done.stdout
        assert fake.events("video_created") == [] and manifest(pipeline)["dry_run"] == "waiting for approval"

        approve(pipeline, video)
        os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 5_000_000_000))  # made again since
        done = run_script(pipeline, SCRIPT, env=run_env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "it changed since it was approved" in done.stdout and fake.events("video_created") == []

        approval = approve(pipeline, video)
        recorded = json.loads(approval_path(pipeline).read_text(encoding="utf-8"))
        assert approval_path(pipeline).parent == tracking  # beside 12.youtube.state.json
        assert recorded["size"] == video.stat().st_size and recorded["mtime_ns"] == video.stat().st_mtime_ns
        done = run_script(pipeline, SCRIPT, env=run_env, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(fake.events("video_created")) == 1 and "published: " in done.stdout

        # Without the setting, behaviour is as before: the approval is not asked for.
        other = write_inputs(copy_pipeline(tmp_path / "other", story=""), media)
        (other / "client_secrets.json").write_text("{}", encoding="utf-8")
        (other / "output" / "tracking").mkdir(parents=True, exist_ok=True)
        (other / "output" / "tracking" / "11.video.state.json").write_text(
            (tracking / "11.video.state.json").read_text(encoding="utf-8"), encoding="utf-8")
        write_token_for(other / "token.json", fake.url)
        done = run_script(other, SCRIPT, env=env(YOUTUBE_API_URL=fake.url), timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(fake.events("video_created")) == 2
