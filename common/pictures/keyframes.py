"""Scene pictures (keyframes), in the mode KEYFRAME_MODE says: 3.scene.py is a loop over `make_keyframe`.

`stitched` (the default): one job per picture, its characters (their sheets) and place as stitched
reference images (common.pictures.plan, .stitch, .passes), as the seed system made them. `layered`:
a plate per place and time of day, each character posed from their sheet, then composited onto the
plate (common.pictures.layers plans them; this module makes them). Both give
output/scene/<scene>.png, so every later step is the same.

`Keyframes.make_keyframe(item, seed, out_png)` makes one scene picture with one seed at one path:
the scene step calls it once per item with the item's own seed and path, and a caller that wants
several candidates of a scene calls it with other seeds and paths (each candidate's layers go to
output/layers/<out_png stem>/, its checkpoints are keyed by that stem). Checkpoints (3.scene.py's
file): each scene picture is an item; in layered mode also each plate (`plate:<loc>@<time>`, made
first, in story order, by `prepare`), each pose (`pose:<stem>/<tag>`) and each composite pass but the
last (`<stem>#composite<n>`, until its picture is done), so a kill loses at most the job in flight.
"""
from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.pictures.identity import made_before
from common.pictures.image_files import fit_picture, request_size
from common.pictures.keyframe_judge import KeyframeJudging
from common.pictures.layers import (
    PLATE_PREFIX, PLATES, POSE_PREFIX, Plate, job_count, layers_folder, plan_layered,
)
from common.pictures.plan import ImageItem, SeedBook, plan_items
from common.pictures.steps import begin_step, end_step, make_picture, picture_fingerprint
from common.run.errors import ConfigError, ItemsFailedError, JobError
from common.state.atomic import atomic_path
from common.state.checkpoints import Entry, fingerprint

MODES = ("stitched", "layered")
LAYER_KINDS = ("plate", "pose", "composite")


