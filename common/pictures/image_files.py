"""Pictures on disk: cropped to a frame and written as PNG atomically, the same bytes for the same picture."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps

from common.state.atomic import atomic_path


def cover(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The picture scaled to fill `size`, centre-cropped: the frame never shows a border."""
    if picture.size == tuple(size):
        return picture.convert("RGB").copy()
    return ImageOps.fit(picture.convert("RGB"), size, method=Image.Resampling.LANCZOS)


def request_size(size: tuple[int, int], multiple: int = 16) -> tuple[int, int]:
    """Image models want sides divisible by 16: round up, then crop the few extra pixels."""
    return tuple(-(-side // multiple) * multiple for side in size)  # type: ignore[return-value]


def save_png(image: Image.Image, out: str | os.PathLike[str]) -> Path:
    """Write a PNG atomically with no metadata, so identical pictures give identical bytes."""
    out = Path(out)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG", compress_level=6)
    return out


def fit_picture(path: Path, size: tuple[int, int]) -> None:
    """Crop (centred) and scale a picture file to exactly `size`: models round sizes, user workflows ignore them."""
    with Image.open(path) as img:
        if img.size == size:
            return
        fitted = cover(img, size)
    save_png(fitted, path)
