"""One step of gen.image's picture making, the same for characters, locations and scenes.

plan (common.pictures.plan) -> for each picture not yet checkpointed: stitch its references,
prepare its start picture, run its LoRA passes (common.pictures.passes), crop it to the exact
size, draw the name band -> record it -> rewrite output/review.html. 2.character.py and
2.location.py are `run_step` with a different `kind`; 3.scene.py goes through
common.pictures.keyframes, which uses `begin_step`/`end_step` and `make_picture` (its stitched mode)
and judges each scene's candidates (common.pictures.keyframe_judge).
"""
from __future__ import annotations

from dataclasses import dataclass
import shutil
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from common.channel.series import Look, Series, open_series
from common.state.atomic import atomic_path
from common.state.checkpoints import CheckpointStore, fingerprint
from common.engines.choice import engines_from_env
from common.engines.base import ImageEngine, ImageRequest
from common.engines.registry import get_engine
from common.run.errors import InputError
from common.pictures.image_files import cover, fit_picture, save_png
from common.pictures.overlay import name_band
from common.pictures.passes import PassJob, PassSpec, plan_passes, run_passes
from common.pictures.plan import KIND_FOLDERS, ImageItem, SeedBook, output_folder, plan_items
from common.pictures.retake import RETAKE_FILE, mark_retaken, pending_retakes, retake_ids
from common.pictures.review import write_review
from common.pictures.stitch import stitch
from common.run.runner import Script, ScriptContext

SETTINGS_KEYS = {
    "character": ("ART_STYLE", "CHARACTER_WIDTH", "CHARACTER_HEIGHT", "FACE_ONLY", "VARIATIONS_PER_CHARACTER",
                  "CHARACTER_SHEETS", "SHEET_EXPRESSIONS", "SHEET_COLUMNS"),
    "location": ("ART_STYLE", "IMAGE_WIDTH", "IMAGE_HEIGHT", "VARIATIONS_PER_LOCATION"),
    "scene": ("ART_STYLE", "IMAGE_WIDTH", "IMAGE_HEIGHT", "VARIATIONS_PER_SCENE", "ACTIVE_CHARACTER_MODE",
              "ACTIVE_LOCATION_MODE", "IMAGE_STITCH_COUNT", "CHARACTER_RESIZE_FACTOR", "CHARACTER_REFERENCE",
              "KEYFRAME_MODE", "PLATE_CHAIN_DENOISE", "KEYFRAME_CANDIDATES", "IDENTITY_JUDGE", "IDENTITY_THRESHOLD",
              "IDENTITY_RETAKES"),
}
_SHARED_KEYS = ("LATENT_MODE", "LATENT_DENOISING_STRENGTH", "USE_LORA", "LORA_MODE", "SAMPLING_STEPS",
                "USE_RANDOM_SEED", "FIXED_SEED", "USE_SUMMARY_TEXT", "NAME_OVERLAY")


def image_script(script_file: str, kind: str, description: str) -> Script:
    script = Script(script_file, description, settings_keys=SETTINGS_KEYS[kind] + _SHARED_KEYS)
    script.add_argument("--retake", action="store_true",
                        help=f"make only the pictures whose ids are listed in ../{RETAKE_FILE} (one a line), nothing "
                             "else; without it a run makes those again too, as well as every picture not made yet")
    return script


