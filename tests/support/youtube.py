"""Test kit for step 12: tiny real media, a pipeline folder with every input, and the Google client's own HTTP mock.

No network anywhere: the service is built from the discovery document shipped in the
googleapiclient wheel, over `HttpMockSequence` (wrapped by google-auth's AuthorizedHttp,
exactly as in a real run).
"""
from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from googleapiclient.http import HttpMockSequence
from PIL import Image

from common.media.ffmpeg import ffmpeg_exe
from tests.fakes import stop_process

UPLOAD_URI = "https://www.googleapis.com/upload/youtube/v3/videos?uploadType=resumable&upload_id=SESSION1"
TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/youtube.force-ssl"
SECRETS = ("ya29.ACCESS-SECRET", "1//REFRESH-SECRET", "CLIENT-SECRET-VALUE")
CHUNK = 256 * 1024


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True,
                   stdin=subprocess.DEVNULL, timeout=60)


def make_video(path: Path, *, size: str = "320x180", seconds: float = 2.0, black: bool = False, silent: bool = False) -> Path:
    """A real H.264/AAC MP4; random pixels make it ~0.9 MB for 2 s, so it spans several 256 KiB chunks."""
    picture = f"color=black:s={size}:r=12:d={seconds}" if black else \
        f"nullsrc=s={size}:r=12:d={seconds},geq=lum='random(1)*255':cb=128:cr=128"
    sound = "anullsrc=r=44100:cl=mono" if silent else f"sine=frequency=440:duration={seconds}:sample_rate=44100"
    ffmpeg("-f", "lavfi", "-i", picture, "-f", "lavfi", "-i", sound, "-t", str(seconds), "-c:v", "libx264",
           "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(path))
    return path


def make_wav(path: Path, seconds: float = 2.0) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=44100", str(path))
    return path


def write_inputs(pipeline: Path, media: dict[str, Path], *, shorts: int = 0) -> Path:
    """Everything step 12 reads, in the places the pipeline writes them."""
    out, inp = pipeline / "output", pipeline / "input"
    (out / "shorts").mkdir(parents=True, exist_ok=True)
    inp.mkdir(parents=True, exist_ok=True)
    (out / "final.mp4").write_bytes(media["video"].read_bytes())
    (out / "final.wav").write_bytes(media["wav"].read_bytes())
    for n in range(1, shorts + 1):
        (out / "shorts" / f"shorts.v{n}.mp4").write_bytes(media["short"].read_bytes())
    Image.new("RGB", (1280, 720), (30, 60, 90)).save(out / "thumbnail.png")
    (inp / "10.title.txt").write_text("The Crimson Rose of Rosemund Valley", encoding="utf-8")
    (out / "description.txt").write_text("Holmes and Watson investigate.\n", encoding="utf-8")
    (out / "tags.txt").write_text("sherlock holmes\nmystery\naudio drama\n", encoding="utf-8")
    (inp / "2.story.srt").write_text("00:00:00,000 --> 00:00:01,000\nHello.\n\n00:00:01,000 --> 00:00:02,000\nBye.\n",
                                     encoding="utf-8")
    return pipeline


def credentials(*, expired: bool = False) -> Any:
    from google.oauth2.credentials import Credentials

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return Credentials(
        token=SECRETS[0], refresh_token=SECRETS[1], client_id="123.apps.googleusercontent.com",
        client_secret=SECRETS[2], token_uri=TOKEN_URI, scopes=[SCOPE],
        expiry=now + (timedelta(hours=-1) if expired else timedelta(hours=1)),
    )


def write_token(path: Path, *, expired: bool = False, scopes: list[str] | None = None) -> Path:
    info = json.loads(credentials(expired=expired).to_json())
    if scopes is not None:
        info["scopes"] = scopes
    path.write_text(json.dumps(info), encoding="utf-8")
    return path


class Transport(HttpMockSequence):
    """HttpMockSequence that keeps each request's body as bytes (chunks are streams, read once when
    sent) and raises a response given as an exception, like a dropped connection."""

    def __init__(self, responses: list[tuple[dict[str, str], Any]]) -> None:
        super().__init__(list(responses))
        self.bodies: list[bytes | None] = []

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None,
                redirections: int = 1, connection_type: Any = None) -> Any:
        if hasattr(body, "read"):
            body = body.read()
        self.bodies.append(body if body is None or isinstance(body, bytes) else str(body).encode())
        if self._iterable and isinstance(self._iterable[0][1], BaseException):
            self.request_sequence.append((uri, method, body, headers))
            raise self._iterable.pop(0)[1]
        return super().request(uri, method, body, headers, redirections, connection_type)

    @property
    def calls(self) -> list[tuple[str, str]]:
        return [(method, uri) for uri, method, _, _ in self.request_sequence]

    def headers(self, index: int) -> dict[str, str]:
        return {k.lower(): v for k, v in (self.request_sequence[index][3] or {}).items()}


