"""The video thumbnail and the Shorts covers: an image engine's picture with the title drawn on it.

Layouts (TITLE_LAYOUT) in a W x H frame, with a title band of height b at TITLE_POSITION:
- overlay: the picture fills the frame (scaled to cover it, centre-cropped); the title sits on
  a translucent dark band across the picture, its letters outlined.
- expand: the canvas is grown around the picture: by the title band (above it for top, below it
  for bottom, between its upper and lower halves for middle) and by side margins that keep the
  frame's shape, all in a solid colour taken from the picture's edges; the grown canvas is then
  scaled back to W x H. The whole picture stays visible, smaller, mounted like a poster.
- fit: the picture is scaled down by the same rule to leave the band free, and laid over a
  blurred, darkened copy of itself that fills the frame; the title sits on that backdrop.
The title is wrapped into balanced lines and shrunk until it fits its box, measured with the
font (outline included), so it is never clipped; only a title that does not fit even at the
smallest legible size loses its last words to an ellipsis.

File size: YouTube takes thumbnails under 2 MB (SPEC 8). The thumbnail is always
`output/thumbnail.png`, so later steps need not guess its name: an RGB PNG when that is under
MAX_THUMBNAIL_BYTES (nearly always), else a 256-colour PNG (a 1280x720 palette image stays
under 1 MB whatever the picture). The checkpoint records which.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw, ImageFilter

from common.state.atomic import atomic_write_bytes
from common.state.checkpoints import fingerprint
from common.engines.base import ImageEngine, ImageRequest
from common.run.errors import ConfigError, JobError
from common.media.fonts import font_source
from common.pictures.image_files import cover, request_size, save_png
from common.pictures.passes import parse_loras
from common.pictures.text_fit import TitleFit, fit_title
from common.video.encode import SHORTS_SIZE

THUMBNAIL_SIZE = (1280, 720)
MAX_THUMBNAIL_BYTES = 2_000_000  # "2 MB" read as the smaller, decimal megabytes
POSITIONS = ("top", "middle", "bottom")
LAYOUTS = ("overlay", "expand", "fit")
THUMBNAIL_START_IMAGES = ("10.latent.thumbnail.png", "10.latent.png")  # ours, then the seed's name
SHORTS_START_IMAGES = ("10.latent.shorts.png",)
COMPOSE_VERSION = 1
# What each Shorts cover asks the image model to frame, so covers differ beyond their seeds.
SHORTS_FRAMINGS = (
    "the whole scene", "a close view of the main character", "a wide view of the setting",
    "a low angle on the main character", "a telling detail of the story",
)
_INK = (248, 246, 240)
_OUTLINE = (8, 8, 12)

Box = tuple[int, int, int, int]


# ---------------------------------------------------------------- the title's text

@dataclass(frozen=True)
class TitleStyle:
    position: str = "middle"
    layout: str = "overlay"
    font_scale: float = 1.0
    enabled: bool = True  # USE_TITLE_TEXT: False leaves the picture as the engine made it

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ConfigError(f"TITLE_POSITION is {self.position!r}; use one of {', '.join(POSITIONS)}.")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"TITLE_LAYOUT is {self.layout!r}; use one of {', '.join(LAYOUTS)}.")
        if not 0.2 <= self.font_scale <= 5:
            raise ConfigError(f"TITLE_FONT_SCALE is {self.font_scale}; use a factor between 0.2 and 5 (1 = default size).")


# ---------------------------------------------------------------- composing

@dataclass
class Composition:
    """A finished frame and where its title went, so callers and tests can check nothing spilled."""

    image: Image.Image
    band: Box | None = None
    text_boxes: list[Box] = field(default_factory=list)
    fit: TitleFit | None = None


def _mat_colour(picture: Image.Image) -> tuple[int, int, int]:
    """The picture's edge colour, darkened: a mount that belongs to the picture and lets white text read."""
    small = picture.convert("RGB").resize((16, 16), Image.Resampling.BOX)
    edge = [small.getpixel((x, y)) for x in range(16) for y in range(16) if x in (0, 15) or y in (0, 15)]
    mean = [sum(p[i] for p in edge) / len(edge) for i in range(3)]
    return tuple(round(c * 0.35) for c in mean)  # type: ignore[return-value]