def _relative(pipeline_dir: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(pipeline_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _pass_identity(passes: tuple[PassSpec, ...]) -> list[Any]:
    # Keeping intermediates or not changes no picture.
    return [{k: v for k, v in p.describe().items() if k != "save_intermediate"} for p in passes]


def _prepare_start(source: Path, out: Path, size: tuple[int, int]) -> Path:
    """The LATENT_MODE IMAGE start picture at the job's size (its latent sets the result's size)."""
    try:
        with Image.open(source) as img:
            fitted = cover(img, size)
    except (OSError, ValueError) as exc:
        raise InputError(f"the start picture {source} cannot be read ({exc}); replace it or set LATENT_MODE to LATENT.") from None
    return save_png(fitted, out)


def _finish_picture(item: ImageItem) -> list[Path]:
    """Fit the clean picture to the item's size and draw its name band (when it has a name); the files made."""
    fit_picture(item.clean, (item.width, item.height))
    if not item.name:
        (item.out.parent / "clean" / item.out.name).unlink(missing_ok=True)  # a band from an earlier run
        return [item.out]
    name_band(item.clean, item.out, item.name, font_scale=item.settings.get("NAME_FONT_SCALE", 1.0),
              max_ratio=item.settings.get("NAME_BAND_HEIGHT_RATIO", 0.30))
    return [item.out, item.clean]


def make_picture(engine: ImageEngine, item: ImageItem, passes: tuple[PassSpec, ...], store: CheckpointStore,
                 pipeline_dir: Path, item_fp: str) -> tuple[list[Path], dict[str, Any]]:
    """Make one item's picture(s) and say what was done, for its checkpoint and the review page."""
    rel = lambda p: _relative(pipeline_dir, p)  # noqa: E731
    output = pipeline_dir / "output"
    references = tuple(stitch(group, output / "references" / f"{item.key}.{n}.png")
                       for n, group in enumerate(item.groups, start=1))
    start = (_prepare_start(item.start_image, output / "references" / f"{item.key}.start.png", item.job_size)
             if item.start_image else None)
    width, height = item.job_size
    request = ImageRequest(item.kind, item.item_id, item.prompt, width, height, item.seed.value,
                           negative_prompt=item.negative_prompt, details=item.details, caption=item.caption)
    job = PassJob(item.key, item_fp, request, start, item.start_denoise, references, item.clean, output / "lora")
    records = run_passes(engine, job, passes, store, rel)
    files = _finish_picture(item)
    data = {
        "kind": item.kind, "item_id": item.item_id, "variation": item.variation, "order": item.order,
        "prompt": item.prompt, "negative_prompt": item.negative_prompt, "caption": item.caption,
        "seed": item.seed.value, "random_seed": item.seed.random, "take": item.seed.take,
        "width": item.width, "height": item.height, "job_size": list(item.job_size), "settings": item.settings,
        "passes": records, "references": [rel(r) for r in references],
        "reference_items": [[[r.role, r.key] for r in group] for group in item.groups],
        "start_image": rel(item.start_image) if item.start_image else None,
        "clean": rel(item.clean) if item.clean != item.out else None,
    }
    return files, data


def reuse_look(item: ImageItem, look: Look) -> tuple[list[Path], dict[str, Any]]:
    """A recurring character's established look (common.channel.series) instead of a new picture: fitted
    to this story's size, with this story's name band."""
    with atomic_path(item.clean) as tmp:
        shutil.copyfile(look.picture, tmp)
    files = _finish_picture(item)
    return files, {"kind": item.kind, "item_id": item.item_id, "variation": item.variation, "order": item.order,
                   "prompt": item.prompt, "caption": item.caption, "width": item.width, "height": item.height,
                   "seed": item.seed.value, "random_seed": item.seed.random, "settings": item.settings,
                   "series_look": str(look.picture), "series_story": look.story}


def remember_looks(ctx: ScriptContext, series: Series, items: list[ImageItem], entries: dict[str, Any],
                   preview: bool) -> None:
    """Characters this story drew become the series' looks where it has none (or asked for new ones)."""
    added = [item.item_id for item in items
             if item.variation == 1 and item.key in entries and entries[item.key].status == "done"
             and not entries[item.key].data.get("series_look")
             and series.remember_look(item.item_id, item.caption, item.clean, preview=preview,
                                      new_looks=ctx.settings.SERIES_NEW_LOOKS)]
    reused = [f"{item.item_id} (drawn for {entries[item.key].data.get('series_story')})" for item in items
              if item.key in entries and entries[item.key].data.get("series_look")]
    if reused:
        ctx.say(f"series: kept the established look of {', '.join(reused)}; SERIES_NEW_LOOKS lists tags whose "
                "changed description gets a new picture")
    if added:
        ctx.say(f"series: {', '.join(added)} drawn and kept as the look for the next stories ({series.root})")


def _remove_stale(store: CheckpointStore, keys: set[str], pipeline_dir: Path, kind: str) -> list[str]:
    """Pictures of items that no longer exist (a character removed, fewer variations): files and entries.
    Keys with a `:` belong to another maker sharing the script's checkpoints (`sheet:<tag>`) and are left alone."""
    folder = output_folder(pipeline_dir, kind).resolve()
    others = {k for k in store.entries() if ":" in k}
    stale = [k for k in store.entries() if k not in keys | others and k.split("#", 1)[0] not in keys]
    for key in stale:
        for name in store.entries()[key].files:
            path = (pipeline_dir / name).resolve()
            if folder in path.parents:
                path.unlink(missing_ok=True)
    store.retain_only(keys | others)
    return [k for k in stale if "#" not in k]


def answer_retakes(ctx: ScriptContext, run: "StepRun") -> None:
    """Comment out the retake.txt lines whose pictures were all made again (a failed one stays asked).

    Call it in a `finally` after the pictures are made: the retakes that were made are answered
    even when another item failed."""
    entries = run.store.entries()
    answered: dict[str, int] = {}
    for ident in run.wanted:
        mine = [i for i in run.retaken if ident in (i.key, i.item_id)]
        made = [entries.get(i.key) for i in mine]
        if mine and all(e is not None and e.status == "done" and e.data.get("take") == i.seed.take
                        for e, i in zip(made, mine)):
            answered[ident] = max(i.seed.take for i in mine)
    mark_retaken(ctx.pipeline_dir, answered)


@dataclass
class StepRun:
    """One run of a picture step: what it plans, what it makes this time, and with what."""

    kind: str
    items: list[ImageItem]
    todo: list[ImageItem]
    engine: ImageEngine
    passes: tuple[PassSpec, ...]
    store: CheckpointStore
    identity: dict[str, Any]  # the engine's, asked once
    wanted: dict[str, int]  # retake.txt ids of this kind -> their line
    retaken: list[ImageItem]  # the items made again with a new take


Planner = Callable[[str, Any, Path, SeedBook], list[ImageItem]]


def begin_step(ctx: ScriptContext, kind: str, plan: Planner = plan_items) -> StepRun:
    """Plan every picture of `kind` (`plan`: common.pictures.plan's, or the layered keyframes'), apply
    retake.txt (a new seed for each listed id, their checkpoints dropped; with --retake only those
    are made) and choose the engine."""
    settings = ctx.settings
    store = ctx.checkpoints()
    retake = getattr(ctx.args, "retake", False)
    wanted = retake_ids(ctx.pipeline_dir, kind) if retake else pending_retakes(ctx.pipeline_dir, kind)
    seeds = SeedBook(settings, store.entries(), wanted)
    items = plan(kind, settings, ctx.pipeline_dir, seeds)
    unknown = sorted(set(wanted) - seeds.matched, key=lambda i: wanted[i])
    if unknown:
        first, known = unknown[0], sorted({i.item_id for i in items})
        listing = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        said = (f"{ctx.pipeline_dir / RETAKE_FILE} line {wanted[first]} names {first}, which is no {kind} of this "
                f"story ({listing})")
        if retake:  # asked for on the command line: nothing else to do, so say so and stop
            raise InputError(f"{said}; fix or remove the line.")
        # An unattended run does not stop the night for a stale request: it says so and goes on.
        ctx.say(f"warning: {said}; the line is ignored (fix or remove it).")
    passes = plan_passes(settings)
    ctx.say(engines_from_env(settings).reason)
    engine = get_engine("image", settings, ctx.pipeline_dir)
    retaken = [item for item in items if item.seed.retaken]
    todo = retaken if retake else items
    for item in retaken:
        for key in [k for k in store.entries() if k == item.key or k.startswith(item.key + "#")]:
            store.forget(key)
    if retake or retaken:
        ctx.say(f"{'--retake: ' if retake else ''}making {len(retaken)} {kind} picture(s) again as asked in "
                f"{RETAKE_FILE}: " + (", ".join(f"{i.key} (take {i.seed.take})" for i in retaken)
                                      or "none of its ids is a " + kind))
    return StepRun(kind, items, todo, engine, passes, store, engine.identity(), wanted, retaken)


def picture_fingerprint(run: StepRun, item: ImageItem) -> str:
    """A picture's checkpoint fingerprint: the engine, its passes and everything the item depends on."""
    return fingerprint(run.identity, _pass_identity(run.passes), item.identity())


def end_step(ctx: ScriptContext, run: StepRun) -> None:
    """Remove the pictures of items that no longer exist, then rewrite the review page."""
    removed = _remove_stale(run.store, {i.key for i in run.items}, ctx.pipeline_dir, run.kind)
    if removed:
        ctx.say(f"removed {len(removed)} picture(s) no longer in the descriptions: {', '.join(removed)}")
    review = write_review(ctx.pipeline_dir)
    ctx.say(f"pictures in {KIND_FOLDERS[run.kind]}/; review page: {review}")


def run_step(ctx: ScriptContext, kind: str) -> None:
    """Make every picture of `kind` ('character' or 'location') that is not made yet, then the review page."""
    run = begin_step(ctx, kind)
    items, passes, engine, settings = run.items, run.passes, run.engine, ctx.settings
    if items:
        ctx.say(f"{len(items)} {kind} picture(s) at {items[0].width}x{items[0].height}, engine {engine.name}, "
                f"{len(passes)} job(s) each ({'; '.join(p.label for p in passes)})")
    # Channel mode: a recurring character keeps the look the series has for it (common.channel.series);
    # a picture asked for again (retake.txt) is drawn anew.
    series = open_series(settings, ctx.pipeline_dir) if kind == "character" else None
    looks = {item.key: look for item in run.todo if series is not None and item.variation == 1
             and item not in run.retaken
             and (look := series.look_for(item.item_id, item.caption, new_looks=settings.SERIES_NEW_LOOKS,
                                          preview=engine.preview)) is not None}
    prints = {item.key: fingerprint(run.identity, _pass_identity(passes), item.identity(),
                                    *([looks[item.key].picture] if item.key in looks else [])) for item in run.todo}

    def work(item: ImageItem) -> tuple[list[Path], dict[str, Any]]:
        if item.key in looks:
            return reuse_look(item, looks[item.key])
        return make_picture(engine, item, passes, run.store, ctx.pipeline_dir, prints[item.key])

    try:
        made = ctx.each(run.todo, label=KIND_FOLDERS[kind], key=lambda i: i.key, fingerprint=lambda i: prints[i.key],
                        work=work, preview=engine.preview, workers=engine.parallel_jobs)
    finally:
        answer_retakes(ctx, run)
    if series is not None:
        remember_looks(ctx, series, run.todo, made, engine.preview)
    end_step(ctx, run)
