"""Sending requests to YouTube so that an interruption, a flaky network or a spent quota costs nothing.

A video goes up with googleapiclient's resumable protocol, chunk by chunk. The session URI
is saved the moment Google grants it and the byte count after every chunk, so a process
killed mid-upload resumes the same session: it first asks the server how much it holds
(an empty PUT with `Content-Range: bytes */size`) and sends the rest from there. Only
transient failures are retried (5xx, 429, rate-limit 403s, connection errors), with
jittered exponential backoff and a bound; quota errors stop at once with the reset time;
anything else stops at once with YouTube's own reason.
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from common.run.errors import ConfigError, JobError, QuotaError, ServiceError

CHUNK_UNIT = 256 * 1024  # the resumable protocol wants chunks in multiples of 256 KiB
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
UPLOAD_LIMIT_REASONS = frozenset({"uploadLimitExceeded"})
EXPIRED_SESSION = (404, 410)
PACIFIC = "America/Los_Angeles"


def chunk_bytes(megabytes: float) -> int:
    """YOUTUBE_CHUNK_MB in bytes; refused unless a whole multiple of 256 KiB (0.25 MB)."""
    size = int(round(float(megabytes) * 1024 * 1024))
    if size <= 0 or size % CHUNK_UNIT:
        raise ConfigError(f"YOUTUBE_CHUNK_MB is {megabytes}; use a multiple of 0.25 (256 KiB), e.g. 8.")
    return size


@dataclass
class RetryPolicy:
    """At most `max_retries` consecutive transient failures; waits grow 1, 2, 4 ... `cap` s, jittered."""

    max_retries: int = 8
    base: float = 1.0
    cap: float = 64.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    waits: list[float] = field(default_factory=list)

    def wait(self, attempt: int) -> float:
        # "Equal jitter": at least half the step, so retries never bunch up at zero.
        step = min(self.cap, self.base * 2 ** (attempt - 1))
        delay = step / 2 + self.rand() * step / 2
        self.waits.append(delay)
        self.sleep(delay)
        return delay


def next_quota_reset(now: datetime | None = None) -> datetime:
    """YouTube's daily quota resets at midnight Pacific time."""
    try:
        from zoneinfo import ZoneInfo

        pacific: Any = ZoneInfo(PACIFIC)
    except Exception:  # no tz database (Windows without the tzdata package): standard time is close enough
        pacific = timezone(timedelta(hours=-8))
    local = (now or datetime.now(timezone.utc)).astimezone(pacific)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=pacific)
    return midnight.astimezone(timezone.utc)


def _in_words(delta: timedelta) -> str:
    minutes = max(1, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def http_error_details(exc: Exception) -> tuple[int, str, str]:
    """(status, reason, message) of a googleapiclient HttpError, read from YouTube's JSON error body."""
    status = int(getattr(getattr(exc, "resp", None), "status", 0) or 0)
    reason, message = "", ""
    content = getattr(exc, "content", b"") or b""
    try:
        error = json.loads(content.decode("utf-8") if isinstance(content, bytes) else content).get("error", {})
        if isinstance(error, dict):
            errors = error.get("errors") or []
            if errors and isinstance(errors[0], dict):
                reason = str(errors[0].get("reason", ""))
            message = str(error.get("message", ""))
            reason = reason or str(error.get("status", ""))
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = content[:200].decode("utf-8", "replace") if isinstance(content, bytes) else str(content)[:200]
    return status, reason, message


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httplib2
    from google.auth.exceptions import TransportError

    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, socket.timeout, ssl.SSLError,
                                               http.client.HTTPException, httplib2.HttpLib2Error, TransportError)
    try:  # httplib2 goes through PySocks when it is installed (selenium brings it): its proxy errors are network errors
        import socks
    except ImportError:
        return errors
    return (*errors, socks.ProxyError)


def classify(exc: BaseException) -> str:
    """transient | quota | upload_limit | auth | fatal."""
    from google.auth.exceptions import RefreshError
    from googleapiclient.errors import HttpError

    if isinstance(exc, RefreshError):
        return "transient" if getattr(exc, "retryable", False) else "auth"
    if isinstance(exc, HttpError):
        status, reason, _ = http_error_details(exc)
        if reason in QUOTA_REASONS:
            return "quota"
        if reason in UPLOAD_LIMIT_REASONS:
            return "upload_limit"
        if status >= 500 or status == 429 or (status == 403 and reason in RATE_LIMIT_REASONS):
            return "transient"
        if status == 401:
            return "auth"
        return "fatal"
    if isinstance(exc, _transport_errors()):
        return "transient"
    return "fatal"


def translate(exc: BaseException, what: str, *, now: datetime | None = None, resumable_note: str = "") -> Exception:
    """The PipelineError a user reads for a failure that will not be retried (any more)."""
    kind = classify(exc)
    again = "run the same command again to continue where it stopped" + resumable_note
    if kind in ("quota", "upload_limit"):
        now = now or datetime.now(timezone.utc)
        reset = next_quota_reset(now)
        local = reset.astimezone()
        if kind == "quota":
            head = "YouTube's daily API quota for this project is used up (quotaExceeded)"
        else:
            head = "this channel has reached YouTube's daily upload limit (uploadLimitExceeded)"
        return QuotaError(
            f"{head} while {what}; it resets at midnight Pacific time ({local:%Y-%m-%d %H:%M %Z} here, "
            f"in {_in_words(reset - now)}): {again}."
        )
    if kind == "auth":
        return ConfigError(f"YouTube no longer accepts the authorisation while {what}: run "
                           f"python 12.youtube.py --authorize, then {again}.")
    if kind == "transient":
        detail = f"HTTP {http_error_details(exc)[0]}" if hasattr(exc, "resp") else type(exc).__name__
        return ServiceError(f"YouTube kept failing ({detail}) while {what}; {again} later.")
    from googleapiclient.errors import HttpError

    if isinstance(exc, HttpError):
        status, reason, message = http_error_details(exc)
        return JobError(f"YouTube refused {what} (HTTP {status} {reason}: {message.rstrip('.')}); "
                        "fix the cause, then run the same command again.")
    raise exc  # not a failure we know how to describe: our bug, keep the traceback


