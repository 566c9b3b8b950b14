"""Storyboard cards: the offline engine's pictures, drawn from the scene text with no model.

A card must let a reviewer follow the story (which scene, who is there, what they do, where),
look like part of one storyboard (colours taken from the descriptions, each character one
colour everywhere), and never surprise the pipeline: same inputs give the same bytes, every
word stays inside the frame, and the file appears whole or not at all.
"""
from __future__ import annotations

import colorsys
import hashlib
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFilter

from common.run.errors import InputError
from common.pictures.image_files import save_png
from common.pictures.text_fit import FittedText, draw_fitted, fit_text

RGB = tuple[int, int, int]
ColourLike = str | Sequence[int]
Box = tuple[int, int, int, int]

_HEX = re.compile(r"#([0-9a-fA-F]{6})(?![0-9a-fA-F])")
_WORD = re.compile(r"[a-z]+")
_INK: RGB = (246, 244, 238)
_SHADE: RGB = (12, 14, 22)
_PANEL_ALPHA = 185
# Ken Burns moves (common.offline.kenburns, zoom 1.10) show at least the middle 1/1.10 of a
# card, losing up to 9.1% of one side in a pan: text kept this far from every edge stays in view.
MOTION_SAFE_MARGIN = 0.095
# CSS colour names that in story descriptions usually name a thing (a linen curtain, snow,
# moccasins, a plum), not its colour.
_NOT_COLOURS = frozenset({"linen", "snow", "moccasin", "tomato", "salmon", "chocolate", "peru", "wheat",
                          "plum", "orchid", "bisque", "lime", "thistle"})


@dataclass(frozen=True)
class Figure:
    """A character's silhouette on a card: its caption and its identity colour."""

    label: str
    colour: RGB


@dataclass
class CardRender:
    """A drawn card and where its text went, so callers and tests can check nothing spilled."""

    image: Image.Image
    text_boxes: list[Box] = field(default_factory=list)
    panels: list[Box] = field(default_factory=list)
    truncated: bool = False


# ---------------------------------------------------------------- colours

