"""YouTube credentials: the one-time authorisation, the saved token, and the check an overnight run makes first.

The installed-app OAuth flow needs a person and a browser, so it is a separate, explicit
command (`12.youtube.py --authorize`); everything else runs unattended from token.json.
`check_credentials` always refreshes the access token: only a refresh proves the refresh
token still works (a revoked grant, or the 7-day expiry of apps still in "Testing", shows up
only there), and the overnight preflight must learn that at 11 p.m., not at 3 a.m.
Secrets never leave token.json: it is written atomically with mode 0600, and no message,
log line or manifest contains a token.
"""
from __future__ import annotations

import json
import os
import sys
import webbrowser
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from common.config.paths import code_dir
from common.state.atomic import atomic_path
from common.run.errors import ConfigError, ServiceError

SCOPES = ("https://www.googleapis.com/auth/youtube.force-ssl",)  # upload, thumbnails and captions
HTTP_TIMEOUT = 120.0
AUTHORIZE_TIMEOUT = 600  # seconds the local redirect server waits for the browser
TESTING_APP_DAYS = 7


@dataclass(frozen=True)
class CredentialPaths:
    client_secrets: Path
    token: Path


def credential_paths(settings: Any, pipeline_dir: Path) -> CredentialPaths:
    """YOUTUBE_CLIENT_SECRETS / YOUTUBE_TOKEN; relative paths are inside the pipeline folder (gen.audio/), also
    for a story workspace: one channel, one authorisation."""

    def resolve(value: str) -> Path:
        path = Path(os.path.expanduser(str(value)))
        return path if path.is_absolute() else code_dir(Path(pipeline_dir)) / path

    return CredentialPaths(resolve(settings.YOUTUBE_CLIENT_SECRETS), resolve(settings.YOUTUBE_TOKEN))


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def api_url(settings: Any) -> str | None:
    """YOUTUBE_API_URL without its trailing slash, or None for Google's own servers. Only https, or plain
    http to this machine: the token and every upload go there, so nothing may cross a network in clear."""
    from urllib.parse import urlsplit

    value = str(getattr(settings, "YOUTUBE_API_URL", "") or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)):
        raise ConfigError(f"YOUTUBE_API_URL is {value!r}; use an https:// URL, an http:// URL on this machine "
                          "(127.0.0.1 or localhost), or leave it empty for YouTube itself.")
    return value.rstrip("/")


def authorize_command(pipeline_dir: Path) -> str:
    return f"cd {Path(pipeline_dir).name}/scripts && python 12.youtube.py --authorize"


@dataclass(frozen=True)
class CredentialStatus:
    """What an overnight run needs to know before starting: can it upload, and if not, what to do.

    state: ok | not_configured (no client_secrets.json and no token.json: publishing was never
    set up, so step 12 is a dry run) | no_token | invalid_grant | missing_scopes | bad_file |
    missing_library | unreachable. `message` is one sentence for the user; `credentials` is set only when ok.
    """

    state: str
    message: str
    paths: CredentialPaths
    credentials: Any = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def configured(self) -> bool:
        return self.state != "not_configured"

    @property
    def needs_human(self) -> bool:
        """True when only a person can fix it (run --authorize); `unreachable` may pass by itself."""
        return self.state in ("no_token", "invalid_grant", "missing_scopes", "bad_file", "missing_library")

    def raise_if_not_ok(self) -> None:
        if self.ok:
            return
        if self.state == "unreachable":
            raise ServiceError(self.message)
        raise ConfigError(self.message)


def require_client_libraries() -> None:
    """The Google client libraries come from requirements.txt; say so rather than show an ImportError."""
    try:
        import google.oauth2.credentials  # noqa: F401
        import google_auth_httplib2  # noqa: F401
        import google_auth_oauthlib  # noqa: F401
        import googleapiclient  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"the Google API client library {exc.name} is not installed: run pip install -r requirements.txt") from None


def default_http() -> Any:
    import httplib2

    http = httplib2.Http(timeout=HTTP_TIMEOUT)
    # YouTube answers every unfinished chunk with 308 Resume Incomplete (no Location); httplib2 takes
    # 308 for a redirect and fails on it, so an upload of more than one chunk never got past the first.
    # googleapiclient's own build_http() does the same.
    http.redirect_codes = http.redirect_codes - {308}
    return http


def _token_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        info = None
    if not isinstance(info, dict):
        raise ValueError("not a JSON object")
    return info


def _scopes_missing(credentials: Any) -> list[str]:
    granted = getattr(credentials, "granted_scopes", None) or credentials.scopes or ()
    return [s for s in SCOPES if s not in set(granted)]


