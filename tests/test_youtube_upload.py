"""Step 12's upload path against the Google client's own HTTP mock: the code a real upload runs, no network."""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from common.run.errors import ConfigError, InputError, JobError, QuotaError, ServiceError
from common.config.settings import load_settings
from common.publish.auth import youtube_service
from common.publish.youtube import inputs_from_args, open_state, publish
from common.publish.upload import RetryPolicy, chunk_bytes, next_quota_reset
from tests.support.youtube import (
    CHUNK, SECRETS, UPLOAD_URI, Transport, chunk_responses, credentials, error, held, make_video, make_wav, ok,
    session, token_ok, video_done, write_inputs,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "video": make_video(folder / "video.mp4"),
        "wav": make_wav(folder / "final.wav"),
        "short": make_video(folder / "short.mp4", size="180x320"),
    }


def args(**given: object) -> argparse.Namespace:
    names = ("video_file", "audio_file", "title_file", "description_file", "tags_file", "thumbnail_file",
             "captions_file", "shorts_dir", "publish_at")
    values = {name: None for name in names}
    values.update(allow_preview=False)
    values.update(given)
    return argparse.Namespace(**values)


def pipeline_with(tmp_path: Path, media: dict[str, Path], *, shorts: int = 0, **settings: str):
    pipeline = write_inputs(tmp_path / "gen.audio", media, shorts=shorts)
    env = {"YOUTUBE_CHUNK_MB": "0.25", **({"YOUTUBE_UPLOAD_SHORTS": "1"} if shorts else {}), **settings}
    return inputs_from_args(args(), load_settings(pipeline, environ=env), pipeline)


def policy(retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=retries, sleep=lambda seconds: None, rand=lambda: 0.5)


def run(inputs, responses, *, retries: int = 3, force: bool = False, creds=None):
    """One process's worth of step 12: fresh state from disk, fresh service over a fresh mock."""
    transport = Transport(responses)
    said: list[str] = []
    store = open_state(inputs)
    service = youtube_service(creds or credentials(), http=transport)
    try:
        result = publish(inputs, service, store, policy=policy(retries), force=force, say=said.append)
    except BaseException as exc:
        return transport, said, exc
    return transport, said, result


def state(inputs) -> dict:
    return json.loads(inputs.state_path.read_text())["items"]


def after_video(video_id: str = "VID00000001") -> list:
    return [ok({"kind": "youtube#thumbnailSetResponse"}), ok({"id": "CAP1", "kind": "youtube#caption"})]