def _copy(source: Path, target: Path) -> Path:
    """A whole copy or none: a kill never leaves half a picture behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as part:
        shutil.copyfile(source, part)
    return target


class Keyframes:
    """The scene step's plan, engine and checkpoints, and the one function that makes a scene picture."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.pipeline_dir = Path(ctx.pipeline_dir)
        mode = str(ctx.settings.KEYFRAME_MODE)
        if mode not in MODES:
            raise ConfigError(f"KEYFRAME_MODE is {mode!r}; use one of {', '.join(MODES)}.")
        self.layered = mode == "layered"
        self.plates: list[Plate] = []
        self.run = begin_step(ctx, "scene", self._plan)
        self.engine, self.store = self.run.engine, self.run.store
        # What every layer of a kind depends on besides its own inputs: the engine and that kind's workflow.
        self.kinds = {kind: self.engine.kind_identity(kind) for kind in LAYER_KINDS} if self.layered else {}
        self._plate_lock = threading.Lock()
        self._failed: dict[str, str] = {}  # plates that failed in `prepare`: their scenes fail without a job
        self._prints: dict[str, str] = {}
        self._say_plan()
        # Candidates per scene, each judged against the sheets of its characters (KEYFRAME_CANDIDATES, IDENTITY_*).
        self.judging = KeyframeJudging(ctx, self.engine, [i.key for i in self.run.items])

    def _plan(self, kind: str, settings: Any, pipeline_dir: Path, seeds: SeedBook) -> list[ImageItem]:
        if not self.layered:
            return plan_items(kind, settings, pipeline_dir, seeds)
        items, self.plates = plan_layered(settings, pipeline_dir, seeds)
        return items

    def _say_plan(self) -> None:
        items, engine = self.run.items, self.engine
        if not items:
            return
        size = f"{items[0].width}x{items[0].height}"
        if self.layered:
            plates, poses, composites = job_count(items, self.plates)
            self.ctx.say(f"{len(items)} scene picture(s) at {size} in layers, engine {engine.name}: {plates} plate(s) "
                         f"(one per place and time of day), {poses} posed character(s), {composites} composite job(s); "
                         f"every layer in {layers_folder(self.pipeline_dir).relative_to(self.pipeline_dir).as_posix()}/")
        else:
            passes = self.run.passes
            self.ctx.say(f"{len(items)} scene picture(s) at {size}, engine {engine.name}, {len(passes)} job(s) each "
                         f"({'; '.join(p.label for p in passes)})")

    # ---------------------------------------------------------------- what the scene step loops over
    @property
    def items(self) -> list[ImageItem]:
        return self.run.items

    @property
    def todo(self) -> list[ImageItem]:
        """The pictures this run makes: all of them, or with --retake only the listed ones."""
        return self.run.todo

    @property
    def preview(self) -> bool:
        return bool(self.engine.preview)

    @property
    def workers(self) -> int:
        return int(self.engine.parallel_jobs)

    def fingerprint(self, item: ImageItem) -> str:
        """A scene picture's checkpoint fingerprint (stitched: exactly as before layers existed)."""
        if item.key not in self._prints:
            self._prints[item.key] = (fingerprint(self.kinds, item.identity()) if self.layered
                                      else picture_fingerprint(self.run, item))
        return self._prints[item.key]

    def prepare(self) -> None:
        """Layered mode: every plate not made yet, first and in story order (a plate may start from the
        one before it), each checkpointed as it finishes; scenes sharing a plate then find it made. A plate
        that fails fails only the scenes on it (and the plates chained from it), the others go on."""
        if not self.layered:
            return
        try:
            self.ctx.each(self.plates, label="plates", key=lambda p: p.key, fingerprint=self._plate_print,
                          work=self._make_plate, preview=self.preview, workers=self.workers, chain=lambda p: p.place)
        except ItemsFailedError as exc:
            self._failed = {key: str(exc) for key, entry in self.store.entries().items()
                            if key.startswith(PLATE_PREFIX) and entry.status == "failed"}
            self.ctx.say(f"{exc} Meanwhile the scenes on the other plates are made.")

    def make_keyframe(self, item: ImageItem, seed: int | None = None, out_png: Path | None = None
                      ) -> tuple[list[Path], dict[str, Any]]:
        """Make scene `item`'s picture with `seed` (default: its own) at `out_png` (default: output/scene/<key>.png);
        returns (files written, what was done) for its checkpoint. Safe to call from several threads."""
        seed = item.seed.value if seed is None else int(seed)
        out = item.out if out_png is None else Path(out_png)
        own = seed == item.seed.value and out == item.out
        job_fp = self.fingerprint(item) if own else fingerprint(self.fingerprint(item), seed, out.stem)
        job = item if own else replace(item, key=out.stem, seed=replace(item.seed, value=seed), out=out, clean=out)
        if not self.layered:
            return make_picture(self.engine, job, self.run.passes, self.store, self.pipeline_dir, job_fp)
        return self._make_layered(job, job_fp)

    def judged_fingerprint(self, item: ImageItem) -> str:
        """A scene's checkpoint fingerprint once judged: its picture's, plus the judge and its policy."""
        return fingerprint(self.fingerprint(item), self.judging.identity())

    def judged_keyframe(self, item: ImageItem) -> tuple[list[Path], dict[str, Any]]:
        """Scene `item`'s picture as the judge keeps it: candidates made by `make_keyframe`, each with a seed
        of its own, scored against the characters' sheets and retaken while under the threshold. A picture
        finished before the judge came is judged as it is, never made again."""
        picture_fp = self.fingerprint(item)

        def make(seed: int, out: Path) -> dict[str, Any]:
            if seed != item.seed.value:  # a further candidate or a retake: its own picture, layers and checkpoints
                return self.make_keyframe(item, seed, out)[1]
            before = made_before(self.store, item.key, picture_fp, item.out, out)
            if before is not None:
                return before
            # The scene's own seed is made as the scene itself (its layers and references under its own
            # name, as without a judge), then offered to the judge as a candidate.
            data = self.make_keyframe(item)[1]
            _copy(item.out, out)
            return data

        return self.judging.keyframe(item, picture_fp, make)

    def finish(self) -> None:
        """Remove what no longer belongs to any scene (pictures, and in layered mode plates, poses and their
        folders), write identity.json, then rewrite the review page."""
        if self.layered:
            self._remove_stale_layers()
        self.judging.finish([i.key for i in self.run.items])
        end_step(self.ctx, self.run)

    # ---------------------------------------------------------------- layered
    def _rel(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.pipeline_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def _plate_print(self, plate: Plate) -> str:
        return fingerprint(self.kinds["plate"], plate.identity())

    def _make_plate(self, plate: Plate) -> tuple[list[Path], dict[str, Any]]:
        request = plate.request(plate.seed.value, request_size((plate.width, plate.height)))
        plate.out.parent.mkdir(parents=True, exist_ok=True)
        self.engine.image(request, plate.out)
        fit_picture(plate.out, (plate.width, plate.height))
        return [plate.out], {
            "kind": "plate", "item_id": plate.key.removeprefix(PLATE_PREFIX), "order": plate.order, "variation": 1,
            "place": plate.place, "time": plate.time, "prompt": plate.prompt, "negative_prompt": plate.negative_prompt,
            "caption": plate.caption, "seed": plate.seed.value, "random_seed": plate.seed.random, "take": plate.seed.take,
            "width": plate.width, "height": plate.height, "chained_from": plate.parent.key if plate.parent else None,
            "start_image": self._rel(plate.parent.out) if plate.parent else None,
            "settings": {"denoise": plate.denoise} if plate.parent else {},
        }

    def _done(self, key: str, fp: str) -> Entry | None:
        """A finished entry that still holds; a preview run also keeps a real one (as ScriptContext.each does)."""
        return self.store.lookup(key, fp) or (self.store.real_entry(key) if self.preview else None)

    def _ensure_plate(self, plate: Plate) -> Path:
        """The plate, made now (after the one it starts from) if `prepare` did not make it."""
        with self._plate_lock:
            chain = []
            current: Plate | None = plate
            while current is not None and self._done(current.key, self._plate_print(current)) is None:
                if current.key in self._failed:
                    raise JobError(f"its plate {current.key} failed earlier in this run; the next run makes it again")
                chain.append(current)
                current = current.parent
            for missing in reversed(chain):
                files, data = self._make_plate(missing)
                self.store.record(missing.key, self._plate_print(missing), files=files, data=data, preview=self.preview)
        return plate.out

    def _make_layered(self, item: ImageItem, job_fp: str) -> tuple[list[Path], dict[str, Any]]:
        """The plate (copied beside the other layers), each pose, then the composite passes."""
        plan, seed = item.layers, item.seed.value
        folder = layers_folder(self.pipeline_dir) / item.out.stem
        plate = _copy(self._ensure_plate(plan.plate), folder / "plate.png")
        poses: dict[str, Path] = {}
        for pose in plan.poses:
            key, fp = f"{POSE_PREFIX}{item.out.stem}/{pose.tag}", fingerprint(self.kinds["pose"], pose.identity(), seed)
            path = folder / f"{pose.tag}.png"
            if self._done(key, fp) is None:
                self.engine.image(pose.request(seed, request_size((pose.width, pose.height)), item.negative_prompt), path)
                fit_picture(path, (pose.width, pose.height))
                self.store.record(key, fp, files=[path], preview=self.preview, data={
                    "kind": "pose", "item_id": pose.tag, "scene": item.out.stem, "seed": seed, "prompt": pose.prompt,
                    "references": [self._rel(r) for r in pose.references]})
            poses[pose.tag] = path
        composites, base = [], plate
        for step in plan.passes:
            last = step is plan.passes[-1]
            target = folder / ("composite.png" if last else f"composite.{step.number}.png")
            key, fp = f"{item.out.stem}#composite{step.number}", fingerprint(job_fp, step.number)
            if last or self._done(key, fp) is None:
                self.engine.image(step.request(item.item_id, base, [poses[t] for t in step.tags], seed,
                                               request_size((item.width, item.height)), item.negative_prompt,
                                               item.caption), target)
                fit_picture(target, (item.width, item.height))
                if not last:
                    self.store.record(key, fp, files=[target], data={"pass": step.number}, preview=self.preview)
            composites.append(target)
            base = target
        if not plan.passes:  # nobody in the scene: the plate is the picture
            composites.append(_copy(plate, folder / "composite.png"))
        _copy(composites[-1], item.out)
        for step in plan.passes:
            self.store.forget(f"{item.out.stem}#composite{step.number}")
        layers = [plate, *poses.values(), *composites]
        return [item.out, *layers], {
            "kind": "scene", "mode": "layered", "item_id": item.item_id, "variation": item.variation, "order": item.order,
            "prompt": item.prompt, "negative_prompt": item.negative_prompt, "caption": item.caption,
            "seed": seed, "random_seed": item.seed.random, "take": item.seed.take, "width": item.width,
            "height": item.height, "settings": item.settings, "passes": [],
            "references": [self._rel(p) for p in layers[:-1]],
            "layers": {"plate": plan.plate.key, "chained_from": plan.plate.parent.key if plan.plate.parent else None,
                       "poses": {tag: self._rel(p) for tag, p in poses.items()},
                       "composites": [self._rel(p) for p in composites]},
        }

    def _remove_stale_layers(self) -> None:
        """Plates no scene uses, poses of pictures (or characters) no longer planned, and their folders."""
        keys = {i.key for i in self.items}
        plates = {p.key for p in self.plates}
        casts = {i.key: {p.tag for p in i.layers.poses} for i in self.items}

        def kept_stem(stem: str) -> str | None:  # a scene picture, or a candidate of one (<key>.<something>)
            return stem if stem in keys else next((k for k in keys if stem.startswith(k + ".")), None)

        root = layers_folder(self.pipeline_dir)
        gone = []
        for key, entry in self.store.entries().items():
            if key.startswith(PLATE_PREFIX):
                stale = key not in plates
            elif key.startswith(POSE_PREFIX):
                stem, _, tag = key.removeprefix(POSE_PREFIX).partition("/")
                owner = kept_stem(stem)
                stale = owner is None or tag not in casts[owner]
            else:
                continue
            if stale:
                for name in entry.files:
                    path = (self.pipeline_dir / name).resolve()
                    if root.resolve() in path.parents:
                        path.unlink(missing_ok=True)
                self.store.forget(key)
                gone.append(key)
        if root.is_dir():
            for folder in root.iterdir():
                if folder.is_dir() and folder.name != PLATES and kept_stem(folder.name) is None:
                    shutil.rmtree(folder, ignore_errors=True)
                    gone.append(folder.name)
        if gone:
            self.ctx.say(f"removed {len(gone)} layer(s) no scene uses any more: {', '.join(gone[:6])}"
                         + (", ..." if len(gone) > 6 else ""))
