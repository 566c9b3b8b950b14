"""gen.video orchestrator: the whole chain, story -> narration -> pictures -> animation -> upload.

This is the overnight command (`cd gen.video && python generate.py`): as in the seed system a
pipeline runs the other pipelines' scripts (paths starting with ../), in the seed's order, and
every step resumes from its checkpoints. `python generate.py --help` lists the options
(--list, --from, --until, --only, --dry-run).
"""
import sys
from pathlib import Path

from common.run.orchestrator import run_pipeline

AUDIO = "../../gen.audio/scripts/"
IMAGE = "../../gen.image/scripts/"
VIDEO_FILE = "../../gen.video/output/final_sd.mp4"  # from gen.audio/scripts, where those scripts run

# Which server each script needs is said once, in common/run/steps.py.
SCRIPTS = [
    *(AUDIO + s for s in ("1.character.py", "2.story.py", "3.transcribe.py", "4.quality.py")),
    IMAGE + "1.story.py",
    IMAGE + "4.audio.py",
    *(AUDIO + s for s in ("5.timeline.py", "6.timing.py", "7.sfx.py", "8.combine.py")),
    IMAGE + "2.character.py",
    IMAGE + "2.location.py",
    IMAGE + "3.scene.py",
    "1.story.py",
    "2.motion.py",
    "3.animate.py",
    AUDIO + "9.media.py",
    AUDIO + "10.thumbnail.py",
    "4.video.py",
    AUDIO + "11.video.py",
    AUDIO + "12.youtube.py",
]

SCRIPT_ARGS = {
    AUDIO + "1.character.py": ["--auto-confirm", "y"],
    IMAGE + "1.story.py": ["--bypass-validation"],
    IMAGE + "4.audio.py": ["--bypass-validation"],
    AUDIO + "7.sfx.py": ["--auto-confirm", "y"],
    AUDIO + "11.video.py": ["--video-file", VIDEO_FILE],
    AUDIO + "12.youtube.py": ["--video-file", VIDEO_FILE, "--upload-shorts"],
}

if __name__ == "__main__":
    sys.exit(run_pipeline(Path(__file__).resolve().parent, scripts=SCRIPTS, script_args=SCRIPT_ARGS))
