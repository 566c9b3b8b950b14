"""Which engine does the work: the real servers or the embedded offline engine (SPEC 7).

Decided once per run, quickly (connection checks of ~0.5 s, no server is started here), and
said to the user in one line, so a run that silently produced previews instead of real
outputs is impossible. Media (speech, images, animation: ComfyUI) and text (the LLM) are
decided independently: a laptop with Ollama but no ComfyUI still gets real text.

The orchestrator, which may start servers, counts "startable" as available; it then exports
PIPELINE_ENGINE=<media> and PIPELINE_TEXT_ENGINE=<text> to its children. A script run alone
resolves `auto` by reachability only, since it never starts services itself.

`auto` means "previews when this machine has no servers", not "previews when the server happens
to be down tonight": a ComfyUI that is installed (COMFYUI_DIR holds main.py), named
(COMFYUI_BASE_URL set by the user) or already used by this pipeline's checkpoints, and an LLM
server that is named (LM_STUDIO_BASE_URL) or installed (LM_STUDIO_CMD), stop the run with exit
5 and one sentence instead (issue 13): a night of previews over real work is a night wasted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

from common.run.errors import ConfigError, ServiceError
from common.state.checkpoints import read_entries

if TYPE_CHECKING:
    from common.run.steps import Step

Media = Literal["comfyui", "offline"]
Text = Literal["llm", "offline"]


@dataclass(frozen=True)
class EngineChoice:
    media: Media
    text: Text
    reason: str
    # Set when `auto` found a server expected but down: asking for that kind's engine stops with it.
    media_stop: str = ""
    text_stop: str = ""


# Files only a media engine makes: a real (non-preview) checkpoint naming one is ComfyUI's work.
_MEDIA_FILES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".png", ".jpg", ".jpeg", ".webp", ".mp4", ".webm",
                ".mov", ".mkv")


def real_media_made(pipeline_dirs: Iterable[Path]) -> str | None:
    """The first checkpoint that holds real (non-preview) media, as "<state file> <item>", or None.
    Offline outputs are always marked preview, so any other media item came from ComfyUI."""
    for pipeline_dir in dict.fromkeys(Path(d) for d in pipeline_dirs):
        for path in sorted((pipeline_dir / "output" / "tracking").glob("*.state.json")):
            for key, entry in read_entries(path).items():
                files = entry.get("files") or ()
                if entry.get("status", "done") == "done" and not entry.get("preview") and any(
                        str(f).lower().endswith(_MEDIA_FILES) for f in files):
                    return f"{path.parent.parent.parent.name}/output/tracking/{path.name} {key}"
    return None


def _given(settings: Any, name: str) -> bool:
    """Whether the user set `name` (flag, environment or settings file) rather than leaving the default."""
    source_of = getattr(settings, "source_of", None)
    return source_of is not None and source_of(name) != "default"


def _pipeline_dirs(settings: Any, steps: Sequence["Step"] | None) -> list[Path]:
    dirs = [Path(s.pipeline_dir) for s in steps or ()]
    own = getattr(settings, "pipeline_dir", None)
    return dirs + ([Path(own)] if own is not None else [])


def _comfyui_stop(settings: Any, dirs: Sequence[Path], why: str, may_start: bool) -> str:
    """The sentence that stops `auto` instead of making previews, or "" when offline is right."""
    from common.services.comfyui.pool import server_urls

    url = server_urls(settings.COMFYUI_BASE_URL)[0]
    main_py = Path(settings.COMFYUI_DIR) / "main.py"
    if main_py.is_file():
        because = f"ComfyUI is installed in {main_py.parent}"
    elif _given(settings, "COMFYUI_BASE_URL"):
        because = f"COMFYUI_BASE_URL is set to {settings.COMFYUI_BASE_URL}"
    else:
        used = real_media_made(dirs)
        if used is None:
            return ""
        because = f"this pipeline's checkpoints hold ComfyUI work ({used})"
    start = ("run generate.py, which starts it" if main_py.is_file() and not may_start
             else f"start the ComfyUI server at {url}")
    return (f"PIPELINE_ENGINE=auto found no ComfyUI ({why}) but {because}, so this run stops rather than "
            f"make previews: {start} and run again, or set PIPELINE_ENGINE=offline to make previews on purpose "
            "(real outputs are kept).")


def _llm_url(settings: Any) -> str:
    """The LLM server's API root as every part of the pipeline reaches it (a bare host:port gets /v1)."""
    from common.services.llm_endpoint import normalize_base_url

    return normalize_base_url(settings.LM_STUDIO_BASE_URL)


