"""Where each pipeline keeps things (SPEC 2), and how one story feeds all three pipelines."""
from __future__ import annotations

from pathlib import Path

from common.run.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ("gen.audio", "gen.image", "gen.video")


def pipeline_dir_of(script_file: str | Path) -> Path:
    """A numbered script lives in <pipeline>/scripts/; its pipeline folder is the parent."""
    return Path(script_file).resolve().parent.parent


def story_path(pipeline_dir: Path) -> Path:
    """gen.image and gen.video read their own input/1.story.txt when present, else gen.audio's."""
    own = pipeline_dir / "input" / "1.story.txt"
    if own.is_file():
        return own
    shared = pipeline_dir.parent / "gen.audio" / "input" / "1.story.txt"
    if shared.is_file():
        return shared
    raise InputError(
        f"no story found: write it to {own if pipeline_dir.name == 'gen.audio' else shared} "
        "(one '[speaker_tag] text' line per utterance) and run again."
    )


def require_file(path: Path, what: str, hint: str) -> Path:
    """A missing input is a user error with a fix, not a FileNotFoundError traceback."""
    if not path.is_file():
        raise InputError(f"{what} {path} is missing; {hint}")
    if path.stat().st_size == 0:
        raise InputError(f"{what} {path} is empty; {hint}")
    return path
