#!/usr/bin/env python3
"""A fake YouTube Data API v3 server: the parts step 12 uses, over real HTTP on 127.0.0.1.

    python tests/fakes/fake_youtube.py --port 0 --record FILE

prints `listening on http://127.0.0.1:PORT` once it answers; point the pipeline at it with
YOUTUBE_API_URL=http://127.0.0.1:PORT. What it speaks, as Google's documentation describes it:

- `POST /token`: the OAuth token endpoint (grant_type=refresh_token), a fresh access token.
- The resumable upload protocol of `videos.insert`: `POST /upload/youtube/v3/videos?uploadType=
  resumable` with the video resource opens a session and answers 200 with its URI in `Location`;
  `PUT <session>` with `Content-Range: bytes FIRST-LAST/TOTAL` stores a chunk and answers
  308 Resume Incomplete with `Range: bytes=0-N` (no Range while it holds nothing), or, with the
  last byte, 200 and the video resource; an empty `PUT` with `Content-Range: bytes */TOTAL` is
  the status query (308 + Range, or 200 with the video when the upload finished). A session the
  server does not know answers 404, an expired one 410.
- `thumbnails.set` (`POST /upload/youtube/v3/thumbnails/set?videoId=`): a video has one custom
  thumbnail; setting it again replaces it.
- `captions.insert` (multipart `POST /upload/youtube/v3/captions`), `captions.update` (`PUT`) and
  `captions.list` (`GET /youtube/v3/captions?videoId=`).
- Faults for tests: `POST /_fake/fail` with `{"reason": "quotaExceeded" | "uploadLimitExceeded" |
  "backendError", "count": N, "on": "any" | "insert" | "chunk" | "thumbnail" | "captions"}` makes
  the next N matching requests fail as YouTube does (403 / 400 / 503); `POST /_fake/expire` makes
  every unfinished session expire (410). `GET /_fake/state` shows videos and sessions.

`--record FILE` appends one JSON line per event (flushed), e.g. `{"event": "video_created",
"video_id": ...}`; events are recorded when the server has done the thing, before it answers.
"""
from __future__ import annotations

import argparse
import asyncio
import email
import hashlib
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported: its sibling by name
from serving import serve_until_stopped  # noqa: E402

_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_QUERY = re.compile(r"bytes \*/(\d+)")


@dataclass
class Session:
    id: str
    total: int
    resource: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)
    video_id: str | None = None
    expired: bool = False


@dataclass
class Video:
    id: str
    resource: dict[str, Any]
    thumbnail: str | None = None
    captions: list[dict[str, Any]] = field(default_factory=list)