def _llm_stop(settings: Any, why: str, may_start: bool) -> str:
    from common.services.processes import resolve_command

    if _given(settings, "LM_STUDIO_BASE_URL"):
        because = f"LM_STUDIO_BASE_URL is set to {settings.LM_STUDIO_BASE_URL}"
    elif resolve_command(settings.LM_STUDIO_CMD) is not None:
        because = f"`{settings.LM_STUDIO_CMD}` is installed"
    else:
        return ""
    start = "run generate.py, which starts it" if not may_start and not _given(settings, "LM_STUDIO_BASE_URL") \
        else f"start the LLM server at {_llm_url(settings)}"
    return (f"PIPELINE_ENGINE=auto found no LLM server ({why}) but {because}, so this run stops rather than "
            f"write offline text: {start} and run again, or set PIPELINE_TEXT_ENGINE=offline to write it offline "
            "on purpose (real answers are kept).")


def _comfyui_start_text(settings: Any) -> str:
    """How ComfyUI would be started here: from which folder, with which Python, and why that one."""
    from common.services.comfyui.interpreter import comfyui_python

    python, why = comfyui_python(settings)
    return f"from {Path(settings.COMFYUI_DIR)} with {python} ({why})"


def _startable_text(settings: Any) -> str:
    """For PIPELINE_ENGINE=comfyui (no connection check): how a ComfyUI installed here would be started."""
    from common.services.comfyui.pool import server_urls
    from common.services.net import is_loopback_url

    url = server_urls(settings.COMFYUI_BASE_URL)[0]
    if not (is_loopback_url(url) and (Path(settings.COMFYUI_DIR) / "main.py").is_file()):
        return ""
    return f" (when not running: started {_comfyui_start_text(settings)})"


def _comfyui_status(settings: Any, may_start: bool) -> tuple[bool, str]:
    # Imported here: an offline run never pays for requests/psutil at start-up.
    from common.services.net import CHECK_TIMEOUT, http_answers, is_loopback_url

    from common.services.comfyui.pool import server_urls

    urls = server_urls(settings.COMFYUI_BASE_URL)
    answering = [u for u in urls if http_answers(f"{u}/system_stats", CHECK_TIMEOUT)]
    if answering:
        return True, f"ComfyUI answering at {', '.join(answering)}"
    url = urls[0]
    main_py = Path(settings.COMFYUI_DIR) / "main.py"
    startable = is_loopback_url(url) and main_py.is_file()
    if may_start and startable:
        return True, f"ComfyUI will be started {_comfyui_start_text(settings)}"
    if startable:
        return False, f"ComfyUI not answering at {url} (run generate.py to start it)"
    return False, f"ComfyUI not found at {url} and no {main_py}"


def _llm_status(settings: Any, may_start: bool) -> tuple[bool, str]:
    from common.services.llm_endpoint import models_url
    from common.services.net import CHECK_TIMEOUT, http_answers, is_loopback_url
    from common.services.processes import resolve_command

    url = _llm_url(settings)
    if http_answers(models_url(url), CHECK_TIMEOUT):
        return True, f"LLM answering at {url}"
    has_lms = is_loopback_url(url) and resolve_command(settings.LM_STUDIO_CMD) is not None
    if may_start and has_lms:
        return True, f"LLM server will be started with `{settings.LM_STUDIO_CMD}`"
    if has_lms:
        return False, f"LLM server not answering at {url} (run generate.py to start it)"
    return False, f"LLM server not answering at {url} and no `{settings.LM_STUDIO_CMD}` command"


# (media, text) -> the run's label, and which outputs are previews.
_LABELS = {("offline", "offline"): ("offline", " — outputs are previews"),
           ("offline", "llm"): ("offline media, LLM text", " — media outputs are previews"),
           ("comfyui", "offline"): ("ComfyUI media, offline text", " — text outputs are previews"),
           ("comfyui", "llm"): ("ComfyUI + LLM", "")}


def _compose(media: Media, text: Text, media_why: str, text_why: str, cause: str = "", *,
             media_stop: str = "", text_stop: str = "") -> EngineChoice:
    label, previews = _LABELS[(media, text)]
    return EngineChoice(media, text, f"engine: {label} ({cause or f'{media_why}; {text_why}'}){previews}",
                        media_stop, text_stop)