def _backdrop(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A blurred, darkened cover of the frame (blurred small and scaled up: same look, a fraction of the work)."""
    small = cover(picture, (max(1, size[0] // 8), max(1, size[1] // 8)))
    blurred = small.filter(ImageFilter.GaussianBlur(max(1, min(size) // 240))).resize(size, Image.Resampling.BILINEAR)
    return Image.blend(blurred, Image.new("RGB", size, (0, 0, 0)), 0.45)


def _shade(frame: Image.Image, box: Box, amount: float) -> None:
    """Darken one band of the frame in place: a translucent black band, blended only where it lies."""
    region = frame.crop(box)
    frame.paste(Image.blend(region, Image.new("RGB", region.size, (0, 0, 0)), amount), box[:2])


def _band_top(position: str, height: int, band: int, margin: int) -> int:
    if position == "top":
        return margin
    if position == "bottom":
        return height - margin - band
    return (height - band) // 2


def _mount(frame: Image.Image, picture: Image.Image, position: str, band: int) -> int:
    """Paste the picture scaled to leave `band` pixels of height free; returns the band's top."""
    width, height = frame.size
    # The frame's shape, scaled to leave the band free (one resample, straight from the picture).
    shown = cover(picture, (max(1, round(width * (height - band) / height)), height - band))
    x = (width - shown.width) // 2
    if position == "top":
        frame.paste(shown, (x, band))
        return 0
    if position == "bottom":
        frame.paste(shown, (x, 0))
        return height - band
    half = shown.height // 2
    frame.paste(shown.crop((0, 0, shown.width, half)), (x, 0))
    frame.paste(shown.crop((0, half, shown.width, shown.height)), (x, half + band))
    return half


def compose(picture: Image.Image, title: str, size: tuple[int, int], style: TitleStyle) -> Composition:
    """The frame of `size` with `title` laid out as `style` says (see the module docstring)."""
    width, height = size
    if not style.enabled or not title.strip():
        return Composition(cover(picture, size))
    short = min(width, height)
    pad = max(6, round(short * 0.03))
    margin_x, margin_y = round(width * 0.06), round(height * 0.06)
    min_size = max(12, round(short * 0.035))
    max_size = max(min_size, round(short * 0.12 * style.font_scale))
    share = 0.40 if style.layout == "overlay" else 0.30
    fit = fit_title(title, width - 2 * margin_x, round(height * share) - 2 * pad, max_size=max_size, min_size=min_size)
    band = fit.height + 2 * pad

    if style.layout == "overlay":
        frame = cover(picture, size)
        top = _band_top(style.position, height, band, margin_y)
        _shade(frame, (0, top, width, top + band), 0.6)
    elif style.layout == "expand":
        frame = Image.new("RGB", size, _mat_colour(picture))
        top = _mount(frame, picture.convert("RGB"), style.position, band)
    else:
        frame = _backdrop(picture, size)
        top = _mount(frame, picture.convert("RGB"), style.position, band)
        _shade(frame, (0, top, width, top + band), 0.35)

    draw = ImageDraw.Draw(frame)
    font = fit.font
    boxes: list[Box] = []
    y = top + pad + fit.stroke
    for line in fit.lines:
        draw.text((width // 2, y), line, font=font, fill=_INK, anchor="ma", stroke_width=fit.stroke, stroke_fill=_OUTLINE)
        box = draw.textbbox((width // 2, y), line, font=font, anchor="ma", stroke_width=fit.stroke)
        boxes.append(tuple(int(v) for v in box))  # type: ignore[arg-type]
        y += fit.line_height
    return Composition(frame, (0, top, width, top + band), boxes, fit)


# ---------------------------------------------------------------- saving

def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def encode_thumbnail(image: Image.Image, max_bytes: int = MAX_THUMBNAIL_BYTES) -> tuple[bytes, str]:
    """PNG bytes under `max_bytes`: full colour when they fit, else fewer colours (see the module docstring)."""
    data = _png(image.convert("RGB"))
    if len(data) < max_bytes:
        return data, "png-rgb"
    for colours in (256, 128, 64):
        # Fast octree with error diffusion: a second at most, where median cut takes several.
        quantized = image.convert("RGB").quantize(colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG)
        data = _png(quantized)
        if len(data) < max_bytes:
            return data, f"png-{colours}-colours"
    raise JobError(f"the thumbnail cannot be made smaller than {max_bytes} bytes even with 64 colours; "
                   "check the picture the image engine made.")


def save_thumbnail(image: Image.Image, out: Path, max_bytes: int = MAX_THUMBNAIL_BYTES) -> str:
    data, kind = encode_thumbnail(image, max_bytes)
    atomic_write_bytes(out, data)
    return kind


# ---------------------------------------------------------------- what to ask the image engine

def styled_prompt(prompt: str, art_style: str) -> str:
    """ART_STYLE in front of the prompt, as the seed's image scripts did."""
    style = art_style.strip().rstrip(".")
    if not style:
        return prompt.strip()
    label = style if style.lower().endswith("style") else f"{style} style"
    return f"{label}. {prompt.strip()}"


def cover_prompt(prompt: str, number: int) -> str:
    framing = SHORTS_FRAMINGS[(number - 1) % len(SHORTS_FRAMINGS)]
    return f"{prompt.strip()} Vertical 9:16 composition showing {framing}."


def chained_loras(settings: Any) -> tuple[tuple[str, float, float], ...]:
    """The enabled LORAS as (file, strength_model, strength_clip), all applied in one pass."""
    return tuple(lora.triple for lora in parse_loras(settings.LORAS)) if settings.USE_LORA else ()


def start_image(input_dir: Path, names: Sequence[str]) -> Path | None:
    return next((input_dir / n for n in names if (input_dir / n).is_file()), None)


@dataclass(frozen=True)
class PicturePlan:
    """One picture to make and title: the thumbnail or a Shorts cover."""

    key: str
    request: ImageRequest
    picture: Path  # the engine's image, kept so a new title or layout redraws without a new job
    final: Path
    size: tuple[int, int]
    random_seed: bool

    def identity(self) -> list[Any]:
        """Everything in the request that shapes the picture; a random seed is chosen, not an input."""
        r = self.request
        return [r.kind, r.prompt, r.negative_prompt, r.width, r.height, None if self.random_seed else r.seed,
                r.steps, r.denoise, r.input_image, [list(lora) for lora in r.loras]]


def plan_pictures(settings: Any, pipeline_dir: Path, prompt: str, title: str, covers: int) -> list[PicturePlan]:
    """The thumbnail, then `covers` Shorts covers, each its own seed and framing."""
    input_dir, output_dir = pipeline_dir / "input", pipeline_dir / "output"
    image_mode = settings.LATENT_MODE == "IMAGE"
    loras = chained_loras(settings)
    base_seed = int(settings.FIXED_SEED)

    def request(item: str, text: str, size: tuple[int, int], seed: int, names: Sequence[str]) -> ImageRequest:
        start = start_image(input_dir, names) if image_mode else None
        return ImageRequest(
            kind="thumbnail", item_id=item, prompt=styled_prompt(text, settings.ART_STYLE), width=size[0],
            height=size[1], seed=seed, steps=settings.SAMPLING_STEPS, negative_prompt=settings.NEGATIVE_PROMPT,
            denoise=settings.LATENT_DENOISING_STRENGTH if start else None, input_image=start, title=title, loras=loras,
        )

    pictures = output_dir / "thumbnail"
    plans = [PicturePlan(
        "thumbnail", request("thumbnail", prompt, (settings.IMAGE_WIDTH, settings.IMAGE_HEIGHT), base_seed,
                             THUMBNAIL_START_IMAGES),
        pictures / "thumbnail.picture.png", output_dir / "thumbnail.png", THUMBNAIL_SIZE, settings.USE_RANDOM_SEED,
    )]
    for number in range(1, covers + 1):
        plans.append(PicturePlan(
            f"cover.v{number}", request(f"shorts.v{number}", cover_prompt(prompt, number), request_size(SHORTS_SIZE),
                                        base_seed + number, SHORTS_START_IMAGES),
            pictures / f"cover.v{number}.picture.png", output_dir / "shorts" / f"cover.v{number}.png", SHORTS_SIZE,
            settings.USE_RANDOM_SEED,
        ))
    return plans


def make_picture(engine: ImageEngine, plan: PicturePlan) -> tuple[list[Path], dict[str, Any]]:
    """Ask the engine for the plan's picture (a fresh seed when seeds are random) and check it opens."""
    seed = random.SystemRandom().randrange(1, 2**31) if plan.random_seed else plan.request.seed
    plan.picture.parent.mkdir(parents=True, exist_ok=True)
    engine.image(replace(plan.request, seed=seed), plan.picture)
    try:
        with Image.open(plan.picture) as img:
            img.verify()
    except (OSError, SyntaxError) as exc:
        raise JobError(f"the image engine wrote {plan.picture.name} but it is not a readable picture ({exc}); run again.") from None
    return [plan.picture], {"seed": seed}


def compose_fingerprint(plan: PicturePlan, title: str, style: TitleStyle) -> str:
    return fingerprint(COMPOSE_VERSION, plan.key, list(plan.size), title, [style.position, style.layout,
                       style.font_scale, style.enabled], font_source(True), plan.picture)


def compose_plan(plan: PicturePlan, title: str, style: TitleStyle) -> tuple[list[Path], dict[str, Any]]:
    """Draw the title on the plan's picture and save the final file (the thumbnail under 2 MB)."""
    with Image.open(plan.picture) as img:
        composition = compose(img.convert("RGB"), title, plan.size, style)
    plan.final.parent.mkdir(parents=True, exist_ok=True)
    if plan.key == "thumbnail":
        kind = save_thumbnail(composition.image, plan.final)
    else:
        save_png(composition.image, plan.final)
        kind = "png-rgb"
    data: dict[str, Any] = {"format": kind, "bytes": plan.final.stat().st_size}
    if composition.fit is not None:
        data.update(font_size=composition.fit.size, lines=list(composition.fit.lines), truncated=composition.fit.truncated,
                    text_boxes=[list(b) for b in composition.text_boxes])
    return [plan.final], data


def stale_covers(shorts_dir: Path, count: int) -> list[Path]:
    """Covers left from a run with more SHORTS_VARIATIONS: later steps must not turn them into Shorts."""
    found = []
    for path in shorts_dir.glob("cover.v*.png"):
        number = path.stem.removeprefix("cover.v")
        if number.isdigit() and int(number) > count:
            found.append(path)
    return sorted(found)
