"""The dry run's record: every request step 12 would send, as the client library would send it.

The requests are built by the same code as a real upload, on a service whose transport
refuses to send anything, so the manifest shows the real method, URL, parameters and body.
It holds no secret: requests get their Authorization header only at send time, and only the
Content-Type header is kept.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from common.state.atomic import atomic_write_json

MANIFEST_VERSION = 1


class NoNetwork:
    """An httplib2-shaped transport for the dry run: building requests is fine, sending one is a bug."""

    def request(self, uri: str, method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"the dry run tried to send {method} {urlsplit(uri).path}")


def offline_service() -> Any:
    """The YouTube service from the discovery document shipped in the wheel; it cannot send."""
    from googleapiclient.discovery import build

    return build("youtube", "v3", http=NoNetwork(), static_discovery=True, cache_discovery=False)


def describe_request(request: Any, *, item: str, body: dict[str, Any] | None, media: Path | None,
                     mimetype: str | None, chunk_size: int | None, depends_on: str | None = None) -> dict[str, Any]:
    """One manifest entry: what an HttpRequest would send, with the media file named, not inlined."""
    parts = urlsplit(request.uri)
    entry: dict[str, Any] = {
        "item": item,
        "api_method": request.methodId,
        "http_method": request.method,
        "url": f"{parts.scheme}://{parts.netloc}{parts.path}",
        "parameters": dict(parse_qsl(parts.query)),
        "body": body,
    }
    content_type = {k.lower(): v for k, v in (request.headers or {}).items()}.get("content-type")
    if content_type and not content_type.startswith("multipart/"):
        entry["content_type"] = content_type
    if media is not None:
        entry["media"] = {
            "file": str(media), "size": media.stat().st_size, "mimetype": mimetype,
            "upload": "resumable" if request.resumable is not None and request.resumable.resumable() else "simple",
        }
        if chunk_size and entry["media"]["upload"] == "resumable":
            entry["media"]["chunk_size"] = chunk_size
    if depends_on:
        entry["depends_on"] = depends_on
    return entry


def write_manifest(path: Path, *, reason: str, video: dict[str, Any], requests: list[dict[str, Any]],
                   done: list[dict[str, Any]], notes: list[str], authorize: str) -> Path:
    manifest = {
        "version": MANIFEST_VERSION,
        "dry_run": reason,
        "video": video,
        "requests": requests,
        "already_done": done,
        "notes": notes,
        "to_upload_for_real": authorize,
    }
    json.dumps(manifest)  # fail here, not halfway through the write, on anything unserialisable
    return atomic_write_json(path, manifest)