def choose_engines(settings: Any, *, may_start: bool = True, steps: Sequence["Step"] | None = None) -> EngineChoice:
    """Resolve PIPELINE_ENGINE (auto|comfyui|offline) into a media and a text engine.

    `steps`: the scripts this run will run (default: all). `auto` raises ServiceError when a server
    those steps need is expected (see the module's docstring) but neither answers nor can be started.
    """
    mode = str(settings.PIPELINE_ENGINE).lower()
    text_mode = str(getattr(settings, "PIPELINE_TEXT_ENGINE", "auto")).lower()
    if mode == "offline" and text_mode == "llm":  # offline pictures and sound, real text
        return _compose("offline", "llm", "", "",
                        f"PIPELINE_ENGINE=offline, PIPELINE_TEXT_ENGINE=llm: LLM at {_llm_url(settings)}")
    if mode == "offline":
        return _compose("offline", "offline", "", "", "PIPELINE_ENGINE=offline")
    if mode == "comfyui":
        comfyui = f"PIPELINE_ENGINE=comfyui: ComfyUI at {settings.COMFYUI_BASE_URL}{_startable_text(settings)}"
        if text_mode == "offline":
            return _compose("comfyui", "offline", "", "", f"{comfyui}; PIPELINE_TEXT_ENGINE=offline")
        return _compose("comfyui", "llm", "", "", f"{comfyui}, LLM at {_llm_url(settings)}")
    if mode != "auto":
        raise ConfigError(f"PIPELINE_ENGINE is {mode!r}; use auto, comfyui or offline.")
    media_ok, media_why = _comfyui_status(settings, may_start)
    if text_mode in ("llm", "offline"):  # text asked for by name: no detection, and no stop below
        text_ok, text_why = text_mode == "llm", f"PIPELINE_TEXT_ENGINE={text_mode}"
    else:
        text_ok, text_why = _llm_status(settings, may_start)
    if not media_ok and (steps is None or any(s.needs_comfyui for s in steps)):
        stop = _comfyui_stop(settings, _pipeline_dirs(settings, steps), media_why, may_start)
        if stop:
            raise ServiceError(stop)
    if not text_ok and text_mode == "auto" and (steps is None or any(s.needs_llm for s in steps)):
        stop = _llm_stop(settings, text_why, may_start)
        if stop:
            raise ServiceError(stop)
    return _compose("comfyui" if media_ok else "offline", "llm" if text_ok else "offline", media_why, text_why)


def _mode(settings: Any, environ: Mapping[str, str], name: str) -> str:
    """A setting given by flag, environment or settings file wins; else the environment passed in."""
    source_of = getattr(settings, "source_of", None)
    if source_of is not None and source_of(name) != "default":
        return str(getattr(settings, name)).lower()
    return (environ.get(name) or str(getattr(settings, name, "auto"))).lower()


def engines_from_env(settings: Any, environ: Mapping[str, str] | None = None) -> EngineChoice:
    """The engines a numbered script should use.

    Under an orchestrator both variables are set to concrete values and are taken as they
    are; a script run alone with `auto` checks reachability only (it never starts servers).
    """
    environ = os.environ if environ is None else environ
    media_mode = _mode(settings, environ, "PIPELINE_ENGINE")
    text_mode = _mode(settings, environ, "PIPELINE_TEXT_ENGINE")
    if media_mode not in ("auto", "comfyui", "offline"):
        raise ConfigError(f"PIPELINE_ENGINE is {media_mode!r}; use auto, comfyui or offline.")
    if text_mode not in ("auto", "llm", "offline"):
        raise ConfigError(f"PIPELINE_TEXT_ENGINE is {text_mode!r}; use auto, llm or offline.")
    if media_mode == "offline" and text_mode == "auto":
        return _compose("offline", "offline", "", "", "PIPELINE_ENGINE=offline")
    if media_mode == "comfyui" and text_mode == "auto":
        text_mode = "llm"  # comfyui means "the real servers", both of them
    if media_mode != "auto" and text_mode != "auto":
        media: Media = "comfyui" if media_mode == "comfyui" else "offline"
        text: Text = "llm" if text_mode == "llm" else "offline"
        return _compose(media, text, "", "",
                        f"PIPELINE_ENGINE={media_mode}, PIPELINE_TEXT_ENGINE={text_mode}")
    # Under `auto`, a server expected but down stops the script when it asks for that engine
    # (common.engines.registry.get_engine), so a script that needs only the other one still runs.
    media_stop = text_stop = ""
    if media_mode == "auto":
        media_ok, media_why = _comfyui_status(settings, may_start=False)
        media = "comfyui" if media_ok else "offline"
        if not media_ok:
            media_stop = _comfyui_stop(settings, _pipeline_dirs(settings, None), media_why, False)
    else:
        media, media_why = ("comfyui" if media_mode == "comfyui" else "offline"), f"PIPELINE_ENGINE={media_mode}"
    if text_mode == "auto":
        text_ok, text_why = _llm_status(settings, may_start=False)
        text = "llm" if text_ok else "offline"
        if not text_ok:
            text_stop = _llm_stop(settings, text_why, False)
    else:
        text, text_why = ("llm" if text_mode == "llm" else "offline"), f"PIPELINE_TEXT_ENGINE={text_mode}"
    return _compose(media, text, media_why, text_why, media_stop=media_stop, text_stop=text_stop)
