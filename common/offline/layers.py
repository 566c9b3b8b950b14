"""The offline engine's layered keyframes: plates, posed characters and composites, drawn on the CPU.

They stand in for Qwen-Image and Qwen-Image-Edit (common.pictures.layers) and do for real what those
are asked to do, in the crudest way that still shows it: a plate is the place's card in the light of
its time of day (a chained plate is the place's previous plate with the new card laid over it, so
the place visibly carries on); a pose is the character's sheet panel, cut out, with what they do
written under it; a composite is the plate with every pose pasted where the scene puts that
character. A reviewer, or a test, can see every layer in the finished picture: each character keeps
their identity colour (common.offline.cards) wherever they are pasted.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFilter

from common.offline.cards import palette_from_text, render_card
from common.pictures.image_files import cover, save_png
from common.pictures.text_fit import draw_fitted, fit_text
from common.run.errors import InputError

VERSION = 1  # bump when the same request should draw a different layer
_INK = (246, 244, 238)
_SHADE = (12, 14, 22)
# Time of day -> (the colour its light tints a plate with, how far). "unspecified" leaves the card as it is.
TIME_LIGHT: dict[str, tuple[tuple[int, int, int], float]] = {
    "dawn": ((255, 176, 140), 0.22), "morning": ((255, 236, 190), 0.15), "noon": ((255, 255, 235), 0.10),
    "afternoon": ((255, 214, 150), 0.18), "day": ((235, 242, 255), 0.10), "dusk": ((214, 110, 80), 0.28),
    "evening": ((110, 90, 150), 0.32), "night": ((20, 28, 70), 0.45),
}


def _open(path: Path, what: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} ({what}) cannot be read as a picture ({exc}); make it again or remove it.") from None


def _pill(image: Image.Image, text: str, *, right: bool) -> None:
    """A small shaded label in a top corner (the place and time on a plate, the scene id on a composite)."""
    width, height = image.size
    short = min(width, height)
    pad = max(3, round(short * 0.02))
    fitted = fit_text(text, round(width * 0.45), round(short * 0.12), max_size=max(9, round(short * 0.06)),
                      min_size=8, bold=True)
    if not fitted.lines:
        return
    box_w, box_h = fitted.width + 2 * pad, fitted.height + 2 * pad
    x0 = width - box_w - 2 * pad if right else 2 * pad
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rounded_rectangle((x0, 2 * pad, x0 + box_w, 2 * pad + box_h), radius=pad, fill=(*_SHADE, 190))
    image.paste(Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB"))
    draw_fitted(ImageDraw.Draw(image), fitted, x0 + pad, 3 * pad, _INK)


def plate_card(place: str, time: str, description: str, out: str | os.PathLike[str], width: int, height: int, *,
               start: Path | None = None, denoise: float | None = None) -> Path:
    """A background plate: the place's colours and shapes, no people, tinted by the light of `time`.

    With `start` (the place's previous plate) the new card is laid over it at `denoise`, as an
    image model starting from that picture would keep its layout."""
    card = render_card(width=width, height=height, title="", body_lines=[description],
                       palette=palette_from_text(description), seed_text=f"plate:{place}\n{description}").image
    tint, amount = TIME_LIGHT.get(time, ((0, 0, 0), 0.0))
    if amount:
        card = Image.blend(card, Image.new("RGB", card.size, tint), amount)
    if start is not None:
        previous = cover(_open(start, "the previous plate"), (width, height))
        card = Image.blend(previous, card, max(0.0, min(1.0, 1.0 if denoise is None else float(denoise))))
    _pill(card, f"{place} · {time}", right=False)
    return save_png(card, out)


def pose_card(source: Path, words: Sequence[str], out: str | os.PathLike[str], width: int, height: int) -> Path:
    """One character posed: `source` (their sheet panel, or sheet, or picture) cut to the layer's frame,
    with what they do (`words`: pose, action) written on a band at the bottom."""
    layer = cover(_open(source, "the character's sheet"), (width, height))
    text = "; ".join(w for w in words if w.strip())
    if text:
        band = max(16, round(height * 0.16))
        fitted = fit_text(text, width - 8, band - 4, max_size=max(9, round(band * 0.42)), min_size=8)
        overlay = Image.new("RGBA", layer.size, (0, 0, 0, 0))
        ImageDraw.Draw(overlay).rectangle((0, height - band, width, height), fill=(*_SHADE, 200))
        layer = Image.alpha_composite(layer.convert("RGBA"), overlay).convert("RGB")
        draw_fitted(ImageDraw.Draw(layer), fitted, 4, height - band + (band - fitted.height) // 2, _INK, align="center",
                    box_width=width - 8)
    return save_png(layer, out)


def _cutout_mask(size: tuple[int, int]) -> Image.Image:
    """A rounded, softly edged mask: the pose layer as a cut-out rather than a rectangle."""
    width, height = size
    mask = Image.new("L", size, 0)
    radius = max(2, round(min(size) * 0.18))
    inset = max(1, round(min(size) * 0.02))
    ImageDraw.Draw(mask).rounded_rectangle((inset, inset, width - 1 - inset, height - 1 - inset), radius=radius, fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(0.5, inset / 2)))


def composite(base: Path, poses: Sequence[Path], layout: Sequence[tuple[float, float, float]],
              out: str | os.PathLike[str], width: int, height: int, title: str = "") -> Path:
    """`base` (the plate, or the composite so far) with each pose pasted at its place in `layout`:
    (centre x, feet y, height) as fractions of the picture, a shadow at the feet."""
    if len(layout) < len(poses):
        raise ValueError(f"{len(poses)} poses but {len(layout)} places for them")
    canvas = cover(_open(base, "the plate"), (width, height))
    shadows = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    pasted: list[tuple[Image.Image, tuple[int, int]]] = []
    for path, (cx, feet, tall) in zip(poses, layout):
        pose = _open(path, "a posed character")
        pose_h = max(8, round(tall * height))
        pose_w = max(4, round(pose_h * pose.width / pose.height))
        pose = pose.resize((pose_w, pose_h), Image.Resampling.LANCZOS)
        x, y = round(cx * width - pose_w / 2), round(feet * height - pose_h)
        ImageDraw.Draw(shadows).ellipse((x + pose_w * 0.05, y + pose_h - pose_h * 0.04, x + pose_w * 0.95,
                                         y + pose_h + pose_h * 0.04), fill=(*_SHADE, 110))
        pasted.append((pose, (x, y)))
    canvas = Image.alpha_composite(canvas.convert("RGBA"), shadows.filter(ImageFilter.GaussianBlur(2))).convert("RGB")
    for pose, at in pasted:
        canvas.paste(pose, at, _cutout_mask(pose.size))
    if title:
        _pill(canvas, title, right=True)
    return save_png(canvas, out)
