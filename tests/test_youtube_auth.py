"""YouTube credentials: the preflight check, refreshing silently, and one clear sentence when a person is needed."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from common.run.errors import ConfigError, ServiceError
from common.config.settings import load_settings
from common.publish.auth import SCOPES, check_credentials, save_token
from tests.support.youtube import SECRETS, Transport, credentials, token_ok, write_token


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    folder = tmp_path / "gen.audio"
    folder.mkdir()
    return folder


def check(pipeline: Path, responses: list, **env: str):
    transport = Transport(responses)
    status = check_credentials(load_settings(pipeline, environ=env), pipeline, http=transport)
    return status, transport


def test_nothing_set_up_means_a_dry_run_not_an_error(pipeline):
    status, transport = check(pipeline, [])
    assert status.state == "not_configured" and not status.configured and not status.needs_human
    assert "12.youtube.py --authorize" in status.message and transport.calls == []
    with pytest.raises(ConfigError):
        status.raise_if_not_ok()


def test_client_secrets_without_a_token_asks_to_authorize(pipeline):
    (pipeline / "client_secrets.json").write_text("{}")
    status, _ = check(pipeline, [])
    assert status.state == "no_token" and status.needs_human
    assert status.message.startswith("YouTube is not authorised yet") and "cd gen.audio/scripts && python 12.youtube.py --authorize" in status.message


def test_the_check_refreshes_and_saves_the_token_owner_only(pipeline, capsys):
    token = write_token(pipeline / "token.json", expired=True)
    os.chmod(token, 0o644)
    status, transport = check(pipeline, [token_ok("ya29.FRESH")])
    assert status.ok and status.credentials.token == "ya29.FRESH"
    method, uri = transport.calls[0]
    assert method == "POST" and uri == "https://oauth2.googleapis.com/token"
    assert f"refresh_token={SECRETS[1].replace('/', '%2F')}" in transport.request_sequence[0][2].decode()
    saved = json.loads(token.read_text())
    assert saved["token"] == "ya29.FRESH" and saved["refresh_token"] == SECRETS[1]
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    printed = capsys.readouterr()
    assert not any(secret in printed.out + printed.err + status.message for secret in (*SECRETS, "ya29.FRESH"))


def test_a_still_valid_access_token_is_refreshed_anyway(pipeline):
    """Only a refresh proves the refresh token works; the preflight must not trust an hour-long access token."""
    write_token(pipeline / "token.json", expired=False)
    status, transport = check(pipeline, [token_ok()])
    assert status.ok and len(transport.calls) == 1


def test_invalid_grant_says_what_to_run(pipeline):
    write_token(pipeline / "token.json")
    body = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    status, _ = check(pipeline, [({"status": "400"}, json.dumps(body))])
    assert status.state == "invalid_grant" and status.needs_human
    assert status.message == (
        "Google no longer accepts the saved YouTube authorisation (Token has been expired or revoked): it was "
        "revoked, or it expired (apps in 'Testing' expire after 7 days); run cd gen.audio/scripts && "
        "python 12.youtube.py --authorize, then run again."
    )
    with pytest.raises(ConfigError, match="--authorize"):
        status.raise_if_not_ok()
    assert not any(secret in status.message for secret in SECRETS)


def test_a_token_without_the_needed_scope_is_caught_before_any_request(pipeline):
    write_token(pipeline / "token.json", scopes=["https://www.googleapis.com/auth/youtube.readonly"])
    status, transport = check(pipeline, [])
    assert status.state == "missing_scopes" and SCOPES[0] in status.message and transport.calls == []


def test_a_refresh_that_grants_fewer_scopes_is_caught(pipeline):
    write_token(pipeline / "token.json")
    narrow = {"access_token": "ya29.x", "expires_in": 3600, "scope": "https://www.googleapis.com/auth/youtube.readonly"}
    status, _ = check(pipeline, [({"status": "200"}, json.dumps(narrow))])
    assert status.state == "missing_scopes"


def test_a_garbled_token_file_is_named(pipeline):
    (pipeline / "token.json").write_text("not json")
    status, _ = check(pipeline, [])
    assert status.state == "bad_file" and "token.json" in status.message and "--authorize" in status.message


def test_no_network_is_a_service_error_not_a_human_problem(pipeline):
    write_token(pipeline / "token.json")
    import httplib2

    status, _ = check(pipeline, [({"status": "500"}, httplib2.ServerNotFoundError("no dns"))])
    assert status.state == "unreachable" and not status.needs_human
    with pytest.raises(ServiceError):
        status.raise_if_not_ok()


def test_paths_are_configurable(pipeline, tmp_path):
    elsewhere = tmp_path / "secrets" / "yt-token.json"
    elsewhere.parent.mkdir()
    write_token(elsewhere)
    status, _ = check(pipeline, [token_ok()], YOUTUBE_TOKEN=str(elsewhere))
    assert status.ok and status.paths.token == elsewhere


def test_an_old_authorisation_warns_about_the_seven_day_limit(pipeline):
    token = write_token(pipeline / "token.json")
    info = json.loads(token.read_text())
    info["authorized_at"] = "2020-01-01T00:00:00+00:00"
    token.write_text(json.dumps(info))
    status, _ = check(pipeline, [token_ok()])
    assert status.ok and "7 days" in status.warning
    assert json.loads(token.read_text())["authorized_at"] == "2020-01-01T00:00:00+00:00"  # kept across refreshes


def test_save_token_replaces_a_world_readable_file(tmp_path):
    path = tmp_path / "token.json"
    path.write_text("{}")
    os.chmod(path, 0o666)
    save_token(credentials(), path, authorized_at="2025-01-01T00:00:00+00:00")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["authorized_at"] == "2025-01-01T00:00:00+00:00"
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]  # no temp file left behind


def test_a_failing_token_service_is_not_blamed_on_the_grant(pipeline, monkeypatch):
    write_token(pipeline / "token.json")
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # google-auth retries 5xx itself
    status, _ = check(pipeline, [({"status": "503"}, json.dumps({"error": "internal_failure"}))] * 4)
    assert status.state == "unreachable" and not status.needs_human


def test_a_token_file_without_scopes_is_judged_by_the_refresh(pipeline):
    token = write_token(pipeline / "token.json")
    info = json.loads(token.read_text())
    del info["scopes"]
    token.write_text(json.dumps(info))
    status, transport = check(pipeline, [token_ok()])
    assert status.ok and "scope=" in transport.request_sequence[0][2].decode()
