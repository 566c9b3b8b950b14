"""The name band (NAME_OVERLAY): a character's or place's name across the bottom of its picture.

On a contact sheet or in an edit, a row of similar faces is hard to tell apart; the seed system
drew each name on a dark translucent band (USE_CHARACTER_NAME_OVERLAY). The band is drawn on a
copy: scenes take the clean picture as their reference, so the model never copies the text.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from common.pictures.image_files import save_png
from common.pictures.text_fit import draw_fitted, fit_text

BAND_OPACITY = 0.70


def name_band(src: Path, out: Path, name: str, *, font_scale: float = 1.0, max_ratio: float = 0.30) -> Path:
    """Write `src` with `name` (upper case, up to three lines) on a band at the bottom to `out`."""
    text = " ".join(name.split()).upper()
    with Image.open(src) as img:
        picture = img.convert("RGBA")
    if not text:
        return save_png(picture.convert("RGB"), out)
    width, height = picture.size
    scale = max(0.1, float(font_scale))
    size = max(12, round(height * 0.04 * scale))
    pad = max(3, round(height * 0.012 * min(scale, 2.0)))
    limit = max(2 * pad + 8, round(height * max(0.05, min(1.0, float(max_ratio)))))
    fitted = fit_text(text, max(8, round(width * 0.9)), limit - 2 * pad, max_size=size,
                      min_size=max(8, round(size * 0.6)), bold=True, spacing=1.15)
    band_height = min(limit, fitted.height + 2 * pad)
    band = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(band)
    draw.rectangle((0, height - band_height, width, height), fill=(0, 0, 0, round(255 * BAND_OPACITY)))
    picture.alpha_composite(band)
    draw_fitted(ImageDraw.Draw(picture), fitted, 0, height - band_height + pad, (255, 255, 255, 255), align="center",
                box_width=width, stroke=max(1, round(fitted.size / 18)), stroke_fill=(0, 0, 0, 160))
    return save_png(picture.convert("RGB"), out)

