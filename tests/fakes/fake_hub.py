"""A fake Hugging Face Hub on 127.0.0.1: the file-download API that huggingface_hub speaks.

    python fake_hub.py --config hub.json [--port 0] [--stall-after BYTES]

Why it is shaped like this: `generate.py --setup` asks with huggingface_hub's own
get_hf_file_metadata (a HEAD on /{repo}/resolve/{revision}/{path}) and http_get (a GET, with
`Range: bytes=N-` to resume). The answers follow the real Hub as huggingface_hub's
file_download.py and utils/_http.py read them: a large (LFS) file is a 302 to a CDN URL carrying
X-Repo-Commit, X-Linked-Etag (the content's sha256, quoted) and X-Linked-Size, with the pointer's
own ETag (the CDN is another origin, as the real one is: its own port here); a small file is a 200 with its ETag and Content-Length; refusals carry X-Error-Code
(RepoNotFound, GatedRepo with 401 without a token and 403 with a token that has no access,
RevisionNotFound, EntryNotFound) and X-Error-Message. The "CDN" answers Range requests with 206
and Content-Range. `/plain/<name>` is a plain web server's file (an ETag that is no checksum).

The config (JSON): {"commit": 40 hex, "repos": {"org/name": {"gated": bool, "tokens": [...],
"files": {"path": {"file": "/abs/path", "lfs": true, "corrupt": false, "announce_size": int}}}},
"plain": {"name": "/abs/path"}, "record": "/abs/requests.jsonl"}. `corrupt` serves the bytes with
the first one changed (the announced sha256 stays that of the file); `announce_size` claims
another size in the HEAD answer. --stall-after makes the CDN send that many bytes of a file at
full speed and then trickle (a slow network), so a test can kill a download mid-file. Every
request is appended to `record` (method, path, Range, whether a token came; never the token).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
_lock = threading.Lock()


class Hub:
    def __init__(self, config: dict[str, Any], stall_after: int | None) -> None:
        self.config = config
        self.commit = config.get("commit", "0123456789abcdef0123456789abcdef01234567")
        self.stall_after = stall_after
        self.cdn_url = ""  # the CDN's own origin (another port): huggingface_hub keeps the token off it
        self.blobs: dict[str, dict[str, Any]] = {}  # sha256 -> file entry, for the CDN
        for repo in config.get("repos", {}).values():
            for entry in repo.get("files", {}).values():
                entry["sha256"] = hashlib.sha256(Path(entry["file"]).read_bytes()).hexdigest()
                self.blobs[entry["sha256"]] = entry

    def record(self, **event: Any) -> None:
        path = self.config.get("record")
        if path:
            with _lock, open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(event) + "\n")


def _content(entry: dict[str, Any]) -> bytes:
    data = Path(entry["file"]).read_bytes()
    if entry.get("corrupt") and data:
        data = bytes([data[0] ^ 0xFF]) + data[1:]
    return data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    hub: Hub

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the record file says what happened
        pass

    # --- helpers ---
    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _refuse(self, status: int, code: str, message: str, commit: bool = False) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = self.hub.commit
        self._send(status, headers, json.dumps({"error": message}).encode())

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def _serve_bytes(self, data: bytes, headers: dict[str, str], stall: bool) -> None:
        """The bytes, or the part a `Range: bytes=N-` asks for (206), trickling after --stall-after."""
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and data:
            first = wanted[6:].split("-", 1)[0]
            start = int(first) if first.isdigit() else 0
            if start >= len(data):
                self._send(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        headers.update({"Accept-Ranges": "bytes", "Content-Length": str(len(body)),
                        "Content-Type": "application/octet-stream"})
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        try:
            while sent < len(body):
                slow = stall and self.hub.stall_after is not None and start + sent >= self.hub.stall_after
                size = 1024 if slow else CHUNK
                self.wfile.write(body[sent:sent + size])
                sent += size
                if slow:
                    self.wfile.flush()
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- routes ---
    def _route(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.record(method=self.command, path=path, range=self.headers.get("Range"),
                        token=self._token() is not None)
        if path.startswith("/cdn/"):
            entry = self.hub.blobs.get(path[5:])
            if entry is None:
                self._send(404, {}, b"no such blob")
                return
            self._serve_bytes(_content(entry), {"ETag": f'"{entry["sha256"]}"'}, stall=True)
            return
        if path.startswith("/plain/"):
            file = self.hub.config.get("plain", {}).get(path[7:])
            if file is None:
                self._send(404, {}, b"Not Found")
                return
            data = Path(file).read_bytes()
            self._serve_bytes(data, {"ETag": f'"{len(data):x}-5f2a"'}, stall=True)
            return
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._refuse(404, "RepoNotFound", "Repository not found")
            return
        repo_id, revision, file_path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo = self.hub.config.get("repos", {}).get(repo_id)
        if repo is None:
            self._refuse(401, "RepoNotFound", "Repository not found")
            return
        if repo.get("gated"):
            token = self._token()
            if token is None:
                self._refuse(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it "
                                               "and be authenticated to access it. Please log in.")
                return
            if token not in repo.get("tokens", []):
                self._refuse(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the "
                                               f"authorized list. Visit https://huggingface.co/{repo_id} to ask for access.")
                return
        if revision not in ("main", self.hub.commit):
            self._refuse(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        entry = repo.get("files", {}).get(file_path)
        if entry is None:
            self._refuse(404, "EntryNotFound", f"{file_path} does not exist on \"{revision}\"", commit=True)
            return
        data_size = Path(entry["file"]).stat().st_size
        size = entry.get("announce_size") or data_size
        common = {"X-Repo-Commit": self.hub.commit}
        if entry.get("lfs", True):
            location = f"{self.hub.cdn_url}/cdn/{entry['sha256']}"
            common.update({"Location": location, "X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(size),
                           "ETag": f'"{hashlib.sha1(entry["sha256"].encode()).hexdigest()}"'})
            self._send(302, common, f"Found. Redirecting to {location}".encode())
            return
        common["ETag"] = f'"{hashlib.sha1(Path(entry["file"]).read_bytes()).hexdigest()}"'
        self._serve_bytes(_content(entry), common, stall=False)

    do_GET = _route
    do_HEAD = _route


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stall-after", type=int, default=None)
    args = parser.parse_args()
    Handler.hub = Hub(json.loads(Path(args.config).read_text(encoding="utf-8")), args.stall_after)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = cdn.daemon_threads = True
    Handler.hub.cdn_url = f"http://127.0.0.1:{cdn.server_address[1]}"
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    print(f"fake hub listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
