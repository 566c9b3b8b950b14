"""gen.image orchestrator: runs the numbered scripts in order, starting and stopping services.

As in the seed system, a pipeline may run another pipeline's scripts (paths starting
with ../): gen.image needs gen.audio's narration, sound and metadata, and hands its video
back to gen.audio's 11.video.py and 12.youtube.py. The order is the seed's.
`python generate.py --help` lists the options (--list, --from, --until, --only, --dry-run).
"""
import sys
from pathlib import Path

from common.run.orchestrator import run_pipeline

AUDIO = "../../gen.audio/scripts/"
VIDEO_FILE = "../../gen.image/output/final_sd.mp4"  # from gen.audio/scripts, where those scripts run

# Which server each script needs is said once, in common/run/steps.py.
SCRIPTS = [
    *(AUDIO + s for s in ("1.character.py", "2.story.py", "3.transcribe.py", "4.quality.py")),
    "1.story.py",
    "4.audio.py",
    *(AUDIO + s for s in ("5.timeline.py", "6.timing.py", "7.sfx.py", "8.combine.py")),
    "2.character.py",
    "2.location.py",
    "3.scene.py",
    AUDIO + "9.media.py",
    AUDIO + "10.thumbnail.py",
    "5.video.py",
    "6.combine.py",
    AUDIO + "11.video.py",
    AUDIO + "12.youtube.py",
]

# The seed passed 5.timeline.py "../input/2.timeline.script.txt"; ours reads gen.audio's own
# 2.timeline.txt and story.timings.json, so it takes no file. The Shorts are found where
# 11.video.py writes them (gen.audio/output/shorts), so 12.youtube.py needs no --shorts-dir.
SCRIPT_ARGS = {
    AUDIO + "1.character.py": ["--auto-confirm", "y"],
    "1.story.py": ["--bypass-validation"],
    "4.audio.py": ["--bypass-validation"],
    AUDIO + "7.sfx.py": ["--auto-confirm", "y"],
    AUDIO + "11.video.py": ["--video-file", VIDEO_FILE],
    AUDIO + "12.youtube.py": ["--video-file", VIDEO_FILE, "--upload-shorts"],
}

if __name__ == "__main__":
    sys.exit(run_pipeline(Path(__file__).resolve().parent, scripts=SCRIPTS, script_args=SCRIPT_ARGS))