def _retry(exc: Exception, failures: int, what: str, policy: RetryPolicy, say: Callable[[str], None], *,
           where: str = "", resumable_note: str = "") -> int:
    """After a failure: wait and return the new failure count when it is transient and retries are left,
    else raise what the user should read."""
    if classify(exc) != "transient" or failures >= policy.max_retries:
        raise translate(exc, what, resumable_note=resumable_note) from None
    failures += 1
    delay = policy.wait(failures)
    say(f"  {what}: {_short(exc)}{where}; retry {failures}/{policy.max_retries} in {delay:.1f} s")
    return failures


def with_retries(call: Callable[[], Any], what: str, policy: RetryPolicy,
                 say: Callable[[str], None] = print) -> Any:
    """Run one non-resumable request, retrying transient failures only."""
    failures = 0
    while True:
        try:
            return call()
        except Exception as exc:
            failures = _retry(exc, failures, what, policy, say)


def _short(exc: BaseException) -> str:
    if hasattr(exc, "resp"):
        status, reason, _ = http_error_details(exc)
        return f"HTTP {status}{' ' + reason if reason else ''}"
    return type(exc).__name__


@dataclass(frozen=True)
class Session:
    """A resumable upload in progress: where to send bytes, and how many the server confirmed."""

    uri: str
    progress: int
    size: int


class _SessionWatch:
    """Passes requests through and reports a new upload session the moment Google grants it,
    before the first chunk is sent, so even a kill during the first chunk loses no session."""

    def __init__(self, http: Any, on_session: Callable[[str], None]) -> None:
        self._http = http
        self._on_session = on_session

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        resp, content = self._http.request(uri, method, body=body, headers=headers, **kwargs)
        if method == "POST" and resp.status == 200 and "location" in resp:
            self._on_session(resp["location"])
        return resp, content


def _ask_server(request: Any, size: int) -> tuple[str, Any]:
    """Where a saved session stands: ("done", response body) | ("resume", bytes held) | ("expired", None)."""
    from googleapiclient.errors import HttpError

    resp, content = request.http.request(
        request.resumable_uri, "PUT", headers={"Content-Range": f"bytes */{size}", "content-length": "0"}
    )
    if resp.status in (200, 201):
        return "done", request.postproc(resp, content)
    if resp.status == 308:
        held = int(resp["range"].rsplit("-", 1)[1]) + 1 if "range" in resp else 0
        if "location" in resp:
            request.resumable_uri = resp["location"]
        request.resumable_progress = held
        return "resume", held
    if resp.status in EXPIRED_SESSION:
        return "expired", None
    raise HttpError(resp, content, uri=request.resumable_uri)


def ask_session(request: Any, uri: str, size: int) -> tuple[str, Any]:
    """Where a saved session stands, asked for the `size` it was opened with, whatever `request` now sends:
    ("done", the video) | ("resume", bytes held) | ("expired", None). `request` is left without a session."""
    request.resumable_uri = uri
    try:
        return _ask_server(request, size)
    finally:
        request.resumable_uri, request.resumable_progress = None, 0


def upload_resumable(
    request: Any,
    *,
    what: str,
    size: int,
    saved: Session | None,
    checkpoint: Callable[[Session], None],
    policy: RetryPolicy,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`saved`: an interrupted process's session; `checkpoint` gets the session when granted and per chunk."""
    def on_session(uri: str) -> None:
        checkpoint(Session(uri, 0, size))

    transport = _SessionWatch(request.http, on_session)
    must_ask = False
    if saved is not None:
        request.resumable_uri = saved.uri
        must_ask = True
    failures = 0
    while True:
        try:
            if must_ask:
                state, value = _ask_server(request, size)
                must_ask = False
                if state == "done":
                    say(f"  {what}: the server already holds the whole file")
                    return value
                if state == "expired":
                    say(f"  {what}: the saved upload session has expired; starting a new one")
                    request.resumable_uri, request.resumable_progress = None, 0
                else:
                    say(f"  {what}: resuming the saved upload at {_mb(value)} of {_mb(size)}")
                    checkpoint(Session(request.resumable_uri, value, size))
            status, body = request.next_chunk(http=transport, num_retries=0)
        except Exception as exc:
            if request.resumable_uri:
                checkpoint(Session(request.resumable_uri, request.resumable_progress, size))
            note = f" (the upload is saved at {_mb(request.resumable_progress)} of {_mb(size)})" if request.resumable_uri else ""
            failures = _retry(exc, failures, what, policy, say, where=f" at {_mb(request.resumable_progress)}",
                              resumable_note=note)
            continue
        failures = 0
        if body is not None:
            return body
        checkpoint(Session(request.resumable_uri, request.resumable_progress, size))
        say(f"  {what}: {_mb(request.resumable_progress)} of {_mb(size)} ({100 * request.resumable_progress // max(size, 1)}%)")


def _mb(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MB"