def test_whole_upload_sends_video_in_chunks_then_thumbnail_and_captions(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    assert size > 3 * CHUNK  # the fixture spans several chunks
    transport, said, result = run(inputs, [session(), *chunk_responses(size), *after_video()])

    assert result.video_id == "VID00000001" and result.sent == ["video", "thumbnail", "captions"]
    calls = transport.calls
    assert calls[0][0] == "POST" and "uploadType=resumable" in calls[0][1] and "part=snippet%2Cstatus" in calls[0][1]
    metadata = json.loads(transport.request_sequence[0][2])
    assert metadata["snippet"]["title"] == "The Crimson Rose of Rosemund Valley"
    assert metadata["snippet"]["tags"] == ["sherlock holmes", "mystery", "audio drama"]
    assert metadata["snippet"]["categoryId"] == "22" and metadata["snippet"]["defaultLanguage"] == "en"
    assert metadata["status"] == {"privacyStatus": "private", "selfDeclaredMadeForKids": False,
                                  "containsSyntheticMedia": True}
    assert transport.headers(0)["x-upload-content-length"] == str(size)
    assert transport.headers(0)["authorization"] == f"Bearer {SECRETS[0]}"

    chunk_calls = [i for i, (method, uri) in enumerate(calls) if method == "PUT" and uri == UPLOAD_URI]
    assert len(chunk_calls) == 4
    ranges = [transport.headers(i)["content-range"] for i in chunk_calls]
    assert ranges[0] == f"bytes 0-{CHUNK - 1}/{size}" and ranges[-1] == f"bytes {3 * CHUNK}-{size - 1}/{size}"
    assert b"".join(transport.bodies[i] for i in chunk_calls) == inputs.video.read_bytes()

    assert "thumbnails/set" in calls[5][1] and "videoId=VID00000001" in calls[5][1]
    assert "/captions" in calls[6][1] and calls[6][0] == "POST"
    caption_body = transport.bodies[6].decode("utf-8", "replace")
    assert '"videoId": "VID00000001"' in caption_body and "Hello." in caption_body

    items = state(inputs)
    assert items["video"]["status"] == "done" and items["video"]["data"]["video_id"] == "VID00000001"
    assert items["captions"]["data"]["caption_id"] == "CAP1"
    assert not transport._iterable  # every prepared answer was used: nothing more, nothing less


def test_a_second_run_after_success_sends_nothing(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    run(inputs, [session(), *chunk_responses(size), *after_video()])
    transport, said, result = run(inputs, [])
    assert transport.request_sequence == []
    assert result.sent == [] and result.skipped == ["video", "thumbnail", "captions"]
    assert any("already on YouTube: https://youtu.be/VID00000001" in line for line in said)


def test_a_re_rendered_video_is_reported_not_uploaded_again(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    run(inputs, [session(), *chunk_responses(inputs.video.stat().st_size), *after_video()])
    inputs.video.write_bytes(inputs.video.read_bytes() + b"\0")
    transport, said, result = run(inputs, [])
    assert transport.request_sequence == [] and result.video_id == "VID00000001"
    assert any("changed since the video was uploaded" in line for line in said)


def test_force_start_uploads_again_and_says_so(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    run(inputs, [session(), *chunk_responses(size), *after_video()])
    transport, said, result = run(inputs, [session(), *chunk_responses(size, "VID00000002"), *after_video()], force=True)
    assert result.video_id == "VID00000002" and result.sent == ["video", "thumbnail", "captions"]
    assert any("AGAIN as a new video" in line and "https://youtu.be/VID00000001" in line for line in said)
    assert state(inputs)["video"]["data"]["replaced"] == "VID00000001"


def test_a_new_process_resumes_the_saved_session_from_the_servers_range(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    # First process: two chunks confirmed, then killed (Ctrl+C / SIGTERM) while sending the third.
    first, _, exc = run(inputs, [session(), held(CHUNK - 1), held(2 * CHUNK - 1), ({"status": "500"}, KeyboardInterrupt())])
    assert isinstance(exc, KeyboardInterrupt)
    saved = state(inputs)["video"]
    assert saved["status"] == "uploading"
    assert saved["data"]["session_uri"] == UPLOAD_URI and saved["data"]["progress"] == 2 * CHUNK

    # Second process: asks the server what it holds (less than we sent: it lost part of chunk 2), sends the rest.
    server_has = CHUNK + 1000
    second, said, result = run(inputs, [held(server_has - 1), *chunk_responses(size, start=server_has), *after_video()])
    assert result.video_id == "VID00000001"
    method, uri = second.calls[0]
    assert (method, uri) == ("PUT", UPLOAD_URI) and second.headers(0)["content-range"] == f"bytes */{size}"
    assert second.bodies[0] in (None, b"")
    assert second.headers(1)["content-range"].startswith(f"bytes {server_has}-")
    resent = b"".join(second.bodies[i] for i in range(1, len(second.calls) - 2))
    assert resent == inputs.video.read_bytes()[server_has:]
    assert not any(m == "POST" and "uploadType=resumable" in u for m, u in second.calls)  # same session, none new
    assert any("resuming the saved upload" in line for line in said)


def test_a_kill_during_the_first_chunk_keeps_the_session(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    _, _, exc = run(inputs, [session(), ({"status": "500"}, KeyboardInterrupt())])
    assert isinstance(exc, KeyboardInterrupt)
    assert state(inputs)["video"]["data"]["session_uri"] == UPLOAD_URI
    second, _, result = run(inputs, [held(None), *chunk_responses(size), *after_video()])
    assert result.video_id == "VID00000001" and second.headers(1)["content-range"].startswith("bytes 0-")


def test_a_session_the_server_already_finished_is_recorded_without_sending(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    run(inputs, [session(), held(CHUNK - 1), ({"status": "500"}, KeyboardInterrupt())])
    second, _, result = run(inputs, [video_done("VID00000009"), *after_video()])
    assert result.video_id == "VID00000009" and len(second.calls) == 3


def test_an_expired_session_starts_a_new_upload(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    run(inputs, [session(), held(CHUNK - 1), ({"status": "500"}, KeyboardInterrupt())])
    second, said, result = run(inputs, [error(404, "notFound"), session(), *chunk_responses(size), *after_video()])
    assert result.video_id == "VID00000001" and second.calls[1][0] == "POST"
    assert any("expired" in line for line in said)


def test_503_then_success_retries_with_backoff(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    responses = [session(), held(CHUNK - 1), error(503, "backendError"), held(2 * CHUNK - 1),
                 *chunk_responses(size, start=2 * CHUNK), *after_video()]
    transport, said, result = run(inputs, responses)
    assert result.video_id == "VID00000001"
    # After the 503 the library asks the server for its range before sending more.
    query = transport.calls.index(("PUT", UPLOAD_URI), 3)
    assert transport.headers(3)["content-range"] == f"bytes */{size}"
    assert transport.headers(4)["content-range"].startswith(f"bytes {2 * CHUNK}-")
    assert query == 3 and any("HTTP 503" in line and "retry 1/3" in line for line in said)


def test_connection_errors_and_rate_limits_are_retried(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    responses = [({"status": "500"}, ConnectionResetError(104, "reset")), session(), *chunk_responses(size),
                 error(403, "rateLimitExceeded"), *after_video()]
    transport, said, result = run(inputs, responses)
    assert result.sent == ["video", "thumbnail", "captions"]
    assert sum("retry" in line for line in said) == 2


def test_retries_are_bounded(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    transport, said, exc = run(inputs, [error(503, "backendError")] * 3, retries=2)
    assert isinstance(exc, ServiceError) and "HTTP 503" in str(exc)
    assert len(transport.calls) == 3


def test_a_non_retriable_400_stops_at_once(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    transport, said, exc = run(inputs, [error(400, "invalidTitle", "The request metadata specifies an invalid video title."),
                                        session()])
    assert isinstance(exc, JobError) and "invalidTitle" in str(exc) and "HTTP 400" in str(exc)
    assert len(transport.calls) == 1


def test_quota_exceeded_stops_cleanly_and_a_later_run_continues(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    first, _, exc = run(inputs, [session(), *chunk_responses(size), ok({}), error(403, "quotaExceeded", "quota")])
    assert isinstance(exc, QuotaError) and exc.exit_code == 7
    assert "midnight Pacific" in str(exc) and "run the same command again" in str(exc)
    assert state(inputs)["thumbnail"]["status"] == "done" and "captions" not in state(inputs)

    second, _, result = run(inputs, [ok({"id": "CAP1"})])
    assert result.sent == ["captions"] and result.skipped == ["video", "thumbnail"]
    assert len(second.calls) == 1 and "/captions" in second.calls[0][1]


def test_quota_at_the_start_of_an_upload_leaves_nothing_half_done(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    _, _, exc = run(inputs, [error(400, "uploadLimitExceeded", "limit")])
    assert isinstance(exc, QuotaError) and "upload limit" in str(exc)
    assert "video" not in state(inputs)
    _, _, result = run(inputs, [session(), *chunk_responses(size), *after_video()])
    assert result.video_id == "VID00000001"


def test_an_expired_access_token_is_refreshed_on_401_mid_upload(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    creds = credentials()
    responses = [session(), held(CHUNK - 1), error(401, "authError"), token_ok(), held(2 * CHUNK - 1),
                 *chunk_responses(size, start=2 * CHUNK), *after_video()]
    transport, _, result = run(inputs, responses, creds=creds)
    assert result.video_id == "VID00000001" and creds.token == "ya29.NEW-ACCESS"
    assert transport.calls[3][0] == "POST" and "oauth2" in transport.calls[3][1]
    assert transport.headers(4)["authorization"] == "Bearer ya29.NEW-ACCESS"


def test_shorts_follow_the_video_and_link_it(tmp_path, media):
    inputs = pipeline_with(tmp_path, media, shorts=2)
    size = inputs.video.stat().st_size
    short_size = (inputs.shorts_dir / "shorts.v1.mp4").stat().st_size
    responses = [session(), *chunk_responses(size), *after_video(),
                 session(), *chunk_responses(short_size, "SHORT000001"),
                 session(), *chunk_responses(short_size, "SHORT000002")]
    transport, _, result = run(inputs, responses)
    assert result.sent == ["video", "thumbnail", "captions", "short_v1", "short_v2"]
    starts = [json.loads(body) for (uri, method, body, _) in transport.request_sequence
              if method == "POST" and "uploadType=resumable" in uri]
    short = starts[1]["snippet"]
    assert short["title"] == "The Crimson Rose of Rosemund Valley (Part 1) #Shorts"
    assert "https://youtu.be/VID00000001" in short["description"]
    assert state(inputs)["short_v2"]["data"]["video_id"] == "SHORT000002"


def test_a_landscape_short_is_refused_before_anything_is_sent(tmp_path, media):
    inputs = pipeline_with(tmp_path, media, shorts=1)
    (inputs.shorts_dir / "shorts.v1.mp4").write_bytes(media["video"].read_bytes())
    transport, _, exc = run(inputs, [])
    assert isinstance(exc, InputError) and "vertical" in str(exc) and transport.calls == []


def test_a_preview_video_is_refused_unless_allowed(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    tracking = inputs.pipeline_dir / "output" / "tracking"
    tracking.mkdir(parents=True)
    (tracking / "2.story.state.json").write_text(json.dumps({"version": 1, "script": "2.story", "items": {
        "1_5": {"fingerprint": "x", "files": [], "status": "done", "preview": True}}}))
    transport, _, exc = run(inputs, [])
    assert isinstance(exc, InputError) and "--allow-preview" in str(exc) and transport.calls == []

    allowed = inputs_from_args(args(allow_preview=True), load_settings(inputs.pipeline_dir, environ={"YOUTUBE_CHUNK_MB": "0.25"}),
                               inputs.pipeline_dir)
    _, _, result = run(allowed, [session(), *chunk_responses(inputs.video.stat().st_size), *after_video()])
    assert result.video_id == "VID00000001"


def test_a_silent_video_fails_the_pre_upload_check(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    make_video(inputs.video, silent=True)
    transport, _, exc = run(inputs, [])
    assert isinstance(exc, InputError) and "silent" in str(exc) and transport.calls == []


def test_a_video_of_the_wrong_length_fails_the_pre_upload_check(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    make_wav(inputs.audio, seconds=4.0)
    transport, _, exc = run(inputs, [])
    assert isinstance(exc, InputError) and "lasts 2.0 s but final.wav lasts 4.0 s" in str(exc)


def test_chunk_size_must_be_a_multiple_of_256_kib():
    assert chunk_bytes(8) == 8 * 1024 * 1024 and chunk_bytes(0.25) == CHUNK
    with pytest.raises(ConfigError, match="multiple of 0.25"):
        chunk_bytes(0.3)


def test_quota_resets_at_the_next_midnight_pacific():
    summer = next_quota_reset(datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc))  # 05:00 PDT
    assert summer == datetime(2025, 7, 2, 7, 0, tzinfo=timezone.utc)
    winter = next_quota_reset(datetime(2025, 1, 10, 9, 0, tzinfo=timezone.utc))  # 01:00 PST on the 10th
    assert winter == datetime(2025, 1, 11, 8, 0, tzinfo=timezone.utc)


def test_backoff_is_jittered_exponential_and_capped():
    waits: list[float] = []
    values = iter([0.0, 1.0, 0.5, 1.0, 1.0])
    retry = RetryPolicy(max_retries=5, base=1.0, cap=8.0, sleep=waits.append, rand=lambda: next(values))
    for attempt in range(1, 6):
        retry.wait(attempt)
    assert waits == [0.5, 2.0, 3.0, 8.0, 8.0]


def test_a_captions_insert_that_failed_but_went_through_is_not_added_twice(tmp_path, media):
    """A 503 after YouTube stored the track: the retry finds our track instead of adding a second."""
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    ours = {"id": "CAP7", "snippet": {"videoId": "VID00000001", "language": "en", "name": "", "trackKind": "standard"}}
    other = {"id": "ASR1", "snippet": {"videoId": "VID00000001", "language": "de", "name": "", "trackKind": "asr"}}
    transport, said, result = run(inputs, [session(), *chunk_responses(size), ok({"kind": "youtube#thumbnailSetResponse"}),
                                           error(503, "backendError"), ok({"items": [other, ours]})])
    assert result.sent == ["video", "thumbnail", "captions"], result
    inserts = [c for c in transport.calls if c[0] == "POST" and "/captions" in c[1]]
    assert len(inserts) == 1  # the one that failed; no second track
    assert any(c[0] == "GET" and "/captions" in c[1] and "videoId=VID00000001" in c[1] for c in transport.calls)
    assert state(inputs)["captions"]["data"]["caption_id"] == "CAP7"
    assert not transport._iterable


def test_a_captions_insert_that_failed_and_left_nothing_is_sent_again(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    transport, said, result = run(inputs, [session(), *chunk_responses(size), ok({"kind": "youtube#thumbnailSetResponse"}),
                                           error(503, "backendError"), ok({"items": []}), ok({"id": "CAP2"})])
    assert result.sent == ["video", "thumbnail", "captions"], result
    assert len([c for c in transport.calls if c[0] == "POST" and "/captions" in c[1]]) == 2
    assert state(inputs)["captions"]["data"]["caption_id"] == "CAP2"
    assert not transport._iterable
