"""Reference pictures for a scene: its characters (and place) side by side in one image.

An edit model reads each reference image as one picture, so the seed system stitched up to
IMAGE_STITCH_COUNT pictures into one (characters first, then the location) and named their
positions in the prompt ("the character on the left of reference image 1"). Characters are
scaled by CHARACTER_RESIZE_FACTOR first, so their size next to the place can be tuned. The
stitch is done here with Pillow rather than in the graph: the uploaded file is then exactly
what the model sees, and it can be shown on the review page.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image

from common.run.errors import ConfigError, InputError
from common.pictures.image_files import save_png

MAX_STITCH_COUNT = 5
MAX_SIDE = 4096  # larger stitches are scaled down: the model rescales to about a megapixel anyway
BACKGROUND = (255, 255, 255)  # the seed's ImageStitch spacing colour

# Position words for a picture within a stitched group, by group size (left to right).
_POSITIONS: dict[int, tuple[str, ...]] = {
    2: ("on the left", "on the right"),
    3: ("on the left", "in the middle", "on the right"),
    4: ("leftmost", "second from the left", "second from the right", "rightmost"),
    5: ("leftmost", "second from the left", "in the centre", "second from the right", "rightmost"),
}


@dataclass(frozen=True)
class Reference:
    """One picture that goes into a stitched reference: whose it is, where it is, and its scale."""

    role: str  # 'character' | 'sheet' (a character's sheet, common.pictures.sheets) | 'location'
    key: str  # speaker tag or loc id
    path: Path
    scale: float = 1.0


@dataclass(frozen=True)
class Placement:
    """Where a reference ended up: group (1-based reference image) and slot within it."""

    group: int
    slot: int
    size: int

    def phrase(self) -> str:
        """How the prompt points at it: "reference image 2" or "reference image 1, on the left"."""
        if self.size <= 1:
            return f"reference image {self.group}"
        return f"reference image {self.group}, {_POSITIONS[self.size][self.slot - 1]}"


def check_stitch_settings(count: int, factor: float) -> None:
    if not 1 <= int(count) <= MAX_STITCH_COUNT:
        raise ConfigError(f"IMAGE_STITCH_COUNT is {count}; use a whole number from 1 to {MAX_STITCH_COUNT}.")
    if not float(factor) > 0:
        raise ConfigError(f"CHARACTER_RESIZE_FACTOR is {factor}; use a number above 0 (1 keeps the pictures' size).")


def group_references(references: Sequence[Reference], count: int) -> tuple[tuple[Reference, ...], ...]:
    """Consecutive groups of at most `count` pictures, in the order given (characters, then the place)."""
    count = max(1, int(count))
    return tuple(tuple(references[i:i + count]) for i in range(0, len(references), count))


def placements(groups: Sequence[Sequence[Reference]]) -> dict[tuple[str, str], Placement]:
    """(role, key) -> where that picture sits, for the prompt's wording."""
    found: dict[tuple[str, str], Placement] = {}
    for number, group in enumerate(groups, start=1):
        for slot, ref in enumerate(group, start=1):
            found.setdefault((ref.role, ref.key), Placement(number, slot, len(group)))
    return found


def stitch(references: Sequence[Reference], out: Path) -> Path:
    """Scale each picture by its factor, set them side by side bottom-aligned, write `out` (PNG, atomically)."""
    if not references:
        raise ValueError("nothing to stitch")
    pictures: list[Image.Image] = []
    for ref in references:
        try:
            with Image.open(ref.path) as img:
                picture = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise InputError(f"{ref.path} cannot be read as a picture ({exc}); make it again (its step's --retake) or remove it.") from None
        if ref.scale != 1.0:
            size = (max(1, round(picture.width * ref.scale)), max(1, round(picture.height * ref.scale)))
            picture = picture.resize(size, Image.LANCZOS)
        pictures.append(picture)
    width, height = sum(p.width for p in pictures), max(p.height for p in pictures)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    x = 0
    for picture in pictures:
        canvas.paste(picture, (x, height - picture.height))
        x += picture.width
    if max(width, height) > MAX_SIDE:
        ratio = MAX_SIDE / max(width, height)
        canvas = canvas.resize((max(1, round(width * ratio)), max(1, round(height * ratio))), Image.LANCZOS)
    return save_png(canvas, out)

