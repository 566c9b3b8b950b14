"""Which engine does the work: the real servers or the embedded offline engine (SPEC 7).

Decided once per run, quickly (connection checks of ~0.5 s, no server is started here), and
said to the user in one line, so a run that silently produced previews instead of real
outputs is impossible. Media (speech, images, animation: ComfyUI) and text (the LLM) are
decided independently: a laptop with Ollama but no ComfyUI still gets real text.

The orchestrator, which may start servers, counts "startable" as available; it then exports
PIPELINE_ENGINE=<media> and PIPELINE_TEXT_ENGINE=<text> to its children. A script run alone
resolves `auto` by reachability only, since it never starts services itself.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from common.run.errors import ConfigError

Media = Literal["comfyui", "offline"]
Text = Literal["llm", "offline"]


@dataclass(frozen=True)
class EngineChoice:
    media: Media
    text: Text
    reason: str


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
        return True, f"ComfyUI will be started from {main_py.parent}"
    if startable:
        return False, f"ComfyUI not answering at {url} (run generate.py to start it)"
    return False, f"ComfyUI not found at {url} and no {main_py}"


def _llm_status(settings: Any, may_start: bool) -> tuple[bool, str]:
    from common.services.net import CHECK_TIMEOUT, http_answers, is_loopback_url
    from common.services.processes import resolve_command

    url = settings.LM_STUDIO_BASE_URL.rstrip("/")
    if http_answers(f"{url}/models", CHECK_TIMEOUT):
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


def _compose(media: Media, text: Text, media_why: str, text_why: str, cause: str = "") -> EngineChoice:
    label, previews = _LABELS[(media, text)]
    return EngineChoice(media, text, f"engine: {label} ({cause or f'{media_why}; {text_why}'}){previews}")


def choose_engines(settings: Any, *, may_start: bool = True) -> EngineChoice:
    """Resolve PIPELINE_ENGINE (auto|comfyui|offline) into a media and a text engine."""
    mode = str(settings.PIPELINE_ENGINE).lower()
    text_mode = str(getattr(settings, "PIPELINE_TEXT_ENGINE", "auto")).lower()
    if mode == "offline" and text_mode == "llm":  # offline pictures and sound, real text
        return _compose("offline", "llm", "", "",
                        f"PIPELINE_ENGINE=offline, PIPELINE_TEXT_ENGINE=llm: LLM at {settings.LM_STUDIO_BASE_URL}")
    if mode == "offline":
        return _compose("offline", "offline", "", "", "PIPELINE_ENGINE=offline")
    if mode == "comfyui":
        return _compose("comfyui", "llm", "", "",
                        f"PIPELINE_ENGINE=comfyui: ComfyUI at {settings.COMFYUI_BASE_URL}, "
                        f"LLM at {settings.LM_STUDIO_BASE_URL}")
    if mode != "auto":
        raise ConfigError(f"PIPELINE_ENGINE is {mode!r}; use auto, comfyui or offline.")
    media_ok, media_why = _comfyui_status(settings, may_start)
    text_ok, text_why = _llm_status(settings, may_start)
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
    if media_mode == "auto":
        media_ok, media_why = _comfyui_status(settings, may_start=False)
        media = "comfyui" if media_ok else "offline"
    else:
        media, media_why = ("comfyui" if media_mode == "comfyui" else "offline"), f"PIPELINE_ENGINE={media_mode}"
    if text_mode == "auto":
        text_ok, text_why = _llm_status(settings, may_start=False)
        text = "llm" if text_ok else "offline"
    else:
        text, text_why = ("llm" if text_mode == "llm" else "offline"), f"PIPELINE_TEXT_ENGINE={text_mode}"
    return _compose(media, text, media_why, text_why)
