"""Small network facts shared by the service manager and the clients."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import requests

CHECK_TIMEOUT = 0.5


def is_loopback_url(url: str) -> bool:
    """True for a server on this machine: only those are ours to start, and no proxy should see them."""
    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.port:
        return parts.port
    return 443 if parts.scheme == "https" else 80


def http_answers(url: str, timeout: float = CHECK_TIMEOUT) -> bool:
    """True when GET url answers 200; any network error is simply 'not answering'."""
    session = requests.Session()
    # A proxy from the environment must not intercept loopback checks.
    session.trust_env = not is_loopback_url(url)
    try:
        with session.get(url, timeout=timeout) as response:
            return response.status_code == 200
    except requests.RequestException:
        return False
    finally:
        session.close()
