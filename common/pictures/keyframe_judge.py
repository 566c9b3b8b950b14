"""3.scene.py's candidates and identity judge, around whatever makes one keyframe.

`KeyframeJudging.keyframe(item, fingerprint, make)` (or `.judged(subject, seed, out, fingerprint, make)`
for a maker without an ImageItem) turns "make this scene's picture with this seed" (`make(seed,
out_png)`: today common.pictures.steps.make_picture, the stitched-reference mode; any other keyframe
maker fits the same way) into KEYFRAME_CANDIDATES candidates judged against the sheets of the
scene's characters, retaken while under IDENTITY_THRESHOLD (common.pictures.identity), and writes
the kept one to the scene's own file. `CastBook` says who a character is for the judge:
its sheet (the user's own, else output/sheets/<tag>.png), else its picture, and its words from the
asset library; gen.video's clip judge uses it too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from common.offline.cards import display_name
from common.pictures.assets import load_library, own_sheet, sheet_file
from common.pictures.identity import (
    IDENTITY_FILE, CastMember, IdentityLog, Make, Policy, Subject, copy_kept, keep_best, tidy,
)
from common.pictures.judges import choose_judge
from common.pictures.plan import ImageItem, clean_picture, read_description_map


class CastBook:
    """The characters of one gen.image folder as the judge sees them."""

    def __init__(self, image_dir: Path, settings: Any) -> None:
        self.image_dir = Path(image_dir)
        self.settings = settings
        self.library = load_library(self.image_dir)
        self.words, _ = read_description_map(self.image_dir / "input", "character", bool(settings.USE_SUMMARY_TEXT),
                                             required=False)

    def reference(self, tag: str) -> Path | None:
        """The sheet a picture of `tag` must match: the library's (the user's own, or the drawn one), else its picture."""
        sheets = []
        if self.library is not None and tag in self.library.characters and self.library.characters[tag].sheet:
            sheets.append(sheet_file(self.image_dir, self.library.characters[tag].sheet))
        sheets.append(sheet_file(self.image_dir, own_sheet(tag)))
        sheets.append(clean_picture(self.image_dir, "character", tag, self.settings))
        return next((path for path in sheets if path.is_file()), None)

    def member(self, tag: str) -> CastMember:
        character = self.library.characters.get(tag) if self.library is not None else None
        name = (character.name if character is not None and character.name else "") or display_name(tag)
        words = (character.description if character is not None else "") or self.words.get(tag, "")
        return CastMember(tag, name.rstrip(","), " ".join(words.split()), self.reference(tag))

    def members(self, tags: Iterable[str]) -> tuple[CastMember, ...]:
        return tuple(self.member(tag) for tag in dict.fromkeys(tags))


class KeyframeJudging:
    """The judge, the policy and identity.json of one 3.scene.py run."""

    def __init__(self, ctx: Any, engine: Any, keys: Sequence[str]) -> None:
        settings = ctx.settings
        self.say = ctx.say
        self.policy = Policy.from_settings(settings)
        self.judge, line = choose_judge(settings, ctx.pipeline_dir, self.policy, cards=bool(engine.preview))
        self.seeded = bool(getattr(engine, "follows_seed", True))
        self.preview = bool(engine.preview)
        self.cast = CastBook(ctx.pipeline_dir, settings)
        self.store = ctx.checkpoints()
        self.folder = ctx.pipeline_dir / "output" / "scene" / "candidates"
        self.log = IdentityLog(ctx.pipeline_dir / "output" / IDENTITY_FILE, "scenes", self.policy,
                               self.judge.name if self.judge is not None else "none", "3.scene.py")
        self.log.load(self.store.entries(), keys)
        if self.judge is not None:
            if not self.seeded:
                line += "; one picture per scene and no retakes (this engine draws the same picture for every seed)"
            else:
                line += (f"; {self.policy.candidates} candidate(s) per scene, the best kept; under "
                         f"{self.policy.threshold:g} retaken up to {self.policy.retakes} time(s), then flagged")
        ctx.say(line)

    def identity(self) -> list[Any]:
        """What a scene's kept picture depends on besides the picture's own inputs (its item fingerprint takes it)."""
        return self.policy.identity()

    def subject(self, key: str, scene_id: str, tags: Sequence[str], scene_text: str) -> Subject:
        return Subject(key, scene_id, scene_text, self.cast.members(tags))

    def item_subject(self, item: ImageItem) -> Subject:
        """An ImageItem's scene: its characters are its `details` ("tag: what they do")."""
        tags = [detail.split(":", 1)[0].strip() for detail in item.details]
        return self.subject(item.key, item.item_id, tags, "; ".join([item.caption, *item.details]))

    def keyframe(self, item: ImageItem, item_fp: str, make: Make) -> tuple[list[Path], dict[str, Any]]:
        """The scene's kept picture at `item.out`, and its checkpoint data: what `make` said, plus `identity`."""
        return self.judged(self.item_subject(item), item.seed.value, item.out, item_fp, make)

    def judged(self, subject: Subject, seed: int, out: Path, item_fp: str,
               make: Make) -> tuple[list[Path], dict[str, Any]]:
        """Any keyframe maker's way in: `make(seed, out_png)` for the scene `subject` from its own `seed`, the kept
        picture at `out`; `item_fp`: the picture's fingerprint without the judge (each candidate's derives from it)."""
        kept = keep_best(subject, make, base_seed=seed, item_fp=item_fp, judge=self.judge, policy=self.policy,
                         store=self.store, folder=self.folder, preview=self.preview, seeded=self.seeded, say=self.say)
        copy_kept(kept, out)
        self.log.put(subject.key, kept.record)
        return [out], {**kept.made, "seed": kept.seed, "identity": kept.record}

    def finish(self, keys: Sequence[str]) -> Path:
        """After the step: finished scenes' candidates deleted, identity.json rebuilt from the checkpoints."""
        tidy(self.store, keys, self.folder)
        self.log.load(self.store.entries(), keys)
        flagged = [k for k, r in self.log.records.items() if r.get("flagged")]
        if flagged:
            self.say(f"identity judge: {len(flagged)} scene(s) stayed under {self.policy.threshold:g} and are flagged "
                     f"on the review page: {', '.join(flagged[:8])}{', ...' if len(flagged) > 8 else ''} "
                     "(put their ids in retake.txt and run with --retake to try again)")
        return self.log.write(keys)