def _refresh_reason(exc: Exception) -> tuple[str, str]:
    """(error code, description) from a RefreshError, never the request or any token."""
    details = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    code = str(details.get("error", "")) or ("invalid_grant" if "invalid_grant" in str(exc.args[0] if exc.args else "") else "")
    description = str(details.get("error_description", "")).strip().rstrip(".")
    return code, description


def save_token(credentials: Any, path: Path, *, authorized_at: str | None = None) -> Path:
    """Write token.json atomically, readable by its owner only; keeps the date of authorisation."""
    info = json.loads(credentials.to_json())
    if authorized_at is None and path.is_file():
        try:
            authorized_at = _token_info(path).get("authorized_at")
        except ValueError:
            authorized_at = None
    if authorized_at:
        info["authorized_at"] = authorized_at
    # mkstemp creates the temp file 0600 and atomic_path keeps it so: never readable by others, not even
    # for a moment before a secret byte is written; the rename then puts it in place whole.
    with atomic_path(path, mode=0o600) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(info, handle, indent=1)
    os.chmod(path, 0o600)
    return path


def _age_warning(info: dict[str, Any], now: datetime) -> str | None:
    stamp = info.get("authorized_at")
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    days = (now - when).total_seconds() / 86400
    if days >= TESTING_APP_DAYS - 1:
        return (f"the YouTube authorisation is {days:.1f} days old: if your OAuth app is still in 'Testing', "
                f"Google ends it after {TESTING_APP_DAYS} days; publish the app or re-run --authorize before then.")
    return None


