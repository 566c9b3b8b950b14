"""Which engine serves each kind of work, chosen once per run (PIPELINE_ENGINE, SPEC 7).

Builders are registered per (kind, backend); a script asks for a kind and gets whichever
backend the run resolved to, so no script holds an if/elif over backends.
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any, Callable

from common.engines.choice import EngineChoice, engines_from_env
from common.run.errors import ConfigError, InputError, ServiceError
from common.config.paths import code_dir
from common.config.settings import Settings

Builder = Callable[[Settings, Path], Any]
_BUILDERS: dict[tuple[str, str], Builder] = {}


def register(kind: str, backend: str) -> Callable[[Builder], Builder]:
    def wrap(builder: Builder) -> Builder:
        _BUILDERS[(kind, backend)] = builder
        return builder

    return wrap


def _workflow(pipeline_dir: Path, name: str) -> Path:
    path = Path(name) if Path(name).is_absolute() else code_dir(pipeline_dir) / "workflow" / name
    if not path.is_file():
        raise InputError(f"workflow {path} is missing; restore it from git or point the setting at your own API-format workflow.")
    return path


def _comfy_pool(settings: Settings):
    from common.services.comfyui.pool import ComfyPool

    return ComfyPool.from_settings(settings)


@register("speech", "offline")
def _offline_speech(settings: Settings, pipeline_dir: Path) -> Any:
    from common.offline.engine import OfflineSpeech, voice_indices
    from common.audio.voices import VoiceLibrary

    library = VoiceLibrary.scan(code_dir(pipeline_dir) / "voices")
    return OfflineSpeech(settings.AUDIO_SAMPLE_RATE, settings.LINE_PAUSE, voice_indices(library))


@register("speech", "comfyui")
def _comfy_speech(settings: Settings, pipeline_dir: Path) -> Any:
    from common.engines.comfy import ComfySpeech

    return ComfySpeech(_comfy_pool(settings), _workflow(pipeline_dir, settings.STORY_WORKFLOW),
                       settings.AUDIO_SAMPLE_RATE, settings.LINE_PAUSE, settings.COMFYUI_JOB_TIMEOUT)


@register("sound", "offline")
def _offline_sound(settings: Settings, pipeline_dir: Path) -> Any:
    from common.offline.engine import OfflineSound

    return OfflineSound(settings.AUDIO_SAMPLE_RATE)


@register("sound", "comfyui")
def _comfy_sound(settings: Settings, pipeline_dir: Path) -> Any:
    from common.engines.comfy import ComfySound

    return ComfySound(_comfy_pool(settings), _workflow(pipeline_dir, "sfx.json"), settings.AUDIO_SAMPLE_RATE,
                      settings.COMFYUI_JOB_TIMEOUT)


@register("image", "comfyui")
def _comfy_image(settings: Settings, pipeline_dir: Path) -> Any:
    from common.engines.comfy import ComfyImage

    folder = code_dir(pipeline_dir) / "workflow"
    # A sheet panel follows the character's picture as a reference image: the scene (Kontext) workflow.
    # The layered keyframes' plates, poses and composites have their own (Qwen-Image, Qwen-Image-Edit).
    names = {"character": "character_location.json", "location": "character_location.json",
             "scene": "scene.json", "sheet": "scene.json", "thumbnail": "thumbnail.json",
             "plate": "plate.json", "pose": "pose.json", "composite": "composite.json"}
    templates = {kind: folder / name for kind, name in names.items() if (folder / name).is_file()}
    if not templates:
        raise InputError(f"{folder} has no image workflow (scene.json, character_location.json or thumbnail.json).")
    templates.setdefault("scene", next(iter(templates.values())))
    return ComfyImage(_comfy_pool(settings), templates, settings.COMFYUI_JOB_TIMEOUT,
                      oom_scale=settings.COMFYUI_OOM_SCALE)


@register("animation", "comfyui")
def _comfy_animation(settings: Settings, pipeline_dir: Path) -> Any:
    from common.video.animation import model_rule
    from common.video.speaking import s2v_rule
    from common.engines.comfy import ComfyAnimation

    # VIDEO_WORKFLOW picks the model family: its workflow file and its frame rule / length limit.
    files = {"ltx": "animate.json", "wan": "animate_wan.json"}
    rule = model_rule(settings.VIDEO_WORKFLOW, settings.MODEL_MAX_SECONDS)
    speaking = _workflow(pipeline_dir, settings.SPEAKING_WORKFLOW) if settings.SPEAKING_WORKFLOW else None
    return ComfyAnimation(_comfy_pool(settings), _workflow(pipeline_dir, files[settings.VIDEO_WORKFLOW]), rule,
                          timeout=settings.COMFYUI_JOB_TIMEOUT, oom_scale=settings.COMFYUI_OOM_SCALE,
                          speaking=speaking, talk=s2v_rule(speaking, settings.MODEL_MAX_SECONDS) if speaking else None)


# Offline engines that take no settings; imported only when chosen, like every engine here.
for _kind, _module, _name in (("image", "common.offline.engine", "OfflineImage"),
                              ("animation", "common.offline.engine", "OfflineAnimation"),
                              ("text", "common.engines.text", "OfflineText")):
    register(_kind, "offline")(lambda settings, pipeline_dir, m=_module, n=_name: getattr(import_module(m), n)())


class LazyClient:
    """Builds the LLM client on first use: importing openai costs 1-2 s, which a step whose
    answers are all checkpointed already (every resumed or repeated run) should not pay."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._build()
        return getattr(self._client, name)


@register("text", "llm")
def _llm_text(settings: Settings, pipeline_dir: Path) -> Any:
    from common.engines.text import LLMText

    def build() -> Any:
        from common.services.llm import LLMClient

        return LLMClient(settings.LM_STUDIO_BASE_URL, settings.LM_STUDIO_MODEL,
                         timeout=settings.LLM_TIMEOUT, max_retries=settings.LLM_MAX_RETRIES,
                         transport_retries=settings.LLM_TRANSPORT_RETRIES, retry_pauses=settings.LLM_RETRY_PAUSES,
                         thinking_tokens=settings.LLM_THINKING_TOKENS)

    return LLMText(LazyClient(build), settings.LM_STUDIO_MODEL)


def get_engine(kind: str, settings: Settings, pipeline_dir: Path, choice: EngineChoice | None = None) -> Any:
    """The engine for `kind` ('speech', 'sound', 'image', 'animation', 'text') in this run; a text
    engine answers a domain's questions after `.become(LLMx, Offlinex)` (common.engines.text)."""
    choice = choice or engines_from_env(settings)
    stop = choice.text_stop if kind == "text" else choice.media_stop
    if stop:  # `auto` with the expected server down: no previews in place of real work (issue 13)
        raise ServiceError(stop)
    backend = choice.text if kind == "text" else choice.media
    try:
        builder = _BUILDERS[(kind, backend)]
    except KeyError:
        raise ConfigError(f"no {backend} engine can make {kind}; set PIPELINE_ENGINE to auto, comfyui or offline.") from None
    return builder(settings, pipeline_dir)
