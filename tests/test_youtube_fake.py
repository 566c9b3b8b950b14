"""Step 12 over real HTTP against tests/fakes/fake_youtube.py: the resumable protocol, expired sessions,
quota and upload limits, and YOUTUBE_API_URL."""
from __future__ import annotations

import json

import pytest

from common.config.settings import load_settings
from common.publish.auth import api_url, default_http, youtube_service
from common.publish.youtube import open_state, publish
from common.run.errors import ConfigError, QuotaError
from tests.support.youtube import credentials, start_fake_youtube
from tests.test_youtube_upload import media, pipeline_with, policy  # noqa: F401  (fixture)


def _publish(inputs, url: str, **kw):
    said: list[str] = []
    service = youtube_service(credentials(), api_url=url)  # default_http(): the transport a real run uses
    try:
        return publish(inputs, service, open_state(inputs), policy=policy(), say=said.append, **kw), said
    except Exception as exc:  # noqa: BLE001  (the test looks at it)
        return exc, said


@pytest.fixture
def fake(tmp_path):
    with start_fake_youtube(tmp_path) as server:
        yield server


def test_a_multi_chunk_upload_goes_through_the_resumable_protocol(tmp_path, media, fake):
    inputs = pipeline_with(tmp_path, media)
    assert 308 not in default_http().redirect_codes  # 308 Resume Incomplete is an answer, not a redirect
    result, _ = _publish(inputs, fake.url)
    assert result.sent == ["video", "thumbnail", "captions"], result
    chunks = fake.events("chunk")
    assert len(chunks) == 4 and [c["first"] for c in chunks] == [0, 262144, 524288, 786432]
    assert [e["video_id"] for e in fake.events("video_created")] == [result.video_id]
    assert fake.control("state")["videos"][result.video_id]["captions"] == ["en"]


def test_an_expired_session_is_replaced_and_still_one_video(tmp_path, media, fake):
    inputs = pipeline_with(tmp_path, media)
    fake.control("fail", {"reason": "backendError", "count": 4, "on": "chunk"})  # 1 try + 3 retries
    result, _ = _publish(inputs, fake.url)
    assert "kept failing" in str(result)  # the session is saved, nothing uploaded yet
    fake.control("expire", {})
    result, said = _publish(inputs, fake.url)
    assert result.sent == ["video", "thumbnail", "captions"], result
    assert any("expired" in line for line in said)
    assert len(fake.events("session_created")) == 2 and len(fake.events("video_created")) == 1


@pytest.mark.parametrize("reason,on", [("quotaExceeded", "captions"), ("uploadLimitExceeded", "insert")])
def test_quota_and_upload_limit_stop_cleanly_and_the_next_run_finishes(tmp_path, media, fake, reason, on):
    inputs = pipeline_with(tmp_path, media)
    fake.control("fail", {"reason": reason, "count": 1, "on": on})
    result, _ = _publish(inputs, fake.url)
    assert isinstance(result, QuotaError) and reason in str(result) and "midnight Pacific" in str(result)
    result, _ = _publish(inputs, fake.url)
    assert not isinstance(result, Exception), result
    assert len(fake.events("video_created")) == 1 and len(fake.events("caption_added")) == 1
    items = json.loads(inputs.state_path.read_text())["items"]
    assert all(items[k]["status"] == "done" for k in ("video", "thumbnail", "captions"))


@pytest.mark.parametrize("value,ok", [
    ("", True), ("https://youtube.example.org", True), ("http://127.0.0.1:8080", True),
    ("http://localhost:9/", True), ("http://192.168.1.5:8080", False), ("ftp://127.0.0.1", False),
    ("127.0.0.1:8080", False),
])
def test_youtube_api_url_is_https_or_this_machine_only(tmp_path, value, ok):
    settings = load_settings(tmp_path, environ={"YOUTUBE_API_URL": value})
    if ok:
        assert api_url(settings) == (value.rstrip("/") or None)
    else:
        with pytest.raises(ConfigError, match="YOUTUBE_API_URL"):
            api_url(settings)
