"""3.animate.py's identity judge: does each animated clip still show its characters as their sheets do?

A model animating a picture can let a face drift in a few seconds. So each finished clip (not a
held Ken Burns push: that is the scene's own picture, judged by 3.scene.py) has its first, middle
and last frames scored by the same judge as gen.image's keyframes (common.pictures.identity,
common.pictures.judges), against the sheets of the characters in its shot; a clip under
IDENTITY_THRESHOLD is made again from its scene picture with new seeds (every segment of a chained
clip too), at most IDENTITY_RETAKES times, then the best is kept and flagged. The first take is
the clip the step made anyway; a retake's segments are checkpointed one by one like the first
take's, so a kill costs at most the job in flight. Records go to gen.video/output/identity.json.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.pictures.identity import (
    IDENTITY_FILE, IdentityLog, Policy, Subject, copy_kept, keep_best, made_before, tidy,
)
from common.pictures.judges import choose_judge
from common.pictures.keyframe_judge import CastBook
from common.run.errors import InputError
from common.video.animation import FrameRule
from common.video.clip_jobs import Folders, Item, Look, fingerprints, is_direct, items_for, run_item

VIEWS = "the first, middle and last frames of one animated clip"


def sample_frames(video: Path, folder: Path) -> list[Path]:
    """The first, middle and last frames of `video` as PNG files in `folder` (fewer for a clip that short)."""
    import av

    from common.video.clips import decoded_frame_count

    count = decoded_frame_count(video)
    if count < 1:
        raise InputError(f"{video} has no frame to judge; delete it and run 3.animate.py again.")
    wanted = sorted({0, (count - 1) // 2, count - 1})
    found: list[Path] = []
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index in wanted:
                out = folder / f"{video.stem}.{index}.png"
                frame.to_image().convert("RGB").save(out, format="PNG")
                found.append(out)
            if index >= wanted[-1]:
                break
    return found


class ClipJudging:
    """The judge, the policy and identity.json of one 3.animate.py run."""

    def __init__(self, ctx: Any, engine: Any, look: Look, folders: Folders, rule: FrameRule,
                 keys: Sequence[str]) -> None:
        settings = ctx.settings
        self.engine, self.look, self.folders, self.rule, self.say = engine, look, folders, rule, ctx.say
        self.policy = Policy.from_settings(settings, candidates=False)
        self.judge, line = choose_judge(settings, ctx.pipeline_dir, self.policy, cards=bool(engine.preview))
        self.seeded = bool(getattr(engine, "follows_seed", True))
        self.cast = CastBook(Path(ctx.pipeline_dir).parent / "gen.image", settings)
        self.store = ctx.checkpoints()
        self.folder = folders.clips / "candidates"
        self.log = IdentityLog(ctx.pipeline_dir / "output" / IDENTITY_FILE, "clips", self.policy,
                               self.judge.name if self.judge is not None else "none", "3.animate.py")
        self.log.load(self.store.entries(), keys)
        if self.judge is not None:
            line += (f"; each clip's first, middle and last frames, under {self.policy.threshold:g} made again up to "
                     f"{self.policy.retakes} time(s), then flagged" if self.seeded else
                     "; each clip's first, middle and last frames, no retakes (this engine makes the same clip for every seed)")
        ctx.say(line.replace("pictures are kept", "clips are kept"))

    def identity(self) -> list[Any]:
        return self.policy.identity()

    @staticmethod
    def judges(item: Item) -> bool:
        """Whether the item is a finished clip the model made (segments are parts; a held clip is a still)."""
        return item.segment is None and not item.job.hold

    def clip(self, item: Item, item_fp: str, engine_identity: Mapping[str, Any]) -> tuple[list[Path], dict[str, Any]]:
        """The clip kept at its own path, and its checkpoint data with `identity`."""
        job = item.job
        shot = job.shot
        subject = Subject(shot.clip, shot.scene_id, shot.scene_line, self.cast.members(t for t, _ in shot.characters),
                          views=VIEWS)
        first = Policy.seed(self.look.seed, 0)

        def make(seed: int, out: Path) -> dict[str, Any]:
            if seed == first:  # the first take: the segments this step already made (or the clip, before judging)
                before = made_before(self.store, shot.clip, item_fp, self.folders.clip(job), out)
                return before if before is not None else run_item(item, self.engine, self.look, self.folders, out=out)[1]
            return self._retake(item, seed, out, engine_identity)

        kept = keep_best(subject, make, base_seed=self.look.seed, item_fp=item_fp, judge=self.judge,
                         policy=self.policy, store=self.store, folder=self.folder, suffix=".mp4", views=sample_frames,
                         preview=bool(self.engine.preview), seeded=self.seeded, say=self.say)
        out = copy_kept(kept, self.folders.clip(job))
        self.log.put(shot.clip, kept.record)
        return [out], {**kept.made, "seed": kept.seed, "identity": kept.record}

    def _retake(self, item: Item, seed: int, out: Path, engine_identity: Mapping[str, Any]) -> dict[str, Any]:
        """The whole clip again with `seed` as its base seed: each segment a checkpoint of its own, then the join."""
        job = item.job
        look = replace(self.look, seed=seed)
        folders = Folders(self.folder, self.folder / out.stem)
        if not is_direct(job, self.rule):
            segments = [it for it in items_for([job], self.rule) if it.segment is not None]
            prints = fingerprints(segments, engine_identity, look, self.rule)
            for segment in segments:
                key = f"{job.shot.clip}#cand.{seed}.{segment.index + 1}"
                if self.store.lookup(key, prints[segment.key]) is None:
                    files, data = run_item(segment, self.engine, look, folders)
                    self.store.record(key, prints[segment.key], files=files, data=data, preview=bool(self.engine.preview))
        return run_item(Item(job, None), self.engine, look, folders, out=out)[1]

    def finish(self, keys: Sequence[str]) -> Path:
        """After the step: finished clips' candidates deleted, identity.json rebuilt from the checkpoints."""
        tidy(self.store, keys, self.folder)
        self.log.load(self.store.entries(), keys)
        flagged = [k for k, r in self.log.records.items() if r.get("flagged")]
        if flagged:
            self.say(f"identity judge: {len(flagged)} clip(s) stayed under {self.policy.threshold:g}, flagged in "
                     f"output/{IDENTITY_FILE}: {', '.join(flagged[:8])}{', ...' if len(flagged) > 8 else ''}")
        return self.log.write(keys)