class State:
    def __init__(self, record: Path | None) -> None:
        self.record_path = record
        self.sessions: dict[str, Session] = {}
        self.videos: dict[str, Video] = {}
        self.faults: list[dict[str, Any]] = []
        self.ids = itertools.count(1)
        self.tag = f"{os.getpid():x}{int(time.time()) % 100000:05d}"

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{self.tag}{next(self.ids):04d}"

    def record(self, event: str, **fields: Any) -> None:
        if self.record_path is None:
            return
        line = json.dumps({"event": event, "time": time.time(), **fields})
        with open(self.record_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def fault(self, on: str) -> web.Response | None:
        for fault in self.faults:
            if fault["count"] > 0 and fault.get("on", "any") in ("any", on):
                fault["count"] -= 1
                reason = fault["reason"]
                status = {"quotaExceeded": 403, "uploadLimitExceeded": 400}.get(reason, 503)
                self.record("fault", reason=reason, on=on, status=status)
                return error(status, reason, f"fake {reason}")
        return None


def error(status: int, reason: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
    return web.json_response(body, status=status)


def authorized(request: web.Request) -> bool:
    return request.headers.get("Authorization", "").startswith("Bearer ")


async def token(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    form = await request.post()
    if form.get("grant_type") != "refresh_token" or not form.get("refresh_token"):
        return web.json_response({"error": "invalid_request"}, status=400)
    state.record("token")
    return web.json_response({"access_token": f"ya29.fake-{state.new_id('T')}", "expires_in": 3600,
                              "scope": "https://www.googleapis.com/auth/youtube.force-ssl", "token_type": "Bearer"})


def _video_resource(video: Video) -> dict[str, Any]:
    return {"kind": "youtube#video", "id": video.id, **video.resource, "status": {
        **video.resource.get("status", {}), "uploadStatus": "uploaded"}}


async def upload_video(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    if not authorized(request):
        return error(401, "authError", "no credentials")
    upload_id = request.query.get("upload_id")
    if request.method == "POST" and not upload_id:
        if request.query.get("uploadType") != "resumable":
            return error(400, "badRequest", "only resumable uploads here")
        if (failed := state.fault("insert")) is not None:
            return failed
        resource = await request.json()
        session = Session(state.new_id("S"), int(request.headers.get("X-Upload-Content-Length", "0")), resource)
        state.sessions[session.id] = session
        state.record("session_created", session=session.id, total=session.total)
        location = f"{request.url.scheme}://{request.host}/upload/youtube/v3/videos?uploadType=resumable&upload_id={session.id}"
        return web.Response(status=200, headers={"Location": location})
    session = state.sessions.get(upload_id or "")
    if session is None:
        return error(404, "notFound", "no such upload session")
    if session.expired:
        return error(410, "gone", "the upload session expired")
    body = await request.read()
    content_range = request.headers.get("Content-Range", "")
    if _QUERY.fullmatch(content_range) is not None and not body:
        state.record("status_query", session=session.id, held=len(session.data), done=session.video_id is not None)
        return _session_answer(state, session)
    match = _RANGE.fullmatch(content_range)
    if match is None:
        return error(400, "badRequest", f"bad Content-Range {content_range!r}")
    if (failed := state.fault("chunk")) is not None:
        return failed
    first, last = int(match.group(1)), int(match.group(2))
    if session.video_id is None:
        if first > len(session.data) or last - first + 1 != len(body):
            return _session_answer(state, session)  # a gap: say what is held, store nothing
        session.data[first:] = body  # an overlap re-sends bytes already held
        state.record("chunk", session=session.id, first=first, last=last, total=session.total)
        if len(session.data) >= session.total:
            video = Video(state.new_id("V"), session.resource)
            state.videos[video.id] = video
            session.video_id = video.id
            state.record("video_created", video_id=video.id, session=session.id, size=len(session.data),
                         sha256=hashlib.sha256(bytes(session.data)).hexdigest(),
                         title=session.resource.get("snippet", {}).get("title"))
    return _session_answer(state, session)


def _session_answer(state: State, session: Session) -> web.Response:
    if session.video_id is not None:
        return web.json_response(_video_resource(state.videos[session.video_id]), status=200)
    headers = {"Range": f"bytes=0-{len(session.data) - 1}"} if session.data else {}
    return web.Response(status=308, headers=headers)


async def set_thumbnail(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    if not authorized(request):
        return error(401, "authError", "no credentials")
    video = state.videos.get(request.query.get("videoId", ""))
    if video is None:
        return error(404, "videoNotFound", "no such video")
    if (failed := state.fault("thumbnail")) is not None:
        return failed
    data = await request.read()
    video.thumbnail = hashlib.sha256(data).hexdigest()
    state.record("thumbnail_set", video_id=video.id, sha256=video.thumbnail)
    return web.json_response({"kind": "youtube#thumbnailSetResponse", "items": [{"default": {"url": "x"}}]})


def _multipart(request: web.Request, body: bytes) -> tuple[dict[str, Any], bytes]:
    message = email.message_from_bytes(f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode() + body)
    parts = message.get_payload()
    return json.loads(parts[0].get_payload()), parts[1].get_payload(decode=True) or b""


async def captions(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    if not authorized(request):
        return error(401, "authError", "no credentials")
    if (failed := state.fault("captions")) is not None:
        return failed
    if request.method == "GET":
        video = state.videos.get(request.query.get("videoId", ""))
        if video is None:
            return error(404, "videoNotFound", "no such video")
        state.record("captions_listed", video_id=video.id, count=len(video.captions))
        return web.json_response({"kind": "youtube#captionListResponse", "items": [
            {"kind": "youtube#caption", "id": t["id"], "snippet": t["snippet"]} for t in video.captions]})
    resource, data = _multipart(request, await request.read())
    if request.method == "PUT":
        for video in state.videos.values():
            for track in video.captions:
                if track["id"] == resource.get("id"):
                    track["sha256"] = hashlib.sha256(data).hexdigest()
                    state.record("caption_updated", video_id=video.id, caption_id=track["id"])
                    return web.json_response({"kind": "youtube#caption", **track})
        return error(404, "captionNotFound", "no such caption track")
    snippet = resource.get("snippet", {})
    video = state.videos.get(snippet.get("videoId", ""))
    if video is None:
        return error(404, "videoNotFound", "no such video")
    track = {"id": state.new_id("C"), "snippet": {"videoId": video.id, "language": snippet.get("language", ""),
                                                  "name": snippet.get("name", ""), "trackKind": "standard"},
             "sha256": hashlib.sha256(data).hexdigest()}
    video.captions.append(track)
    state.record("caption_added", video_id=video.id, caption_id=track["id"], language=track["snippet"]["language"])
    return web.json_response({"kind": "youtube#caption", "id": track["id"], "snippet": track["snippet"]})


async def control_fail(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    fault = await request.json()
    state.faults.append({"reason": fault["reason"], "count": int(fault.get("count", 1)), "on": fault.get("on", "any")})
    return web.json_response({"ok": True})


async def control_expire(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    expired = [s.id for s in state.sessions.values() if s.video_id is None]
    for sid in expired:
        state.sessions[sid].expired = True
    state.record("sessions_expired", sessions=expired)
    return web.json_response({"expired": expired})


async def control_state(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    return web.json_response({
        "videos": {v.id: {"title": v.resource.get("snippet", {}).get("title"), "thumbnail": v.thumbnail,
                          "captions": [t["snippet"]["language"] for t in v.captions]} for v in state.videos.values()},
        "sessions": {s.id: {"held": len(s.data), "total": s.total, "video_id": s.video_id, "expired": s.expired}
                     for s in state.sessions.values()},
    })


def build_app(state: State) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["state"] = state
    app.router.add_post("/token", token)
    app.router.add_route("*", "/upload/youtube/v3/videos", upload_video)
    app.router.add_post("/upload/youtube/v3/thumbnails/set", set_thumbnail)
    app.router.add_route("*", "/upload/youtube/v3/captions", captions)
    app.router.add_get("/youtube/v3/captions", captions)
    app.router.add_post("/_fake/fail", control_fail)
    app.router.add_post("/_fake/expire", control_expire)
    app.router.add_get("/_fake/state", control_state)
    return app


async def serve(args: argparse.Namespace) -> None:
    state = State(Path(args.record) if args.record else None)
    await serve_until_stopped(build_app(state), "127.0.0.1", args.port, "listening on http://127.0.0.1:{port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--record", help="append one JSON line per event to this file")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