def check_credentials(settings: Any, pipeline_dir: Path, *, http: Any = None, save: bool = True,
                      now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> CredentialStatus:
    """Can this machine upload right now without a person? Refreshes the token to find out.

    `save=False` (the preflight, `generate.py --check`) leaves token.json untouched: rewriting it
    would change a file the run stamp fingerprints, so the next run would no longer be up to date.
    """
    paths = credential_paths(settings, pipeline_dir)
    fix = authorize_command(pipeline_dir)

    def status(state: str, message: str) -> CredentialStatus:
        return CredentialStatus(state, message, paths)

    if not paths.token.is_file():
        if not paths.client_secrets.is_file():
            return status("not_configured",
                          f"YouTube publishing is not set up ({paths.client_secrets} and {paths.token} not found): put "
                          f"your OAuth client file at {paths.client_secrets}, then run: {fix} (README, 'Publishing to "
                          "YouTube')")
        return status("no_token", f"YouTube is not authorised yet ({paths.token} not found): run {fix} once, then "
                                  "run again.")
    try:
        require_client_libraries()
    except ConfigError as exc:
        return status("missing_library", str(exc))
    from google.auth.exceptions import RefreshError, TransportError
    from google.oauth2.credentials import Credentials
    from google_auth_httplib2 import Request

    try:
        info = _token_info(paths.token)
        # A token file without "scopes" (other tools write such) asks for ours; the refresh then tells.
        credentials = Credentials.from_authorized_user_info(info, scopes=None if info.get("scopes") else list(SCOPES))
        if (root := api_url(settings)) is not None:  # a stand-in for Google: its own token endpoint too
            credentials = credentials.with_token_uri(f"{root}/token")
    except ValueError:
        return status("bad_file", f"{paths.token} is not a token file this program wrote: delete it and run {fix}.")
    if missing := _scopes_missing(credentials):
        return status("missing_scopes", f"{paths.token} does not allow {', '.join(missing)} (needed to upload with "
                                        f"thumbnail and captions): run {fix} and tick every permission asked.")
    try:
        credentials.refresh(Request(http if http is not None else default_http()))
    except RefreshError as exc:
        code, description = _refresh_reason(exc)
        if getattr(exc, "retryable", False):  # Google's token service failed, not the grant
            return status("unreachable", f"Google's token service failed to refresh the YouTube token "
                                         f"({code or 'server error'}); run again later.")
        if code == "invalid_grant":
            why = f" ({description})" if description else ""
            return status("invalid_grant",
                          f"Google no longer accepts the saved YouTube authorisation{why}: it was revoked, or it "
                          f"expired (apps in 'Testing' expire after {TESTING_APP_DAYS} days); run {fix}, then run "
                          "again.")
        return status("bad_file", f"Google refused to refresh the YouTube token ({code or 'refresh failed'}"
                                  f"{': ' + description if description else ''}): run {fix}, then run again.")
    except (TransportError, OSError) as exc:  # OSError: a proxy refused through PySocks, which httplib2 uses when present
        return status("unreachable", f"could not reach Google to refresh the YouTube token ({type(exc).__name__}); "
                                     "check the network and run again.")
    if missing := _scopes_missing(credentials):
        return status("missing_scopes", f"Google granted the token without {', '.join(missing)}: run {fix} and tick "
                                        "every permission asked.")
    if save:
        save_token(credentials, paths.token)
    return CredentialStatus("ok", f"YouTube authorisation OK ({paths.token.name})", paths, credentials,
                            warning=_age_warning(info, now()))


def _browser_available() -> bool:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # only text browsers could open, inside this very terminal
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def authorize(settings: Any, pipeline_dir: Path, *, port: int = 0, open_browser: bool | None = None,
              say: Callable[[str], None] = print) -> Path:
    """The one interactive step: Google's consent page in a browser, answered to a local server.

    The URL is always printed, so it can be opened on any browser of this machine (or, with
    `ssh -L <port>:localhost:<port>` and a fixed --auth-port, of another machine).
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    paths = credential_paths(settings, pipeline_dir)
    if not paths.client_secrets.is_file():
        raise ConfigError(
            f"{paths.client_secrets} not found: in Google Cloud Console enable the YouTube Data API v3, create an "
            f"OAuth client ID of type 'Desktop app', download its JSON to that path, then run {authorize_command(pipeline_dir)}."
        )
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(paths.client_secrets), scopes=list(SCOPES))
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{paths.client_secrets} is not an OAuth client file of type 'Desktop app' ({type(exc).__name__}); "
            "download it again from Google Cloud Console (APIs & Services > Credentials)."
        ) from None
    browser = _browser_available() if open_browser is None else open_browser
    say("Authorising YouTube uploads: sign in with the channel's Google account and allow access.")
    if not browser:
        say("No browser can be opened here: open the URL below in a browser on this machine "
            "(or see README, 'Publishing to YouTube', to authorise from another machine).")
    from google_auth_oauthlib.flow import WSGITimeoutError
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error
    from requests.exceptions import RequestException

    try:
        credentials = flow.run_local_server(
            host="localhost", port=port, open_browser=browser,
            authorization_prompt_message="Open this URL to authorise:\n{url}\n",
            success_message="YouTube authorisation received; you can close this tab and return to the terminal.",
            timeout_seconds=AUTHORIZE_TIMEOUT, access_type="offline", prompt="consent",
        )
    except WSGITimeoutError:
        raise ConfigError(f"no answer from the browser within {AUTHORIZE_TIMEOUT // 60} minutes; run the authorisation again.") from None
    except OAuth2Error as exc:
        raise ConfigError(f"Google refused the authorisation ({exc.error}); run it again and allow access.") from None
    except RequestException as exc:
        raise ServiceError(f"could not reach Google to finish the authorisation ({type(exc).__name__}); "
                           "check the network and run it again.") from None
    except OSError as exc:
        raise ConfigError(f"could not listen on localhost port {port} for Google's answer ({exc.strerror}); "
                          "pick another port with --auth-port.") from None
    missing = _scopes_missing(credentials)
    if missing:
        raise ConfigError(f"the authorisation did not grant {', '.join(missing)}: run it again and tick every permission asked.")
    if not credentials.refresh_token:
        raise ConfigError("Google sent no refresh token: remove this app's access at https://myaccount.google.com/permissions "
                          "and run the authorisation again.")
    save_token(credentials, paths.token, authorized_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    say(f"saved {paths.token} (owner-only); uploads now run unattended.")
    return paths.token


def youtube_service(credentials: Any, http: Any = None, api_url: str | None = None) -> Any:
    """From the discovery document shipped in the wheel (no discovery fetch); the transport refreshes the
    token on expiry or a 401, so tests with HttpMockSequence as `http` run the real protocol.
    `api_url` (YOUTUBE_API_URL) replaces Google's root URL for every request, uploads included."""
    from google_auth_httplib2 import AuthorizedHttp
    from googleapiclient.discovery import build, build_from_document

    authorized = AuthorizedHttp(credentials, http=http if http is not None else default_http())
    if api_url is None:
        return build("youtube", "v3", http=authorized, static_discovery=True, cache_discovery=False)
    from googleapiclient.discovery_cache import get_static_doc

    document = json.loads(get_static_doc("youtube", "v3"))
    root = api_url.rstrip("/") + "/"
    document.update(rootUrl=root, mtlsRootUrl=root, baseUrl=root + document.get("servicePath", ""))
    return build_from_document(document, http=authorized)
