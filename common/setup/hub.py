"""Model downloads from Hugging Face: resumable, checked, and never a truncated file under the real name.

Why not `hf_hub_download`: since huggingface_hub 1.x it downloads into a temporary name unique to
the process and deletes it on failure, so a download killed at 90 % (kill -9, a power cut, a
dropped network at 3 a.m.) starts again from zero. Here the partial file has a stable name,
`<name>.<version key>.part` beside the final one (ComfyUI lists model files by extension, so it
never sees it); a rerun asks the Hub for the rest with a Range request through huggingface_hub's
own `http_get` (its retries and progress bar), checks the size and the sha256 (the publisher's in
the manifest, else the one the Hub announces for the file), and only then renames it into place.
A part left by another version of the file is deleted. The token (HF_TOKEN, or `hf auth login`'s)
is only ever handed to huggingface_hub, which sends it to the Hub and not to a CDN, and no
message here contains it.
"""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable
from urllib.parse import urlparse

from common.run.errors import ConfigError, PipelineError, ServiceError
from common.setup.manifest import ModelFile, Variant

_SHA256_HEX = frozenset("0123456789abcdef")


class HubError(ServiceError):
    """A file the Hub would not give: gated, missing, unreachable or not what it announced."""


class GatedError(HubError, exit_code=4):
    """A gated repository whose licence the user has not accepted (or no token was found)."""


def hf() -> ModuleType:
    """huggingface_hub, imported when a model must be fetched (a run never needs it)."""
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError("setup downloads models with the huggingface_hub package, which is not installed: run "
                          "`pip install -r requirements.txt` (or `pip install \"huggingface_hub>=1.0\"`) and run "
                          "--setup again.") from None
    return huggingface_hub


def endpoint() -> str:
    """The Hub this process talks to (HF_ENDPOINT, else huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT).rstrip("/")


def gb(size: int | float | None) -> str:
    """Bytes as the Hub shows them (1 GB = 10^9 bytes)."""
    if size is None:
        return "size unknown"
    return f"{size / 1e9:,.2f} GB" if size >= 1e8 else f"{size / 1e6:,.1f} MB"


@dataclass(frozen=True)
class Remote:
    """What the Hub says about a file before it is fetched."""

    url: str  # what was asked for (the resolve URL, or the manifest's plain URL)
    location: str  # where the bytes are (a CDN after the Hub's redirect)
    size: int | None
    sha256: str | None  # the Hub's own checksum of the content (an LFS file's X-Linked-Etag)
    etag: str | None

    @property
    def key(self) -> str:
        """Names the partial file, so a part of another version of the file is never resumed."""
        return hashlib.sha256((self.sha256 or self.etag or self.location).encode()).hexdigest()[:12]


def _sha_like(etag: str | None) -> str | None:
    value = (etag or "").strip('"').lower()
    return value if len(value) == 64 and set(value) <= _SHA256_HEX else None


def _hub_sentence(exc: Exception, model: ModelFile, path: str) -> PipelineError:
    """One sentence for a refusal of the Hub, naming the repository and what to do (never the token)."""
    from huggingface_hub import errors

    repo, base = model.repo, endpoint()
    if isinstance(exc, errors.GatedRepoError):
        token = "your Hugging Face token has no access to it" if hf().get_token() else "no Hugging Face token was found"
        return GatedError(f"{model.name} comes from {repo}, a gated repository, and {token}: accept its licence at "
                          f"{base}/{repo} while logged in, then log in here with `hf auth login` (or set HF_TOKEN) "
                          "and run --setup again.")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(f"{base} does not know the repository {repo} named for {model.name} (or it is private and "
                        "your token cannot see it): fix its `repo` in the setup manifest, or log in with `hf auth login`.")
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(f"{repo} has no revision {model.revision} (named for {model.name}): fix its `revision` in the "
                        "setup manifest.")
    if isinstance(exc, errors.EntryNotFoundError):
        return HubError(f"{repo} has no file {path} at {model.revision} (named for {model.name}): the setup manifest "
                        "is out of date; fix its `path`.")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return HubError(f"{base} answered HTTP {status} for {model.name} ({model.source}): try --setup again later.")
    return HubError(f"could not reach {urlparse(base).netloc or base} for {model.name} ({type(exc).__name__}): check "
                    "the network (and HF_ENDPOINT), then run --setup again; what was downloaded is kept.")


def resolve(model: ModelFile, variant: Variant) -> Remote:
    """Ask the Hub (one HEAD, redirects on the Hub followed) for the file's size, checksum and location."""
    h = hf()
    from huggingface_hub import errors

    if model.url:
        url, token = model.url, False  # a plain URL is no Hub: never send the token there
    else:
        url, token = h.hf_hub_url(model.repo, variant.path, revision=model.revision), None
    try:
        meta = h.get_hf_file_metadata(url, token=token)
    except (errors.HfHubHTTPError, errors.EntryNotFoundError, OSError) as exc:
        raise _hub_sentence(exc, model, variant.path) from None
    except Exception as exc:  # the HTTP library's own connection errors (httpx in 1.x, httpx2 in 2.x)
        if type(exc).__module__.split(".")[0].startswith("httpx"):
            raise _hub_sentence(exc, model, variant.path) from None
        raise
    return Remote(url, str(meta.location or url), meta.size, _sha_like(meta.etag), meta.etag)


