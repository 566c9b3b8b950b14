"""gen.audio orchestrator: runs the numbered scripts in order, starting and stopping services.

The pipeline is data: edit SCRIPTS to change what runs. `python generate.py --help` lists
the options (--list, --from, --until, --only, --dry-run).
"""
import sys
from pathlib import Path

from common.run.orchestrator import run_pipeline

SCRIPTS = [
    "1.character.py",   # voices, summary, title, chapters
    "2.story.py",       # narration: output/story.wav
    "3.transcribe.py",  # subtitles and timeline
    "4.quality.py",     # lines the TTS garbled or skipped
    "5.timeline.py",    # a sound effect (or Silence) per segment
    "6.timing.py",      # realistic effect durations
    "7.sfx.py",         # output/sfx.wav
    "8.combine.py",     # output/final.wav at -14 LUFS
    "9.media.py",       # description with chapters, tags, thumbnail prompt
    "10.thumbnail.py",  # output/thumbnail.png and Shorts covers
    "11.video.py",      # output/final.mp4 and output/shorts/
    "12.youtube.py",    # upload (a dry-run manifest until authorised)
]

NEEDS_COMFYUI = {
    "2.story.py": True,
    "7.sfx.py": True,
    "10.thumbnail.py": True,
}

NEEDS_LMSTUDIO = {
    "1.character.py": True,
    "5.timeline.py": True,
    "6.timing.py": True,
    "9.media.py": True,
}

SCRIPT_ARGS = {
    "1.character.py": ["--auto-confirm", "y"],
    "7.sfx.py": ["--auto-confirm", "y"],
}

if __name__ == "__main__":
    sys.exit(run_pipeline(Path(__file__).resolve().parent, scripts=SCRIPTS, needs_comfyui=NEEDS_COMFYUI,
                          needs_lmstudio=NEEDS_LMSTUDIO, script_args=SCRIPT_ARGS))
