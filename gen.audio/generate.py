"""gen.audio orchestrator: runs the numbered scripts in order, starting and stopping services.

The pipeline is data: edit SCRIPTS to change what runs (which server each script needs is said
once, in common/run/steps.py). `python generate.py --help` lists
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

SCRIPT_ARGS = {
    "1.character.py": ["--auto-confirm", "y"],
    "7.sfx.py": ["--auto-confirm", "y"],
}

if __name__ == "__main__":
    sys.exit(run_pipeline(Path(__file__).resolve().parent, scripts=SCRIPTS, script_args=SCRIPT_ARGS))
