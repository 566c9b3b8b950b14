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
    _s("COMFYUI_STALL_TIMEOUT", 600.0, "watchdog: a running ComfyUI job with no progress message for this many seconds is interrupted and retried (0: off)"),
    _s("COMFYUI_JOB_RETRIES", 1, "further attempts after a ComfyUI job stalled or was lost"),
    _s("COMFYUI_OOM_RETRY", True, "after an out-of-memory error: free ComfyUI's memory and retry once with lower settings"),
    _s("COMFYUI_OOM_SCALE", 0.75, "the lower settings of that retry: image and video sizes times this (0.25-1.0), and tiled VAE decoding"),
    _s("COMFYUI_RETURN_WAIT", 60.0, "seconds to wait for a ComfyUI server that stopped answering to come back"),
    _s("COMFYUI_REUSE_JOBS", True, "take over a job an interrupted run left on ComfyUI (the same graph): wait for it if still queued, use its files if finished (--force-start: never)"),
    _s("COMFYUI_QUEUE_DEPTH", 2, "jobs kept queued on each ComfyUI server (COMFYUI_BASE_URL may list several, comma-separated)"),
    _s("LM_STUDIO_BASE_URL", "http://127.0.0.1:1234/v1", "OpenAI-compatible server (LM Studio, Ollama, llama.cpp, vLLM)"),
    _s("LM_STUDIO_MODEL", "qwen/qwen3-14b", "model for text steps ('auto' = the first the server lists)"),
    _s("LM_STUDIO_CMD", "lms", "LM Studio's CLI (a command, path, or command with arguments)"),
    _s("LLM_TIMEOUT", 300.0, "seconds one LLM answer may take"),
    _s("LLM_MAX_RETRIES", 3, "retries after an answer that fails validation (so up to 4 requests)"),
    _s("LLM_TRANSPORT_RETRIES", 2, "retries after the LLM server hung past LLM_TIMEOUT, dropped the connection or answered 5xx/429"),
    _s("SERVICE_START_TIMEOUT", 300.0, "seconds a service may take to become ready"),
    _s("SERVICE_STOP_GRACE", 15.0, "seconds a service gets to stop before it is killed"),
    # --- checkpoints (SPEC 6) ---
    _s("ENABLE_RESUMABLE_MODE", True, "keep checkpoints and resume from them"),
    _s("CLEANUP_TRACKING_FILES", False, "delete a script's checkpoint file once it finishes"),
    # --- publishing (SPEC 9) ---
    _s("YOUTUBE_PRIVACY_STATUS", "private", "privacy of uploads", choices=("private", "unlisted", "public")),
    _s("YOUTUBE_CATEGORY_ID", "22", "YouTube category id"),
    # --- gen.audio 12.youtube.py (publishing) ---
    _s("YOUTUBE_CLIENT_SECRETS", "client_secrets.json", "OAuth client file (type Desktop app); a relative path is inside the pipeline folder"),
    _s("YOUTUBE_TOKEN", "token.json", "authorisation saved by 12.youtube.py --authorize (mode 0600); a relative path is inside the pipeline folder"),
    _s("YOUTUBE_DEFAULT_LANGUAGE", "en", "language of the video's title, description, audio and captions (BCP-47, e.g. en, en-GB)"),
    _s("YOUTUBE_CHUNK_MB", 8.0, "upload chunk size in MiB, a multiple of 0.25; upload progress is saved after each chunk"),
    _s("YOUTUBE_MAX_RETRIES", 8, "transient upload failures in a row that are retried before stopping (the upload stays resumable)"),
    _s("YOUTUBE_UPLOAD_SHORTS", False, "also upload output/shorts/shorts.v*.mp4 (12.youtube.py --upload-shorts)"),
    # --- gen.audio ---
    _s("CHUNK_SIZE", 5, "story lines per TTS job (2.story.py --chunk-size)"),
    _s("LANGUAGE", "en", "voice language for speakers (voices/<gender>/<language>...)"),
    _s("REGION", "", "preferred voice region/accent folder, empty = any"),
    _s("NARRATOR_VOICE", "narrator", "voice stem of the narrator (voices/narrator.wav)"),
    _s("AUDIO_SAMPLE_RATE", 44100, "sample rate of story.wav and everything mixed with it"),
    _s("LINE_PAUSE", 0.3, "seconds of silence between two lines (the seed's pause_between_speakers)"),
    _s("TTS_SEED", 0, "seed of the TTS node; 0 = derived from each chunk's text, so reruns sound the same"),
    _s("STORY_WORKFLOW", "story.json", "workflow/ file used for speech"),
    # --- gen.audio 3.transcribe.py and 4.quality.py ---
    _s("TRANSCRIBE_ENGINE", "auto", "whisper: transcribe story.wav; timings: subtitles from the line timings (offline); auto: whisper when installed and the speech is not an offline preview", choices=("auto", "whisper", "timings")),
    _s("WHISPER_MODEL", "base", "Whisper model name (tiny, base, small, medium, large-v3, ...) for 3.transcribe.py"),
    _s("SUBTITLE_MAX_CHARS", 42, "characters per subtitle row"),
    _s("SUBTITLE_MAX_LINES", 2, "rows per subtitle cue"),
    _s("SUBTITLE_MIN_DURATION", 1.0, "seconds a subtitle cue stays on screen at least"),
    _s("QUALITY_THRESHOLD", 0.80, "4.quality.py: a line whose transcript matches less than this (0-1) fails"),
    _s("QUALITY_MAX_RETAKES", 2, "4.quality.py --retake: rounds of regenerating failing chunks per chunk"),
    # --- gen.audio 5.timeline.py, 6.timing.py, 7.sfx.py (sound effects) ---
    _s("SFX_BATCH_SIZE", 10, "transcript segments (5.timeline.py) or effects (6.timing.py) per LLM question"),
    _s("SFX_MAX_SECONDS", 47.0, "longest single sound effect in seconds (Stable Audio Open makes at most ~47 s)"),
    _s("SFX_MAX_WORKERS", 3, "sound-effect jobs queued on ComfyUI at once, so it never idles between jobs"),
    _s("SFX_SEED", 0, "seed of the sound-effect sampler; 0 = derived from each description, so reruns sound the same"),
    # --- gen.audio 8.combine.py (mix; seed: SFX added at -6 dB, no ducking, no music) ---
    _s("SFX_VOLUME", -6.0, "dB applied to sfx.wav in the mix (the seed added it at -6 dB)"),
    _s("MUSIC_DIR", "", "folder of background music files; empty = <pipeline>/music"),
    _s("MUSIC_FILE", "", "music bed: a file name in MUSIC_DIR (or a path); empty = no music"),
    _s("MUSIC_VOLUME", -18.0, "music bed loudness relative to the speech, in dB, before ducking"),
    _s("MUSIC_FADE", 3.0, "seconds the looped music bed fades in at the start and out at the end"),
    _s("DUCK_THRESHOLD", -12.0, "dB relative to the speech's loudness above which speech ducks SFX and music"),
    _s("DUCK_RATIO", 8.0, "ducking compressor ratio (1-20): higher ducks deeper"),
    _s("DUCK_ATTACK", 20.0, "ms for the ducking to take hold when speech starts"),
    _s("DUCK_RELEASE", 400.0, "ms for SFX and music to come back after speech stops"),
    _s("FINAL_LOUDNESS", -14.0, "integrated loudness of final.wav in LUFS (SPEC 8: -14)"),
    _s("FINAL_TRUE_PEAK", -1.0, "maximum true peak of final.wav in dBTP (SPEC 8: -1)"),
    _s("FINAL_SAMPLE_RATE", 48000, "sample rate of final.wav: 48000 (video's native rate) or 44100", choices=(48000, 44100)),
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
    _s("USE_SUMMARY_TEXT", False, "image prompts use the prose summaries (3.character.txt, 3.location.txt) instead of the attribute lists (2.*.txt)"),
    _s("ACTIVE_CHARACTER_MODE", "IMAGE_TEXT", "how scenes use character images", choices=("IMAGE_TEXT", "TEXT", "IMAGE", "NONE")),
    _s("ACTIVE_LOCATION_MODE", "TEXT", "how scenes use location images", choices=("IMAGE_TEXT", "TEXT", "IMAGE", "NONE")),
    _s("IMAGE_STITCH_COUNT", 1, "reference images stitched per scene (1-5)"),
    _s("CHARACTER_RESIZE_FACTOR", 1.0, "scale of character images in the stitched reference"),
    _s("NAME_OVERLAY", True, "draw the name band on character/location images"),
    # --- gen.image 2.character.py, 2.location.py, 3.scene.py (common/images) ---
    _s("USE_NEGATIVE_PROMPT", False, "send NEGATIVE_PROMPT with character/location/scene images (Flux zeroes it anyway)"),
    _s("EXTRA_PROMPT_PHRASES", ["Must keep character's both hands separate from each other and visible.",
                                "No textual elements. Just use logos/icons if needed."],
       "sentences appended to every character/location/scene prompt", kind=list),
    _s("CHARACTER_LATENT_SIZE", "medium", "LATENT_MODE IMAGE: characters start from input/2.latent.character.{face|body}.<size>.png"),
    _s("LOCATION_LATENT_SIZE", "large", "LATENT_MODE IMAGE: locations start from input/2.latent.location.<size>.png (scenes from their location's picture)"),
    _s("CHARACTER_WORD_LIMIT", 140, "scene prompts: words of a character's description kept (TEXT modes)"),
    _s("LOCATION_WORD_LIMIT", 230, "scene prompts: words of a location's description kept (TEXT modes)"),
    _s("NAME_FONT_SCALE", 1.0, "size factor of the name on the NAME_OVERLAY band"),
    _s("NAME_BAND_HEIGHT_RATIO", 0.30, "tallest the NAME_OVERLAY band may be, as a fraction of the picture's height"),
    _s("TITLE_POSITION", "middle", "thumbnail title position", choices=("top", "middle", "bottom")),
    _s("TITLE_LAYOUT", "overlay", "thumbnail title layout", choices=("overlay", "expand", "fit")),
    _s("TITLE_FONT_SCALE", 1.0, "thumbnail title size factor"),
    _s("SHORTS_VARIATIONS", 5, "number of Shorts"),
    # --- gen.audio 10.thumbnail.py ---
    _s("USE_TITLE_TEXT", True, "10.thumbnail.py: draw the title on the thumbnail and Shorts covers (False: the picture alone)"),
    # --- gen.audio 11.video.py (final.mp4 and the Shorts) ---
    _s("FINAL_VIDEO_SIZE", "1280x720", "size of the published videos: final.mp4 and gen.video's final_sd.mp4 (SPEC 8 allows these two)", choices=("1280x720", "1920x1080")),
    _s("VIDEO_AUDIO_BITRATE", "192k", "AAC bitrate of final.mp4 and the Shorts"),
    _s("SHORTS_SECONDS", 60.0, "target length of a Short in seconds, at most 180; each ends at the last sentence end that fits"),
    _s("SHORTS_CAPTIONS", True, "burn the subtitles (input/2.story.srt) into the Shorts"),
    # --- video ---
    _s("VIDEO_WIDTH", 1024, "animation width"),
    _s("VIDEO_HEIGHT", 576, "animation height"),
    _s("FRAMES_PER_SECOND", 24, "animation frame rate"),
    # --- gen.video 1.story.py .. 4.video.py (motion prompts, animation, final video) ---
    _s("MODEL_MOTION_GENERATION", "qwen_qwen3-vl-30b-a3b-instruct", "vision model that writes 2.motion.txt (2.motion.py); 'auto' = the first the server lists, empty = LM_STUDIO_MODEL"),
    _s("VIDEO_WORKFLOW", "ltx", "animation model: ltx (workflow/animate.json, 8n+1 frames) or wan (workflow/animate_wan.json, WAN 2.2, 4n+1 frames)", choices=("ltx", "wan")),
    _s("MODEL_MAX_SECONDS", {"ltx": 8.0, "wan": 5.0}, "longest clip each model makes in one job; a longer scene is chained from several segments", kind=dict),
    _s("FIRST_LAST_FRAME", True, "a scene followed by one in the same location ends on that scene's picture, so the two clips meet exactly"),
    _s("HOLD_SHORT_SCENES_BELOW", 1.0, "seconds: shorter scenes get a Ken Burns push over their picture instead of a generation"),
    _s("HELD_SCENES", [], "scene ids (e.g. [\"scene_1.3\"]) that get a Ken Burns push instead of a generation", kind=list),
    _s("ENABLE_MOTION", True, "put the scene's 2.motion.txt prompt into the animation prompt"),
    _s("ENABLE_SCENE", True, "put the scene line (setting, characters, poses, actions) into the animation prompt"),
    _s("ENABLE_LOCATION", True, "put the location's description into the animation prompt"),
    _s("ANIMATION_SEED", 0, "base seed of the animation sampler; each shot and segment derives its own from it and its id, so reruns are the same"),
    # --- gen.image 1.story.py, 4.audio.py, 5.video.py, 6.combine.py (descriptions, scene timeline, slideshow) ---
    _s("CHARACTER_PROSE_MIN_WORDS", 60, "gen.image 1.story.py: shortest 3.character.txt paragraph the LLM may write (words)"),
    _s("CHARACTER_PROSE_MAX_WORDS", 120, "gen.image 1.story.py: longest 3.character.txt paragraph (words)"),
    _s("LOCATION_PROSE_MIN_WORDS", 40, "gen.image 1.story.py: shortest 3.location.txt paragraph the LLM may write (words)"),
    _s("LOCATION_PROSE_MAX_WORDS", 100, "gen.image 1.story.py: longest 3.location.txt paragraph (words)"),
    _s("VIDEO_FPS", 24.0, "gen.image 5.video.py: frame rate of the scene clips and merged.mp4 (seed 24; 25, 30, 29.97 work too)"),
    _s("SLIDESHOW_WIDTH", 1280, "gen.image 5.video.py: video width; 6.combine.py copies the picture as it is (seed: 854, rescaled later)"),
    _s("SLIDESHOW_HEIGHT", 720, "gen.image 5.video.py: video height (seed: 480, rescaled later)"),
    _s("SLIDESHOW_FIT", "contain", "gen.image 5.video.py: contain keeps the whole picture (seed: letterbox), cover fills the frame", choices=("contain", "cover")),
    _s("SCENE_PUSH", False, "gen.image 5.video.py: a slow push or pan over each scene picture instead of a still"),
    _s("SCENE_PUSH_ZOOM", 1.06, "gen.image 5.video.py: how far a push goes (1.0-4.0)"),
    _s("COMBINE_AUDIO_BITRATE", "192k", "gen.image 6.combine.py: AAC bit rate of final_sd.mp4's sound"),
    # --- overnight runs (common/run/preflight.py, common/run/report.py): morning report ---
    _s("NOTIFY_CMD", "", "command run (no shell) with output/report.md's path as last argument when generate.py ends; empty = none"),
    # --- overnight runs (common/run/orchestrator.py): restart-and-retry of the servers we started ---
    _s("SERVICE_RESTARTS", 1, "times a script that exits 5 (ComfyUI or the LLM stopped answering) gets the server restarted and runs again; only servers the run started, never one that was already running"),
]

SCHEMA: dict[str, Setting] = {s.name: s for s in _SETTINGS}
