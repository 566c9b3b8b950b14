"""One legible font for every picture we draw (storyboard cards, thumbnails, name overlays).

The first choice is Noto Sans from the `fontpkg-noto-sans` wheel: it installs with pip on
every platform, covers Latin, Greek, Cyrillic and Vietnamese, and being the same file
everywhere keeps our drawn PNGs byte-identical from one machine to the next. Without it we
take a well-known system font, and as a last resort Pillow's own scalable default font, so a
picture is always drawn, only less pretty.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from PIL import ImageFont

# Regular/bold pairs of system fonts with wide Unicode coverage, best first.
_SYSTEM_FONTS: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf", "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf"),
    ("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
     "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
    ("/Library/Fonts/Arial Unicode.ttf", "/Library/Fonts/Arial Unicode.ttf"),
    ("/System/Library/Fonts/Supplemental/Arial.ttf", "/System/Library/Fonts/Supplemental/Arial Bold.ttf"),
)

FontType = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.lru_cache(maxsize=1)
def _packaged_font() -> Path | None:
    """Noto Sans (variable weight) from the fontpkg-noto-sans wheel, when installed."""
    try:
        import fontpkg_noto_sans  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(fontpkg_noto_sans.ROOT) / "files" / "NotoSans[wdth,wght].ttf"
    return path if path.is_file() else None


def _windows_fonts() -> tuple[tuple[str, str], ...]:
    root = Path(os.environ.get("WINDIR", r"C:\Windows")) / "Fonts"
    return ((str(root / "arial.ttf"), str(root / "arialbd.ttf")), (str(root / "segoeui.ttf"), str(root / "segoeuib.ttf")))


def font_source(bold: bool = False) -> str:
    """Name the font file `load_font` will use, or "pillow-default": for logs and bug reports."""
    packaged = _packaged_font()
    if packaged is not None:
        return str(packaged)
    for regular, heavy in _SYSTEM_FONTS + (_windows_fonts() if os.name == "nt" else ()):
        candidate = heavy if bold else regular
        if Path(candidate).is_file():
            return candidate
    return "pillow-default"


@functools.lru_cache(maxsize=128)
def load_font(size: int, bold: bool = False) -> FontType:
    """A font of `size` pixels (em height), bold or regular, always returning something usable.

    The object is cached and shared: do not change its variation or size; ask for another.
    """
    size = max(1, int(round(size)))
    source = font_source(bold)
    if source == "pillow-default":
        # Pillow >= 10.1 scales its bundled font; older ones ignore the size but still draw.
        return ImageFont.load_default(size)
    # BASIC layout: Raqm's shaped positions mixed with hinted glyphs space small text
    # unevenly ("mediu m"); BASIC is even, and the same whether or not libraqm is installed.
    # It does not shape complex scripts (Arabic, Devanagari), which our stories do not use.
    font = ImageFont.truetype(source, size, layout_engine=ImageFont.Layout.BASIC)
    if source == str(_packaged_font()):
        # A variable font: pick the named instance rather than synthesising bold.
        try:
            font.set_variation_by_name("Bold" if bold else "Regular")
        except (OSError, ValueError):
            pass  # a FreeType built without variation support draws the default weight
    return font
