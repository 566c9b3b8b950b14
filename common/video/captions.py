"""The captions burned into a Short: the font libass draws them with, and the ASS script it reads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.formats.srt import Cue
from common.media.ffmpeg import filter_value

# Big white bold text with a black outline, bottom-centred above the Shorts overlay (its title, channel and
# buttons cover the bottom ~20%). Pixel sizes for a frame STYLE_WIDTH wide (a Short); other widths scale them.
STYLE_WIDTH = 1080
FONT_SIZE, OUTLINE, SHADOW, MARGIN_SIDE, MARGIN_BOTTOM = 72, 6, 2, 90, 430


@dataclass(frozen=True)
class CaptionFont:
    """The font libass draws captions with: a family name, and the folder holding its file."""

    family: str
    directory: Path | None  # None: fontconfig's choice for `family`
    file: str  # the font file, or "fontconfig" (for logs and fingerprints)


def caption_font() -> CaptionFont:
    """The pipeline's font (common.media.fonts) as libass needs it: family name + `fontsdir`.

    libass looks fonts up by family name; the ffmpeg wheel's fontconfig may find no fonts at
    all on a bare machine, so the folder of our font file is handed over as `fontsdir` and
    libass loads it from there. Without a font file, fontconfig's sans-serif is asked for.
    """
    from PIL import ImageFont

    from common.media.fonts import font_source

    source = font_source(bold=True)
    if source == "pillow-default" or not Path(source).is_file():
        return CaptionFont("Sans", None, "fontconfig")
    try:
        family = ImageFont.truetype(source, 20).getname()[0] or "Sans"
    except OSError:
        return CaptionFont("Sans", None, "fontconfig")
    return CaptionFont(family, Path(source).parent, source)


def _ass_time(seconds: float) -> str:
    centis = max(0, int(round(seconds * 100)))
    hours, centis = divmod(centis, 360000)
    minutes, centis = divmod(centis, 6000)
    secs, centis = divmod(centis, 100)
    return f"{hours}:{minutes:02d}:{secs:02d}.{centis:02d}"


def _ass_text(text: str) -> str:
    """Cue text as one ASS event: rows joined (libass re-wraps to the width), markup made literal."""
    flat = " ".join(part.strip() for part in text.replace("\r", "").split("\n") if part.strip())
    # `{...}` would be an override block and `\N`, `\n`, `\h` line breaks/spaces: keep them as text.
    flat = flat.replace("{", "(").replace("}", ")")
    return flat.replace("\\", "\\\u2060")


def format_ass(cues: Sequence[Cue], size: tuple[int, int], font: CaptionFont) -> str:
    """An ASS script drawing `cues` (times relative to the video's start) in `size` pixels."""
    width, height = size

    def px(value: int) -> int:
        return round(value * (width / STYLE_WIDTH))

    head = [
        "[Script Info]", "ScriptType: v4.00+", f"PlayResX: {width}", f"PlayResY: {height}",
        "WrapStyle: 0", "ScaledBorderAndShadow: yes", "YCbCr Matrix: TV.709", "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
        "MarginR, MarginV, Encoding",
        f"Style: Caption,{font.family.replace(',', ' ')},{px(FONT_SIZE)},&H00FFFFFF,&H000000FF,&H00000000,&H99000000,"
        f"-1,0,0,0,100,100,0,0,1,{px(OUTLINE)},{px(SHADOW)},2,{px(MARGIN_SIDE)},{px(MARGIN_SIDE)},"
        f"{px(MARGIN_BOTTOM)},1",
        "", "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    events = [f"Dialogue: 0,{_ass_time(c.start)},{_ass_time(c.end)},Caption,,0,0,0,,{_ass_text(c.text)}"
              for c in cues if c.text.strip() and c.end > c.start]
    return "\n".join(head + events) + "\n"


def ass_filter(ass_file: Path, font: CaptionFont) -> str:
    """The `ass` filter drawing `ass_file`, with the font's folder when it has one."""
    options = f"ass=filename={filter_value(ass_file)}"
    if font.directory is not None:
        options += f":fontsdir={filter_value(font.directory)}"
    return options