def ok(body: dict[str, Any] | None = None) -> tuple[dict[str, str], str]:
    return {"status": "200"}, json.dumps(body or {})


def session() -> tuple[dict[str, str], str]:
    return {"status": "200", "location": UPLOAD_URI}, ""


def held(last_byte: int | None) -> tuple[dict[str, str], str]:
    """308 Resume Incomplete: the server holds bytes 0..last_byte (None: nothing yet)."""
    return ({"status": "308"} if last_byte is None else {"status": "308", "range": f"bytes=0-{last_byte}"}), ""


def error(status: int, reason: str = "", message: str = "failure") -> tuple[dict[str, str], str]:
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
    return {"status": str(status)}, json.dumps(body)


def token_ok(access: str = "ya29.NEW-ACCESS") -> tuple[dict[str, str], str]:
    return {"status": "200"}, json.dumps({"access_token": access, "expires_in": 3600, "scope": SCOPE, "token_type": "Bearer"})


def video_done(video_id: str = "VID00000001") -> tuple[dict[str, str], str]:
    return ok({"kind": "youtube#video", "id": video_id, "status": {"uploadStatus": "uploaded"}})


def chunk_responses(size: int, video_id: str = "VID00000001", start: int = 0) -> list[tuple[dict[str, str], str]]:
    """The server's answers to each chunk from `start` to the end, the last one carrying the video."""
    answers = []
    position = start
    while position + CHUNK < size:
        position += CHUNK
        answers.append(held(position - 1))
    answers.append(video_done(video_id))
    return answers


# ----------------------------------------------------------------------------- the fake YouTube server


class FakeYouTube:
    """A running tests/fakes/fake_youtube.py; a context manager, so it is always stopped."""

    def __init__(self, proc: "subprocess.Popen[str]", url: str, record: Path) -> None:
        self.proc, self.url, self.record = proc, url, record

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = self.record.read_text(encoding="utf-8").splitlines()
        found = [json.loads(line) for line in lines if line.endswith("}")]  # a line being written is skipped
        return [e for e in found if event is None or e["event"] == event]

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        import requests

        answer = requests.request("POST" if body is not None else "GET", f"{self.url}/_fake/{path}", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "FakeYouTube":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_fake_youtube(tmp_path: Path, record: Path | None = None, timeout: float = 30.0) -> FakeYouTube:
    """Start the fake and return once it printed its address (or raise, having stopped it)."""
    import sys
    import time

    record = record or tmp_path / "youtube_events.jsonl"
    script = Path(__file__).resolve().parents[1] / "fakes" / "fake_youtube.py"
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0", "--record", str(record)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("listening on "):
                return FakeYouTube(proc, line.split()[-1], record)
            if not line and proc.poll() is not None:
                break
        raise RuntimeError(f"fake YouTube did not start (exit {proc.poll()})")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        raise


def write_token_for(path: Path, url: str) -> Path:
    """A token.json whose access token has expired, so the first thing a run does is refresh it at `url`."""
    info = json.loads(credentials(expired=True).to_json())
    info["token_uri"] = f"{url}/token"
    path.write_text(json.dumps(info), encoding="utf-8")
    return path