def _hash_bytes(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def hex_colours(text: str) -> list[RGB]:
    """`#rrggbb` colours in order of first appearance, without repeats."""
    found: list[RGB] = []
    for match in _HEX.finditer(text):
        value = match.group(1)
        colour = (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
        if colour not in found:
            found.append(colour)
    return found


def named_colours(text: str) -> list[RGB]:
    """CSS colour names in the text ("dark_gray", "light yellow", "navy"), in order, without repeats."""
    words = _WORD.findall(text.lower())
    found: list[RGB] = []
    i = 0
    while i < len(words):
        pair = words[i] + words[i + 1] if i + 1 < len(words) else ""
        if pair in ImageColor.colormap:
            name, i = pair, i + 2
        elif words[i] in ImageColor.colormap and words[i] not in _NOT_COLOURS:
            name, i = words[i], i + 1
        else:
            i += 1
            continue
        colour = ImageColor.getrgb(name)[:3]
        if colour not in found:
            found.append(colour)  # type: ignore[arg-type]
    return found


def hashed_palette(text: str, count: int = 5) -> list[RGB]:
    """A harmonious palette derived only from the text, so a card's colours are stable per subject."""
    digest = _hash_bytes(text)
    hue = digest[0] / 255.0
    saturation = 0.45 + digest[1] / 255.0 * 0.25
    value = 0.55 + digest[2] / 255.0 * 0.25
    offsets = (0.0, 0.08, -0.08, 0.5, 0.42, 0.58, 0.25, -0.25)
    palette = []
    for k in range(count):
        h = (hue + offsets[k % len(offsets)]) % 1.0
        v = value * (1.0 - 0.12 * (k // len(offsets)))
        r, g, b = colorsys.hsv_to_rgb(h, saturation, v)
        palette.append((round(r * 255), round(g * 255), round(b * 255)))
    return palette


def palette_from_text(text: str, minimum: int = 3) -> list[RGB]:
    """Colours for a card: the text's hex colours, else its colour words, padded from its hash."""
    palette = hex_colours(text) or named_colours(text)
    if len(palette) < minimum:
        palette += hashed_palette(text, minimum)[: minimum - len(palette)]
    return palette


def identity_colour(tag: str) -> RGB:
    """One bright, distinct colour per character tag, the same on every card it appears on."""
    digest = _hash_bytes("character:" + tag)
    hue = int.from_bytes(digest[:2], "big") / 65535.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.55 + digest[2] / 255.0 * 0.2, 0.78 + digest[3] / 255.0 * 0.17)
    return (round(r * 255), round(g * 255), round(b * 255))


def _to_rgb(colour: ColourLike) -> RGB:
    if isinstance(colour, str):
        try:
            return ImageColor.getrgb(colour)[:3]  # type: ignore[return-value]
        except ValueError as exc:
            raise InputError(f"{colour!r} is not a colour; give #rrggbb or a CSS colour name.") from exc
    r, g, b = (int(c) for c in list(colour)[:3])
    return (max(0, min(255, r)), max(0, min(255, g)), max(0, min(255, b)))


def _mix(a: RGB, b: RGB, amount: float) -> RGB:
    return tuple(round(x + (y - x) * amount) for x, y in zip(a, b))  # type: ignore[return-value]


# ---------------------------------------------------------------- text

# ---------------------------------------------------------------- pictures

def _background(width: int, height: int, palette: Sequence[RGB], rng: random.Random) -> Image.Image:
    """A soft diagonal gradient between the first two colours, darkened so light text reads on it."""
    top = np.array(_mix(palette[0], _SHADE, 0.30), dtype=np.float32)
    bottom = np.array(_mix(palette[1 % len(palette)], _SHADE, 0.55), dtype=np.float32)
    angle = rng.uniform(-0.6, 0.6)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys /= max(1, height - 1)
    xs /= max(1, width - 1)
    t = np.clip(ys * np.cos(angle) + (xs - 0.5) * np.sin(angle), 0.0, 1.0)
    t = t * t * (3.0 - 2.0 * t)  # smoothstep keeps the ends calm
    pixels = top[None, None, :] * (1.0 - t[..., None]) + bottom[None, None, :] * t[..., None]
    vignette = 1.0 - 0.35 * (((xs - 0.5) * 2.0) ** 2 + ((ys - 0.5) * 2.0) ** 2) / 2.0
    pixels *= vignette[..., None]
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB").convert("RGBA")


def _decor(size: tuple[int, int], palette: Sequence[RGB], rng: random.Random) -> Image.Image:
    """Blurred translucent shapes in the palette's colours: mood without pretending to be a picture."""
    width, height = size
    short = min(width, height)
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    colours = list(palette[2:]) + list(palette[:2])
    count = max(6, min(14, len(colours) + 4))
    for k in range(count):
        colour = colours[k % len(colours)]
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx = rng.uniform(0.08, 0.28) * short
        ry = rx * rng.uniform(0.5, 1.4)
        alpha = rng.randint(55, 110)
        box = (round(cx - rx), round(cy - ry), round(cx + rx), round(cy + ry))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=(*colour, alpha))
        else:
            draw.rounded_rectangle(box, radius=round(min(rx, ry) * 0.35), fill=(*colour, alpha))
    return layer.filter(ImageFilter.GaussianBlur(radius=max(1.0, short * 0.012)))


def _draw_figures(image: Image.Image, figures: Sequence[Figure], zone: Box, render: CardRender) -> None:
    """Silhouettes standing side by side across the zone, each captioned with its name."""
    left, top, right, bottom = zone
    count = len(figures)
    if count == 0 or right - left < 8 or bottom - top < 24:
        return
    slot = (right - left) / count
    caption_size = max(10, round(min(slot * 0.11, (bottom - top) * 0.07)))
    caption_height = round(caption_size * 2.6)
    body_bottom = bottom - caption_height
    radius = max(3, round(min((body_bottom - top) * 0.17, slot * 0.2)))
    if body_bottom - top < radius * 3:
        return  # too small a card for silhouettes: the text alone says who is there
    stroke = max(1, radius // 12)
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    captions: list[tuple[FittedText, int, int]] = []
    for index, figure in enumerate(figures):
        cx = left + slot * (index + 0.5)
        outline = (*_mix(figure.colour, _SHADE, 0.55), 255)
        head_cy = top + radius * 1.15
        draw.ellipse((round(cx - radius * 2.0), round(body_bottom - radius * 0.25), round(cx + radius * 2.0),
                      round(body_bottom + radius * 0.25)), fill=(*_SHADE, 120))
        draw.rounded_rectangle((round(cx - radius * 1.35), round(head_cy + radius * 1.25),
                                round(cx + radius * 1.35), round(body_bottom)),
                               radius=round(radius * 0.9), fill=(*figure.colour, 235), outline=outline, width=stroke)
        draw.ellipse((round(cx - radius), round(head_cy - radius), round(cx + radius), round(head_cy + radius)),
                     fill=(*figure.colour, 245), outline=outline, width=stroke)
        caption = fit_text(figure.label, max(8, round(slot * 0.92)) - 2, caption_height - 4, max_size=caption_size,
                           min_size=max(8, caption_size // 2), bold=True, spacing=1.15)
        render.truncated |= caption.truncated
        if caption.lines:
            pad = max(2, caption.size // 4)
            x0 = round(cx - caption.width / 2) - pad
            y0 = body_bottom + max(2, caption_height // 8)
            draw.rounded_rectangle((x0, y0, x0 + caption.width + 2 * pad, y0 + caption.height + 2 * pad),
                                   radius=pad * 2, fill=(*_SHADE, 200))
            captions.append((caption, x0 + pad, y0 + pad))
    image.alpha_composite(layer)
    text_draw = ImageDraw.Draw(image)
    for caption, x, y in captions:
        render.text_boxes += draw_fitted(text_draw, caption, x, y, _INK, align="center", box_width=caption.width)


def render_card(*, width: int, height: int, title: str, subtitle: str | None = None,
                body_lines: Iterable[str] = (), palette: Sequence[ColourLike] | None = None,
                seed_text: str = "", figures: Sequence[Figure] = (), headline: bool = False,
                body_min_size: int | None = None, safe_margin: float = MOTION_SAFE_MARGIN) -> CardRender:
    """Draw a card in memory and report where its text landed.

    `title` is the card's id label (a scene id, a character tag) shown top-left, or with
    `headline` a large centred title (thumbnails). `body_lines` are paragraphs, wrapped and
    shrunk to fit a panel at the bottom that grows only as tall as they need; below
    `body_min_size` pixels (default: 2% of the short side) they are cut with an ellipsis.
    Nothing that matters is drawn within `safe_margin` (a fraction of each side) of the edge.
    """
    if width < 64 or height < 64:
        raise InputError(f"A card of {width}x{height} pixels is too small to draw; use at least 64x64.")
    body = [" ".join(str(line).split()) for line in body_lines]
    body = [line for line in body if line]
    seed = seed_text or "\n".join([title, subtitle or "", *body])
    rng = random.Random(int.from_bytes(_hash_bytes(seed)[:8], "big"))
    colours = [_to_rgb(c) for c in palette] if palette else palette_from_text(seed)
    if len(colours) < 2:
        colours += hashed_palette(seed, 2 - len(colours))

    image = _background(width, height, colours, rng)
    image.alpha_composite(_decor((width, height), colours, rng))
    render = CardRender(image=image)

    short = min(width, height)
    mx = max(6, round(width * safe_margin))
    my = max(6, round(height * safe_margin))
    pad = max(4, round(short * 0.027))
    gap = max(6, round(short * 0.045))
    inner_w = width - 2 * mx - 2 * pad
    portrait = height > width

    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    shapes = ImageDraw.Draw(overlay)
    pending: list[tuple[FittedText, int, int, str, int]] = []

    def place(fitted: FittedText, panel: Box, align: str = "left", box_width: int = 0) -> None:
        """A shaded panel, its text to be drawn `pad` inside it once every panel is down."""
        shapes.rounded_rectangle(panel, radius=pad, fill=(*_SHADE, _PANEL_ALPHA))
        render.panels.append(panel)
        pending.append((fitted, panel[0] + pad, panel[1] + pad, align, box_width))
        render.truncated |= fitted.truncated

    # Title: a label pill top-left, or a big centred headline; none when the caller draws its own.
    y = my
    if not title.strip():
        pass
    elif headline:
        fitted = fit_text(title, inner_w, round(height * 0.42), max_size=round(short * 0.13),
                          min_size=max(10, round(short * 0.04)), bold=True, spacing=1.12)
        block_h = fitted.height + 2 * pad
        y0 = round(height * 0.30 - block_h / 2) if body else round((height - block_h) / 2)
        y0 = max(my, y0)
        place(fitted, (mx, y0, width - mx, y0 + block_h), "center", inner_w)
        y = y0 + block_h + pad
    else:
        fitted = fit_text(title, inner_w, round(short * 0.2), max_size=round(short * 0.075),
                          min_size=max(9, round(short * 0.03)), bold=True, spacing=1.15)
        place(fitted, (mx, y, mx + fitted.width + 2 * pad, y + fitted.height + 2 * pad))
        y += fitted.height + 2 * pad + max(3, pad // 2)

    if subtitle:
        fitted = fit_text(subtitle, inner_w, round(short * 0.14), max_size=round(short * 0.045),
                          min_size=max(9, round(short * 0.022)), spacing=1.2)
        x0 = mx + round((inner_w - fitted.width) / 2) if headline else mx
        place(fitted, (x0, y, x0 + fitted.width + 2 * pad, y + fitted.height + 2 * pad))
        y += fitted.height + 2 * pad + max(3, pad // 2)
    header_bottom = y

    # Body: a panel anchored at the bottom, as tall as the text needs up to its share of the card.
    body_top_limit = (0.56 if portrait else 0.62) if figures else (0.36 if portrait else 0.42)
    max_body_h = height - my - max(round(height * body_top_limit), header_bottom + gap)
    body_panel_top = height - my
    if body and max_body_h > 2 * pad + 8:
        fitted = fit_text(body, inner_w, max_body_h - 2 * pad, max_size=round(short * 0.048),
                          min_size=body_min_size or max(10, round(short * 0.02)))
        if fitted.lines:
            body_panel_top = height - my - fitted.height - 2 * pad
            place(fitted, (mx, body_panel_top, width - mx, height - my))
        render.truncated |= fitted.truncated  # also when not even one line fitted

    image.alpha_composite(overlay)
    if figures:
        zone_top = header_bottom + gap // 2
        zone_bottom = min(body_panel_top - gap // 2, round(height * (0.56 if portrait else 0.62)))
        if body_panel_top >= height - my:
            zone_bottom = height - my
        _draw_figures(image, figures, (mx, zone_top, width - mx, zone_bottom), render)

    draw = ImageDraw.Draw(image)
    for fitted, x, y_text, align, box_w in pending:
        render.text_boxes += draw_fitted(draw, fitted, x, y_text, _INK, align=align, box_width=box_w)
    render.image = image.convert("RGB")
    return render


def draw_card(out_png: str | os.PathLike[str], **layout: Any) -> Path:
    """Draw a storyboard card and write it to `out_png` (`layout`: the keywords of `render_card`)."""
    return save_png(render_card(**layout).image, out_png)


# ---------------------------------------------------------------- the cards the steps ask for

_ROLE_WORDS = frozenset({"male", "female", "man", "woman", "boy", "girl", "m", "f"})


def display_name(tag: str) -> str:
    """"male_doctor_watson" -> "Doctor Watson": the tag as a reader would say it."""
    words = [w for w in re.split(r"[_\s]+", tag.strip("() ")) if w]
    if len(words) > 1 and words[0].lower() in _ROLE_WORDS:
        words = words[1:]
    return " ".join(w[:1].upper() + w[1:] for w in words) or tag


def character_card(tag: str, description: str, out: str | os.PathLike[str], width: int = 633,
                   height: int = 950) -> Path:
    """A character's card: its tag, name, silhouette in its identity colour, and its description."""
    return draw_card(out, width=width, height=height, title=tag, subtitle=display_name(tag),
                     body_lines=[description], palette=palette_from_text(description),
                     seed_text=f"character:{tag}\n{description}",
                     figures=[Figure("", identity_colour(tag))])  # the subtitle already names it


def sheet_panel_card(tag: str, label: str, description: str, out: str | os.PathLike[str], width: int = 633,
                     height: int = 950) -> Path:
    """One panel of a character sheet: the panel's label (view or expression) large, the character's
    silhouette in its identity colour, and its description. Every panel of a character shares the colour."""
    return draw_card(out, width=width, height=height, title=label, subtitle=display_name(tag),
                     body_lines=[description], palette=palette_from_text(description),
                     seed_text=f"character:{tag}\n{description}", figures=[Figure("", identity_colour(tag))])


def location_card(loc_id: str, description: str, out: str | os.PathLike[str], width: int = 1280,
                  height: int = 720) -> Path:
    """A location's card: its id and description over the colours the description names."""
    return draw_card(out, width=width, height=height, title=loc_id, body_lines=[description],
                     palette=palette_from_text(description), seed_text=f"location:{loc_id}\n{description}")


def scene_card(scene_id: str, location_text: str, characters: Sequence[tuple[str, str]],
               out: str | os.PathLike[str], width: int = 1280, height: int = 720,
               palette: Sequence[ColourLike] | None = None) -> Path:
    """A scene's card: who is there (silhouettes) and what they do, then where it happens.

    The location's colours make scenes in one place look alike; actions come before the
    setting so that, if the text must be cut, it is the setting's tail that goes.
    """
    body = [f"{display_name(tag)}: {action}" if action else display_name(tag) for tag, action in characters]
    if location_text.strip():
        body.append(f"Setting: {location_text}")
    return draw_card(out, width=width, height=height, title=scene_id, body_lines=body,
                     palette=palette or palette_from_text(location_text),
                     seed_text=f"scene:{scene_id}\n{location_text}",
                     figures=[Figure(display_name(tag), identity_colour(tag)) for tag, _ in characters])


def thumbnail_card(title: str, prompt_text: str, out: str | os.PathLike[str], width: int = 1280,
                   height: int = 720) -> Path:
    """A preview thumbnail: the video title large, the start of the thumbnail prompt beneath it.

    Thumbnails are seen small, so the prompt keeps a readable size and is cut short instead.
    """
    return draw_card(out, width=width, height=height, title=title, body_lines=[prompt_text] if prompt_text else (),
                     palette=palette_from_text(prompt_text + "\n" + title), seed_text=f"thumbnail:{title}\n{prompt_text}",
                     headline=True, body_min_size=max(12, round(min(width, height) * 0.032)),
                     safe_margin=0.045)
