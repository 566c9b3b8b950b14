"""The offline preview of a speaking shot: the speaker's card with a mouth that opens with the line.

No model can be run offline, but whether a speaking shot sits on its words can still be seen:
the card of the character who speaks, and under it a mouth whose opening follows the loudness
envelope of the very audio the model would get (the span cut from story.wav). Closed before the
line starts and after it ends, so a misplaced clip shows as a mouth moving over silence.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image, ImageDraw

from common.offline.cards import character_card

# Where the mouth is drawn, as fractions of the frame: a lip-coloured box with a dark opening.
MOUTH_BOX = (0.40, 0.80, 0.60, 0.96)
MOUTH_DARK = (8, 8, 8)
LIPS = (214, 120, 120)


def mouth_box(width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = MOUTH_BOX
    return round(x0 * width), round(y0 * height), round(x1 * width), round(y1 * height)


def _frame(card: Image.Image, level: float) -> Image.Image:
    img = card.copy()
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = mouth_box(*img.size)
    draw.rectangle((x0, y0, x1, y1), fill=LIPS)
    middle = (y0 + y1) / 2
    half = max(0.0, min(1.0, level)) * (y1 - y0 - 4) / 2
    if half >= 0.5:
        draw.ellipse((x0 + 3, middle - half, x1 - 3, middle + half), fill=MOUTH_DARK)
    return img


def talking_card(tag: str, description: str, levels: Sequence[float], out_mp4: Path, *, width: int, height: int,
                 fps: float, lead: int, frames: int) -> Path:
    """`frames` frames: `lead` with the mouth closed, then one per level, then closed to the end."""
    import av

    from common.video import clips

    card_png = out_mp4.with_name(f".{out_mp4.stem}.card.png")
    character_card(tag, description, card_png, width=width, height=height)
    card = Image.open(card_png).convert("RGB")
    card_png.unlink(missing_ok=True)

    def stream() -> Iterator[bytes]:
        for k in range(frames):
            i = k - lead
            level = levels[i] if 0 <= i < len(levels) else 0.0
            rgb = _frame(card, level)
            yield av.VideoFrame.from_image(rgb).reformat(format="yuv420p").to_ndarray().tobytes()

    clips.encode(stream(), out_mp4, width=width, height=height, fps=fps)
    return out_mp4
