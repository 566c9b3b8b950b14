"""gen.video orchestrator: runs the numbered scripts in order, starting and stopping services.

As in the seed system, a pipeline may run another pipeline's scripts (paths starting
with ../): gen.video first needs gen.audio's narration (and gen.image's scene pictures and timeline).
`python generate.py --help` lists the options (--list, --from, --until, --only, --dry-run).
"""
import sys
from pathlib import Path

from common.orchestrator import run_pipeline

SCRIPTS = [
    "../../gen.audio/scripts/1.character.py",
    "../../gen.audio/scripts/2.story.py",
    "1.story.py",
    "2.motion.py",
    "3.animate.py",
    "4.video.py",
]

NEEDS_COMFYUI = {
    "../../gen.audio/scripts/1.character.py": False,
    "../../gen.audio/scripts/2.story.py": True,
    "1.story.py": False,
    "2.motion.py": False,
    "3.animate.py": True,
    "4.video.py": False,
}

NEEDS_LMSTUDIO = {
    "../../gen.audio/scripts/1.character.py": True,
    "../../gen.audio/scripts/2.story.py": False,
    "1.story.py": False,
    "2.motion.py": True,
    "3.animate.py": False,
    "4.video.py": False,
}

SCRIPT_ARGS = {
    "../../gen.audio/scripts/1.character.py": ["--auto-confirm", "y"],
}

if __name__ == "__main__":
    sys.exit(run_pipeline(Path(__file__).resolve().parent, scripts=SCRIPTS, needs_comfyui=NEEDS_COMFYUI,
                          needs_lmstudio=NEEDS_LMSTUDIO, script_args=SCRIPT_ARGS))
