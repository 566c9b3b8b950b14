"""Never publish twice: a process killed at any instant of step 12 leaves state a rerun can trust."""
from __future__ import annotations

from common.publish.auth import youtube_service
from common.publish.youtube import open_state, publish
from tests.support.youtube import (
    CHUNK, UPLOAD_URI, Transport, chunk_responses, credentials, held, ok, session, video_done,
)
from tests.test_youtube_upload import after_video, media, pipeline_with, policy, state  # noqa: F401  (fixture)


def run(inputs, responses, *, resume: bool = True, kill_after_answer: str | None = None):
    """One process's worth of step 12. `kill_after_answer`: die (like SIGKILL) right after YouTube's
    answer to that item and before its checkpoint is written."""
    transport = Transport(responses)
    said: list[str] = []
    store = open_state(inputs)
    if kill_after_answer:
        real = store.record

        def record(key, fp, **kw):
            if key == kill_after_answer and kw.get("status", "done") == "done":
                raise KeyboardInterrupt  # the answer came, the checkpoint never does
            return real(key, fp, **kw)

        store.record = record
    service = youtube_service(credentials(), http=transport)
    try:
        result = publish(inputs, service, store, policy=policy(), resume=resume, say=said.append)
    except BaseException as exc:
        return transport, said, exc
    return transport, said, result


def _posts(transport, what: str) -> int:
    return sum(1 for m, u in transport.calls if m == "POST" and what in u)


def test_a_changed_title_after_a_finished_but_unrecorded_upload_does_not_upload_again(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    _, _, exc = run(inputs, [session(), *chunk_responses(size, "VID00000001")], kill_after_answer="video")
    assert isinstance(exc, KeyboardInterrupt) and state(inputs)["video"]["status"] == "uploading"
    inputs.title_file.write_text("A Better Title", encoding="utf-8")  # the metadata changed meanwhile

    second, said, result = run(inputs, [video_done("VID00000001"), *after_video()])
    assert not isinstance(result, BaseException), result
    assert result.video_id == "VID00000001"
    assert second.calls[0] == ("PUT", UPLOAD_URI) and second.headers(0)["content-range"] == f"bytes */{size}"
    assert _posts(second, "uploadType=resumable") == 0  # no second video
    assert state(inputs)["video"]["status"] == "done" and state(inputs)["video"]["data"]["video_id"] == "VID00000001"
    assert any("changed" in line and "VID00000001" in line for line in said), said


def test_a_changed_file_with_an_unfinished_session_starts_a_new_upload(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    old_size = inputs.video.stat().st_size
    run(inputs, [session(), held(CHUNK - 1), ({"status": "500"}, KeyboardInterrupt())])
    inputs.video.write_bytes(inputs.video.read_bytes() + b"\0" * 10)
    size = inputs.video.stat().st_size
    second, said, result = run(inputs, [held(CHUNK - 1), session(), *chunk_responses(size, "VID00000002"), *after_video()])
    assert result.video_id == "VID00000002"
    assert second.calls[0] == ("PUT", UPLOAD_URI) and second.headers(0)["content-range"] == f"bytes */{old_size}"
    assert _posts(second, "uploadType=resumable") == 1


def test_publishing_state_is_kept_even_with_resumable_mode_off(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    _, _, exc = run(inputs, [session(), held(CHUNK - 1), ({"status": "500"}, KeyboardInterrupt())], resume=False)
    assert isinstance(exc, KeyboardInterrupt)
    assert state(inputs)["video"]["data"]["session_uri"] == UPLOAD_URI
    second, _, result = run(inputs, [video_done("VID00000001"), *after_video()], resume=False)
    assert result.video_id == "VID00000001" and _posts(second, "uploadType=resumable") == 0
    third, _, result = run(inputs, [], resume=False)
    assert third.calls == [] and result.skipped == ["video", "thumbnail", "captions"]


def test_a_kill_after_the_caption_track_was_added_does_not_add_a_second(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    _, _, exc = run(inputs, [session(), *chunk_responses(size), *after_video()], kill_after_answer="captions")
    assert isinstance(exc, KeyboardInterrupt) and state(inputs)["captions"]["status"] == "adding"
    ours = {"id": "CAP1", "snippet": {"videoId": "VID00000001", "language": "en", "name": "", "trackKind": "standard"}}
    second, said, result = run(inputs, [ok({"items": [ours]})])
    assert not isinstance(result, BaseException), result
    assert _posts(second, "/captions") == 0
    assert second.calls[0][0] == "GET" and "/captions" in second.calls[0][1]
    assert state(inputs)["captions"]["status"] == "done" and state(inputs)["captions"]["data"]["caption_id"] == "CAP1"


def test_a_kill_before_the_caption_request_was_answered_adds_it_once(tmp_path, media):
    inputs = pipeline_with(tmp_path, media)
    size = inputs.video.stat().st_size
    _, _, exc = run(inputs, [session(), *chunk_responses(size), ok({}), ({"status": "500"}, KeyboardInterrupt())])
    assert isinstance(exc, KeyboardInterrupt) and state(inputs)["captions"]["status"] == "adding"
    second, _, result = run(inputs, [ok({"items": []}), ok({"id": "CAP2"})])
    assert _posts(second, "/captions") == 1 and state(inputs)["captions"]["data"]["caption_id"] == "CAP2"