def _headers(remote: Remote, model: ModelFile) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(token=False if model.url else None)
    if urlparse(remote.location).netloc != urlparse(remote.url).netloc:
        headers.pop("authorization", None)  # a signed CDN URL needs no token, and must not see it
    return headers


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * 1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def part_path(dest: Path, remote: Remote) -> Path:
    return dest.with_name(f"{dest.name}.{remote.key}.part")


def partial_bytes(dest: Path, remote: Remote) -> int:
    part = part_path(dest, remote)
    return part.stat().st_size if part.is_file() else 0


def download(model: ModelFile, variant: Variant, remote: Remote, dest: Path, say: Callable[[str], None]) -> str:
    """Fetch `remote` into `dest` (resuming its part), check it and rename it into place; returns its sha256."""
    hf()
    from huggingface_hub import errors
    from huggingface_hub.file_download import http_get

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest, remote)
    for stale in dest.parent.glob(f"{glob.escape(dest.name)}.*.part"):
        if stale != part:
            stale.unlink()  # another version's bytes: never to be resumed
    have = part.stat().st_size if part.is_file() else 0
    if remote.size is not None and have > remote.size:
        part.unlink()
        have = 0
    if have:
        say(f"  {model.name}: resuming at {gb(have)} of {gb(remote.size)}")
    try:
        with open(part, "ab") as f:
            http_get(remote.location, f, resume_size=have, headers=_headers(remote, model),
                     expected_size=remote.size, displayed_filename=model.name)
            f.flush()
            os.fsync(f.fileno())
    except (errors.HfHubHTTPError, errors.EntryNotFoundError) as exc:
        raise _hub_sentence(exc, model, variant.path) from None
    except OSError as exc:
        if part.is_file() and remote.size is not None and part.stat().st_size > remote.size:
            part.unlink()
        raise HubError(f"the download of {model.name} stopped ({exc.__class__.__name__}: {exc}); run --setup again "
                       "to continue it.") from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0].startswith("httpx"):
            raise _hub_sentence(exc, model, variant.path) from None
        raise
    got = part.stat().st_size
    if remote.size is not None and got != remote.size:
        part.unlink()
        raise HubError(f"{model.name} arrived with {got:,} bytes instead of the {remote.size:,} the Hub announced, "
                       "so it was deleted; run --setup again.")
    say(f"  {model.name}: checking sha256 of {gb(got)}")
    digest = sha256_of(part)
    expected = variant.sha256 or remote.sha256
    if expected and digest != expected:
        part.unlink()
        whose = "the setup manifest's" if variant.sha256 else "the Hub's own"
        raise HubError(f"{model.name} from {model.source} does not match its sha256 (got {digest[:12]}..., expected "
                       f"{whose}, {expected[:12]}...), so it was refused and deleted; run --setup again, and if it "
                       "happens again the published file has changed: update the manifest.")
    os.replace(part, dest)
    return digest


def describe(remote: Remote | None, variant: Variant, model: ModelFile) -> str:
    """The size for the plan: the Hub's, else the manifest's own, else its approximate one."""
    if remote is not None and remote.size is not None:
        return gb(remote.size)
    size = variant.size or model.size
    if size:
        return gb(size)
    approx = variant.approx_gb or model.approx_gb
    return f"about {approx:g} GB" if approx else "size unknown"


def known_size(remote: Remote | None, variant: Variant, model: ModelFile) -> int:
    """Bytes to count for the disk check and the question (0 when nothing is known)."""
    if remote is not None and remote.size is not None:
        return remote.size
    size = variant.size or model.size
    if size:
        return size
    approx = variant.approx_gb or model.approx_gb
    return int(approx * 1e9) if approx else 0
