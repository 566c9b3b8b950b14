"""Every setting the pipelines know: name, type, the seed system's value, and what it is for.

One table so that settings files, environment variables and flags are all checked against the
same names, and the README can be generated from it rather than drift from it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str
    kind: type = str
    env: bool = True
    choices: tuple[Any, ...] = ()
    default_factory: Callable[[Path], Any] | None = None

    def resolve_default(self, repo_root: Path) -> Any:
        if self.default_factory is not None:
            return self.default_factory(repo_root)
        # Lists and dicts are copied so no caller can mutate the schema.
        if isinstance(self.default, (list, dict)):
            import copy

            return copy.deepcopy(self.default)
        return self.default


def _s(name: str, default: Any, doc: str, kind: type | None = None, **kw: Any) -> Setting:
    return Setting(name, default, doc, kind or type(default), **kw)


_SETTINGS = [
    # --- services and engines (SPEC 6/7) ---
    _s("PIPELINE_ENGINE", "auto", "auto: ComfyUI/LLM when reachable or startable, else offline", choices=("auto", "comfyui", "offline")),
    _s("PIPELINE_TEXT_ENGINE", "auto", "set by the orchestrator for its children: llm or offline", choices=("auto", "llm", "offline")),
    _s("COMFYUI_BASE_URL", "http://127.0.0.1:8188", "ComfyUI server"),
    Setting("COMFYUI_DIR", None, "where ComfyUI is installed (main.py)", str,
            default_factory=lambda root: str(root / "ComfyUI")),
    Setting("COMFYUI_PYTHON", None, "the Python that runs ComfyUI's main.py", str,
            default_factory=lambda root: sys.executable),
    _s("COMFYUI_EXTRA_ARGS", "", "extra arguments for ComfyUI's main.py (e.g. --lowvram)"),
    _s("COMFYUI_JOB_TIMEOUT", 3600.0, "seconds one ComfyUI job may take"),
    _s("LM_STUDIO_BASE_URL", "http://127.0.0.1:1234/v1", "OpenAI-compatible server (LM Studio, Ollama, llama.cpp, vLLM)"),
    _s("LM_STUDIO_MODEL", "qwen/qwen3-14b", "model for text steps ('auto' = the first the server lists)"),
    _s("LM_STUDIO_CMD", "lms", "LM Studio's CLI (a command, path, or command with arguments)"),
    _s("LLM_TIMEOUT", 300.0, "seconds one LLM answer may take"),
    _s("LLM_MAX_RETRIES", 3, "retries after an answer that fails validation (so up to 4 requests)"),
    _s("SERVICE_START_TIMEOUT", 300.0, "seconds a service may take to become ready"),
    _s("SERVICE_STOP_GRACE", 15.0, "seconds a service gets to stop before it is killed"),
    # --- checkpoints (SPEC 6) ---
    _s("ENABLE_RESUMABLE_MODE", True, "keep checkpoints and resume from them"),
    _s("CLEANUP_TRACKING_FILES", False, "delete a script's checkpoint file once it finishes"),
    # --- publishing (SPEC 9) ---
    _s("YOUTUBE_PRIVACY_STATUS", "private", "privacy of uploads", choices=("private", "unlisted", "public")),
    _s("YOUTUBE_CATEGORY_ID", "22", "YouTube category id"),
    # --- gen.audio ---
    _s("CHUNK_SIZE", 5, "story lines per TTS job (2.story.py --chunk-size)"),
    _s("LANGUAGE", "en", "voice language for speakers (voices/<gender>/<language>...)"),
    _s("REGION", "", "preferred voice region/accent folder, empty = any"),
    _s("NARRATOR_VOICE", "narrator", "voice stem of the narrator (voices/narrator.wav)"),
    _s("AUDIO_SAMPLE_RATE", 44100, "sample rate of story.wav and everything mixed with it"),
    _s("LINE_PAUSE", 0.3, "seconds of silence between two lines (the seed's pause_between_speakers)"),
    _s("TTS_SEED", 0, "seed of the TTS node; 0 = derived from each chunk's text, so reruns sound the same"),
    _s("STORY_WORKFLOW", "story.json", "workflow/ file used for speech"),
    # --- images (SPEC 4; seed values) ---
    _s("ART_STYLE", "Ghibli Art", "art style put in front of every image prompt"),
    _s("CHARACTER_WIDTH", 633, "character image width"),
    _s("CHARACTER_HEIGHT", 950, "character image height"),
    _s("IMAGE_WIDTH", 1280, "location/scene/thumbnail image width"),
    _s("IMAGE_HEIGHT", 720, "location/scene/thumbnail image height"),
    _s("LATENT_MODE", "LATENT", "LATENT: empty latent; IMAGE: start from input/2.latent.*.png", choices=("LATENT", "IMAGE")),
    _s("LATENT_DENOISING_STRENGTH", 0.8, "denoise when starting from an image"),
    _s("FACE_ONLY", False, "characters: face portraits only"),
    _s("VARIATIONS_PER_CHARACTER", 1, "images per character"),
    _s("VARIATIONS_PER_LOCATION", 1, "images per location"),
    _s("VARIATIONS_PER_SCENE", 1, "images per scene"),
    _s("USE_LORA", False, "apply the LORAS list"),
    _s("LORA_MODE", "serial", "serial: one pass per LoRA; chained: all LoRAs in one pass", choices=("serial", "chained")),
    _s("LORAS", [], "list of {name, strength_model, strength_clip, steps, denoising_strength, enabled, save_intermediate}", kind=list),
    _s("SAMPLING_STEPS", 25, "sampler steps"),
    _s("NEGATIVE_PROMPT", "blur, distorted, text, watermark, extra limbs, bad anatomy, poorly drawn, asymmetrical, malformed, disfigured, ugly, bad proportions, plastic texture, artificial looking, cross-eyed, missing fingers, extra fingers, bad teeth, missing teeth, unrealistic", "negative prompt"),
    _s("USE_RANDOM_SEED", False, "a new seed per image instead of FIXED_SEED"),
    _s("FIXED_SEED", 333555666, "seed when USE_RANDOM_SEED is off"),
    _s("USE_SUMMARY_TEXT", False, "prompts use the short descriptions (2.*.txt) instead of prose (3.*.txt)"),
    _s("ACTIVE_CHARACTER_MODE", "IMAGE_TEXT", "how scenes use character images", choices=("IMAGE_TEXT", "TEXT", "IMAGE", "NONE")),
    _s("ACTIVE_LOCATION_MODE", "TEXT", "how scenes use location images", choices=("IMAGE_TEXT", "TEXT", "IMAGE", "NONE")),
    _s("IMAGE_STITCH_COUNT", 1, "reference images stitched per scene (1-5)"),
    _s("CHARACTER_RESIZE_FACTOR", 1.0, "scale of character images in the stitched reference"),
    _s("NAME_OVERLAY", True, "draw the name band on character/location images"),
    _s("TITLE_POSITION", "middle", "thumbnail title position", choices=("top", "middle", "bottom")),
    _s("TITLE_LAYOUT", "overlay", "thumbnail title layout", choices=("overlay", "expand", "fit")),
    _s("TITLE_FONT_SCALE", 1.0, "thumbnail title size factor"),
    _s("SHORTS_VARIATIONS", 5, "number of Shorts"),
    # --- video ---
    _s("VIDEO_WIDTH", 1024, "animation width"),
    _s("VIDEO_HEIGHT", 576, "animation height"),
    _s("FRAMES_PER_SECOND", 24, "animation frame rate"),
]

SCHEMA: dict[str, Setting] = {s.name: s for s in _SETTINGS}
