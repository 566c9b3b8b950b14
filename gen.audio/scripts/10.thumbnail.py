"""gen.audio step 10: the thumbnail (1280x720, under 2 MB) and the Shorts covers (1080x1920), titled.

The image engine paints the picture from input/10.thumbnail.txt (with ART_STYLE, the seed
settings, LoRAs chained in one pass, and in LATENT_MODE=IMAGE the start image
input/10.latent.thumbnail.png); then the title from input/10.title.txt is drawn on it as
TITLE_POSITION / TITLE_LAYOUT / TITLE_FONT_SCALE say (layouts: common/pictures/thumbnail.py). Each
picture and each titled file is its own checkpoint: a new title or layout redraws the text
without asking the engine again.
"""
from __future__ import annotations

from common.state.checkpoints import fingerprint
from common.engines.choice import engines_from_env
from common.engines.registry import get_engine
from common.run.errors import InputError
from common.publish.metadata import read_title, title_problem
from common.config.paths import require_file
from common.run.runner import Script, ScriptContext
from common.pictures.thumbnail import (
    THUMBNAIL_START_IMAGES, TitleStyle, compose_fingerprint, compose_plan, make_picture, plan_pictures, stale_covers,
)

script = Script(__file__, "make output/thumbnail.png and the Shorts covers, with the title drawn on them")
script.add_argument("--variations", type=int, setting="SHORTS_VARIATIONS", help="number of Shorts covers (default 5)")


def main(ctx: ScriptContext) -> None:
    s = ctx.settings
    hint = "run 9.media.py first, it writes it."
    title_path = require_file(ctx.input_dir / "10.title.txt", "the video title", hint)
    title = read_title(title_path) or ""
    if problem := title_problem(title):
        raise InputError(f"{title_path}: the title cannot be used ({problem}); fix the file or run 9.media.py --force.")
    prompt = " ".join(require_file(ctx.input_dir / "10.thumbnail.txt", "the thumbnail prompt", hint)
                      .read_text(encoding="utf-8-sig").split())
    if s.SHORTS_VARIATIONS < 0:
        raise InputError(f"SHORTS_VARIATIONS is {s.SHORTS_VARIATIONS}; use 0 or more.")
    style = TitleStyle(s.TITLE_POSITION, s.TITLE_LAYOUT, s.TITLE_FONT_SCALE, s.USE_TITLE_TEXT)
    plans = plan_pictures(s, ctx.pipeline_dir, prompt, title, s.SHORTS_VARIATIONS)
    if s.LATENT_MODE == "IMAGE" and plans[0].request.input_image is None:
        ctx.say(f"LATENT_MODE is IMAGE but input/ has no {' or '.join(THUMBNAIL_START_IMAGES)}: "
                "the thumbnail starts from an empty latent")
    if plans[0].request.loras and s.LORA_MODE == "serial":
        ctx.say("LORA_MODE serial: the thumbnail applies its LoRAs chained, in one pass")
    ctx.say(engines_from_env(s).reason)
    engine = get_engine("image", s, ctx.pipeline_dir)
    ident = engine.identity()
    ctx.say(f"title {title!r}: {style.layout} at the {style.position}; {len(plans) - 1} Shorts covers")

    store = ctx.checkpoints()
    pictures = ctx.each(plans, label="pictures", key=lambda p: p.key,
                        fingerprint=lambda p: fingerprint(ident, p.identity()),
                        work=lambda p: make_picture(engine, p), preview=engine.preview)
    preview = any(entry.preview for entry in pictures.values())
    titled = ctx.each(plans, label="titles", key=lambda p: f"{p.key}.titled",
                      fingerprint=lambda p: compose_fingerprint(p, title, style),
                      work=lambda p: compose_plan(p, title, style), preview=preview)
    store.retain_only([p.key for p in plans] + [f"{p.key}.titled" for p in plans])
    for old in stale_covers(ctx.output_dir / "shorts", s.SHORTS_VARIATIONS):
        old.unlink()
        ctx.say(f"removed {old.name}: SHORTS_VARIATIONS is now {s.SHORTS_VARIATIONS}")
    thumb = titled["thumbnail.titled"].data
    ctx.say(f"thumbnail: output/thumbnail.png ({thumb.get('bytes', 0) / 1e6:.2f} MB, {thumb.get('format')}); "
            f"covers: output/shorts/cover.v1..v{len(plans) - 1}.png" if len(plans) > 1 else
            f"thumbnail: output/thumbnail.png ({thumb.get('bytes', 0) / 1e6:.2f} MB, {thumb.get('format')})")


if __name__ == "__main__":
    script.run(main)
