"""One step of gen.image's picture making, the same for characters, locations and scenes.

plan (common.pictures.plan) -> for each picture not yet checkpointed: stitch its references,
prepare its start picture, run its LoRA passes (common.pictures.passes), crop it to the exact
size, draw the name band -> record it -> rewrite output/review.html. 2.character.py,
2.location.py and 3.scene.py are this with a different `kind`; a scene's picture is made as
candidates, each judged against the sheets of its characters and retaken while under the
threshold (common.pictures.keyframe_judge), its scores in output/identity.json.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from common.state.checkpoints import CheckpointStore, fingerprint
from common.engines.choice import engines_from_env
from common.engines.base import ImageEngine, ImageRequest
from common.engines.registry import get_engine
from common.run.errors import InputError
from common.pictures.image_files import cover, fit_picture, save_png
from common.pictures.identity import made_before
from common.pictures.keyframe_judge import KeyframeJudging
from common.pictures.overlay import name_band
from common.pictures.passes import PassJob, PassSpec, plan_passes, run_passes
from common.pictures.plan import KIND_FOLDERS, ImageItem, SeedBook, output_folder, plan_items
from common.pictures.retake import RETAKE_FILE, retake_ids
from common.pictures.review import write_review
from common.pictures.stitch import stitch
from common.run.runner import Script, ScriptContext

SETTINGS_KEYS = {
    "character": ("ART_STYLE", "CHARACTER_WIDTH", "CHARACTER_HEIGHT", "FACE_ONLY", "VARIATIONS_PER_CHARACTER",
                  "CHARACTER_SHEETS", "SHEET_EXPRESSIONS", "SHEET_COLUMNS"),
    "location": ("ART_STYLE", "IMAGE_WIDTH", "IMAGE_HEIGHT", "VARIATIONS_PER_LOCATION"),
    "scene": ("ART_STYLE", "IMAGE_WIDTH", "IMAGE_HEIGHT", "VARIATIONS_PER_SCENE", "ACTIVE_CHARACTER_MODE",
              "ACTIVE_LOCATION_MODE", "IMAGE_STITCH_COUNT", "CHARACTER_RESIZE_FACTOR", "CHARACTER_REFERENCE",
              "KEYFRAME_CANDIDATES", "IDENTITY_JUDGE", "IDENTITY_THRESHOLD", "IDENTITY_RETAKES"),
}
_SHARED_KEYS = ("LATENT_MODE", "LATENT_DENOISING_STRENGTH", "USE_LORA", "LORA_MODE", "SAMPLING_STEPS",
                "USE_RANDOM_SEED", "FIXED_SEED", "USE_SUMMARY_TEXT", "NAME_OVERLAY")


def image_script(script_file: str, kind: str, description: str) -> Script:
    script = Script(script_file, description, settings_keys=SETTINGS_KEYS[kind] + _SHARED_KEYS)
    script.add_argument("--retake", action="store_true",
                        help=f"make again only the pictures whose ids are listed in ../{RETAKE_FILE} (one a line)")
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
    fit_picture(item.clean, (item.width, item.height))
    files = [item.out]
    if item.name:
        name_band(item.clean, item.out, item.name, font_scale=item.settings.get("NAME_FONT_SCALE", 1.0),
                  max_ratio=item.settings.get("NAME_BAND_HEIGHT_RATIO", 0.30))
        files.append(item.clean)
    else:
        (item.out.parent / "clean" / item.out.name).unlink(missing_ok=True)  # a band from an earlier run
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


def _judged_scene(judging: KeyframeJudging, engine: ImageEngine, passes: tuple[PassSpec, ...],
                  store: CheckpointStore, pipeline_dir: Path,
                  prints: dict[str, str]) -> Callable[[ImageItem], tuple[list[Path], dict[str, Any]]]:
    """A scene's work: its candidates, each this step's picture with a seed of its own, judged."""
    def work(item: ImageItem) -> tuple[list[Path], dict[str, Any]]:
        picture_fp = prints[item.key]

        def make(seed: int, out: Path) -> dict[str, Any]:
            before = made_before(store, item.key, picture_fp, item.out, out) if seed == item.seed.value else None
            if before is not None:
                return before  # finished before the judge came: judged as it is
            candidate = replace(item, seed=replace(item.seed, value=seed), out=out, clean=out)
            return make_picture(engine, candidate, passes, store, pipeline_dir, fingerprint(picture_fp, seed))[1]

        return judging.keyframe(item, picture_fp, make)
    return work


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


def run_step(ctx: ScriptContext, kind: str) -> None:
    """Make every picture of `kind` ('character', 'location', 'scene') that is not made yet, then the review page."""
    settings = ctx.settings
    store = ctx.checkpoints()
    retake = getattr(ctx.args, "retake", False)
    wanted = retake_ids(ctx.pipeline_dir, kind) if retake else {}
    seeds = SeedBook(settings, store.entries(), wanted)
    items = plan_items(kind, settings, ctx.pipeline_dir, seeds)
    unknown = sorted(set(wanted) - seeds.matched, key=lambda i: wanted[i])
    if unknown:
        first, known = unknown[0], sorted({i.item_id for i in items})
        listing = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        raise InputError(f"{ctx.pipeline_dir / RETAKE_FILE} line {wanted[first]} names {first}, which is no {kind} of this "
                         f"story ({listing}); fix or remove the line.")
    passes = plan_passes(settings)
    ctx.say(engines_from_env(settings).reason)
    engine = get_engine("image", settings, ctx.pipeline_dir)
    ident = engine.identity()
    todo = items
    if retake:
        todo = [item for item in items if item.seed.retaken]
        for item in todo:
            for key in [k for k in store.entries() if k == item.key or k.startswith(item.key + "#")]:
                store.forget(key)
        ctx.say(f"--retake: making {len(todo)} {kind} picture(s) again from {RETAKE_FILE}: "
                + (", ".join(i.key for i in todo) or "none of its ids is a " + kind))
    if items:
        ctx.say(f"{len(items)} {kind} picture(s) at {items[0].width}x{items[0].height}, engine {engine.name}, "
                f"{len(passes)} job(s) each ({'; '.join(p.label for p in passes)})")
    prints = {item.key: fingerprint(ident, _pass_identity(passes), item.identity()) for item in todo}
    item_prints, work = prints, lambda i: make_picture(engine, i, passes, store, ctx.pipeline_dir, prints[i.key])
    judging = KeyframeJudging(ctx, engine, [i.key for i in items]) if kind == "scene" else None
    if judging is not None:  # scenes: candidates, each judged against the characters' sheets
        item_prints = {key: fingerprint(fp, judging.identity()) for key, fp in prints.items()}
        work = _judged_scene(judging, engine, passes, store, ctx.pipeline_dir, prints)
    ctx.each(todo, label=KIND_FOLDERS[kind], key=lambda i: i.key, fingerprint=lambda i: item_prints[i.key],
             work=work, preview=engine.preview, workers=engine.parallel_jobs)
    if judging is not None:
        judging.finish([i.key for i in items])
    removed = _remove_stale(store, {i.key for i in items}, ctx.pipeline_dir, kind)
    if removed:
        ctx.say(f"removed {len(removed)} picture(s) no longer in the descriptions: {', '.join(removed)}")
    review = write_review(ctx.pipeline_dir)
    ctx.say(f"pictures in {KIND_FOLDERS[kind]}/; review page: {review}")

