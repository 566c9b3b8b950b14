"""gen.audio orchestrator: runs the numbered scripts in order, starting and stopping services.

The pipeline is data: edit SCRIPTS to change what runs. `python generate.py --help` lists
the options (--list, --from, --until, --only, --dry-run).
"""
import sys
from pathlib import Path

from common.orchestrator import run_pipeline

SCRIPTS = [
    "1.character.py",
    "2.story.py",
]

NEEDS_COMFYUI = {
    "1.character.py": False,
    "2.story.py": True,
}

NEEDS_LMSTUDIO = {
    "1.character.py": True,
    "2.story.py": False,
}

SCRIPT_ARGS = {
    "1.character.py": ["--auto-confirm", "y"],
    "2.story.py": [],
}

if __name__ == "__main__":
    sys.exit(run_pipeline(Path(__file__).resolve().parent, scripts=SCRIPTS, needs_comfyui=NEEDS_COMFYUI,
                          needs_lmstudio=NEEDS_LMSTUDIO, script_args=SCRIPT_ARGS))
