"""From description files to the list of pictures to make: one `ImageItem` per picture.

Characters come from 2.character.txt (3.character.txt with USE_SUMMARY_TEXT), locations from
2.location.txt (3.location.txt), scenes from 3.scene.txt (else the story's own scene lines).
Each item carries everything its picture depends on, so its checkpoint fingerprint is simply
its `identity()`: change a description, a setting, a reference picture or the seed, and that
picture (and only that one) is made again.

Seeds: FIXED_SEED + (variation - 1), moved on by a retake; with USE_RANDOM_SEED a seed is drawn
once and then read back from the item's checkpoint, so a rerun never redraws a finished picture.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping

from common.state.checkpoints import Entry
from common.run.errors import ConfigError, InputError
from common.formats import read_descriptions, read_scenes, read_story
from common.formats.story import Scene, SceneList
from common.pictures import prompts
from common.pictures.assets import check_scene_names, load_library, scene_sheet
from common.pictures.image_files import request_size
from common.pictures.stitch import Reference, check_stitch_settings, group_references, placements
from common.offline.cards import display_name
from common.config.paths import story_path

KIND_FOLDERS = {"character": "characters", "location": "locations", "scene": "scene"}
RETAKE_SEED_STEP = 7919  # a retake moves a fixed seed this far, so each take differs
PLAN_VERSION = 1  # bump when the same inputs should give a different picture
_MODES = ("IMAGE_TEXT", "TEXT", "IMAGE", "NONE")


@dataclass(frozen=True)
class Seed:
    value: int
    random: bool
    take: int
    retaken: bool


class SeedBook:
    """Chooses each item's seed from the settings, its previous checkpoint and the retake list."""

    def __init__(self, settings: Any, previous: Mapping[str, Entry], retake_ids: Collection[str] = ()) -> None:
        self.fixed = int(settings.FIXED_SEED)
        self.use_random = bool(settings.USE_RANDOM_SEED)
        self.previous = previous
        self.retake_ids = set(retake_ids)
        self.matched: set[str] = set()

    def choose(self, key: str, item_id: str, variation: int) -> Seed:
        hits = self.retake_ids & {key, item_id}
        self.matched |= hits
        retaken = bool(hits)
        entry = self.previous.get(key)
        data = entry.data if entry is not None else {}
        take = int(data.get("take", 0)) + (1 if retaken else 0)
        if self.use_random:
            if data.get("random_seed") and isinstance(data.get("seed"), int) and not retaken:
                return Seed(int(data["seed"]), True, take, retaken)
            return Seed(random.SystemRandom().randrange(1, 2**32), True, take, retaken)
        return Seed(self.fixed + (variation - 1) + RETAKE_SEED_STEP * take, False, take, retaken)


@dataclass(frozen=True)
class ImageItem:
    """One picture: what to ask for, where it goes, and everything that shapes it."""

    kind: str
    key: str  # checkpoint key and file stem: "male_doctor_watson", "male_doctor_watson.v2", "loc_1", "scene_1.2"
    item_id: str  # what retake.txt names: the tag, loc id or scene id
    variation: int
    order: int
    prompt: str
    caption: str  # offline cards: the description, or the scene's time and place
    width: int
    height: int
    seed: Seed
    out: Path
    clean: Path  # the engine's picture; differs from `out` when a name band is drawn on `out`
    name: str = ""  # NAME_OVERLAY text; "" = no band
    details: tuple[str, ...] = ()  # scenes: "tag: what they do" (offline cards draw the people)
    negative_prompt: str = ""
    start_image: Path | None = None
    start_denoise: float = 1.0
    groups: tuple[tuple[Reference, ...], ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # the settings that shaped it, for the review page

    @property
    def job_size(self) -> tuple[int, int]:
        return request_size((self.width, self.height))

    def identity(self) -> list[Any]:
        """What the picture depends on; Paths are hashed by content by `checkpoints.fingerprint`."""
        return [
            PLAN_VERSION, self.kind, self.key, self.prompt, self.caption, list(self.details), self.negative_prompt,
            self.width, self.height, "random" if self.seed.random else self.seed.value, self.name,
            self.start_image, self.start_denoise if self.start_image else None,
            [[[r.role, r.key, r.path, r.scale] for r in group] for group in self.groups],
            {k: v for k, v in sorted(self.settings.items()) if k in ("NAME_FONT_SCALE", "NAME_BAND_HEIGHT_RATIO")},
        ]


# ---------------------------------------------------------------- inputs

def read_description_map(input_dir: Path, kind: str, summary: bool, *, required: bool) -> tuple[dict[str, str], Path | None]:
    """input/3.<kind>.txt with USE_SUMMARY_TEXT, else input/2.<kind>.txt; the other one if that is missing."""
    names = (f"3.{kind}.txt", f"2.{kind}.txt") if summary else (f"2.{kind}.txt", f"3.{kind}.txt")
    path = next((input_dir / n for n in names if (input_dir / n).is_file()), None)
    if path is None:
        if required:
            raise InputError(f"{input_dir / f'2.{kind}.txt'} (or 3.{kind}.txt) is missing; run 1.story.py first, it writes both.")
        return {}, None
    return read_descriptions(path, kind).as_dict(), path


def read_scene_lines(pipeline_dir: Path) -> tuple[tuple[Scene, ...], Path | None]:
    """input/3.scene.txt, else the scene lines of the story itself; () when neither has any."""
    path = pipeline_dir / "input" / "3.scene.txt"
    if path.is_file():
        return read_scenes(path).scenes, path
    try:
        story = story_path(pipeline_dir)
    except InputError:
        return (), None
    return read_story(story).scenes(), story


def _modes(settings: Any) -> tuple[str, str]:
    for key in ("ACTIVE_CHARACTER_MODE", "ACTIVE_LOCATION_MODE"):
        if settings.get(key) not in _MODES:
            raise ConfigError(f"{key} is {settings.get(key)!r}; use one of {', '.join(_MODES)}.")
    return settings.ACTIVE_CHARACTER_MODE, settings.ACTIVE_LOCATION_MODE


def _variations(settings: Any, key: str) -> int:
    count = int(settings.get(key))
    if count < 1:
        raise ConfigError(f"{key} is {count}; make at least 1 picture per item.")
    return count


def _latent_file(input_dir: Path, name: str, size_key: str, size: str) -> Path:
    path = input_dir / name
    if not path.is_file():
        others = sorted(p.name for p in input_dir.glob(name.replace(f".{size}.png", ".*.png")))
        hint = f" ({', '.join(others)} exist: set {size_key} to match)" if others else ""
        raise InputError(f"LATENT_MODE is IMAGE but the start picture {path} is missing{hint}; "
                         "put one there or set LATENT_MODE to LATENT.")
    return path


def output_folder(pipeline_dir: Path, kind: str) -> Path:
    return pipeline_dir / "output" / KIND_FOLDERS[kind]


def picture_paths(pipeline_dir: Path, kind: str, key: str, overlay: bool) -> tuple[Path, Path]:
    """(final file, clean picture): the same file unless a name band is drawn on the final one."""
    folder = output_folder(pipeline_dir, kind)
    out = folder / f"{key}.png"
    return out, (folder / "clean" / f"{key}.png" if overlay else out)


def clean_picture(pipeline_dir: Path, kind: str, key: str, settings: Any) -> Path:
    """The picture a scene should use as reference or start: the clean one when NAME_OVERLAY is on."""
    return picture_paths(pipeline_dir, kind, key, bool(settings.NAME_OVERLAY) and kind != "scene")[1]


def _common(settings: Any) -> dict[str, Any]:
    return {"ART_STYLE": settings.ART_STYLE, "LATENT_MODE": settings.LATENT_MODE,
            "USE_SUMMARY_TEXT": settings.USE_SUMMARY_TEXT, "USE_RANDOM_SEED": settings.USE_RANDOM_SEED,
            "USE_LORA": settings.USE_LORA, "LORA_MODE": settings.LORA_MODE}


def _negative(settings: Any) -> str:
    return str(settings.NEGATIVE_PROMPT) if settings.USE_NEGATIVE_PROMPT else ""


def _variants(settings: Any, count_key: str, item_id: str) -> list[tuple[int, str]]:
    return [(v, item_id if v == 1 else f"{item_id}.v{v}") for v in range(1, _variations(settings, count_key) + 1)]


def _overlay_settings(settings: Any, used: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"NAME_OVERLAY": used}
    if used:
        out.update(NAME_FONT_SCALE=settings.NAME_FONT_SCALE, NAME_BAND_HEIGHT_RATIO=settings.NAME_BAND_HEIGHT_RATIO)
    return out


# ---------------------------------------------------------------- the three kinds

def _described_items(kind: str, settings: Any, pipeline_dir: Path, seeds: SeedBook, described: dict[str, str],
                     used: dict[str, Any], latent: tuple[str, str], size: tuple[int, int],
                     prompt: Callable[[str], str], name: Callable[[str], str]) -> list[ImageItem]:
    """A character's or location's pictures: one per variation of each description.

    `latent` is the LATENT_MODE IMAGE start picture's (file name, size setting)."""
    overlay = bool(settings.NAME_OVERLAY)
    used = {**_common(settings), **used, **_overlay_settings(settings, overlay)}
    start = None
    if settings.LATENT_MODE == "IMAGE":
        file_name, size_key = latent
        start = _latent_file(pipeline_dir / "input", file_name, size_key, settings.get(size_key))
        used.update({"LATENT_DENOISING_STRENGTH": settings.LATENT_DENOISING_STRENGTH, size_key: settings.get(size_key)})
    items = []
    for order, (item_id, description) in enumerate(described.items()):
        text = prompt(description)
        for variation, key in _variants(settings, f"VARIATIONS_PER_{kind.upper()}", item_id):
            out, clean = picture_paths(pipeline_dir, kind, key, overlay)
            items.append(ImageItem(
                kind, key, item_id, variation, order, text, description, *size,
                seeds.choose(key, item_id, variation), out, clean, name=name(item_id) if overlay else "",
                negative_prompt=_negative(settings), start_image=start,
                start_denoise=settings.LATENT_DENOISING_STRENGTH, settings=dict(used),
            ))
    return items


def character_items(settings: Any, pipeline_dir: Path, seeds: SeedBook) -> list[ImageItem]:
    described, source = read_description_map(pipeline_dir / "input", "character", settings.USE_SUMMARY_TEXT,
                                              required=True)
    part, size = ("face" if settings.FACE_ONLY else "body"), settings.CHARACTER_LATENT_SIZE
    return _described_items(
        "character", settings, pipeline_dir, seeds, described,
        {"FACE_ONLY": settings.FACE_ONLY, "source": source.name if source else None},
        (f"2.latent.character.{part}.{size}.png", "CHARACTER_LATENT_SIZE"),
        (settings.CHARACTER_WIDTH, settings.CHARACTER_HEIGHT),
        lambda text: prompts.character_prompt(settings.ART_STYLE, text, face_only=settings.FACE_ONLY,
                                              phrases=settings.EXTRA_PROMPT_PHRASES),
        display_name,
    )


def location_items(settings: Any, pipeline_dir: Path, seeds: SeedBook) -> list[ImageItem]:
    described, source = read_description_map(pipeline_dir / "input", "location", settings.USE_SUMMARY_TEXT,
                                              required=True)
    # A place the scene lines use but the file does not describe still gets a picture, from the
    # story's own `{{loc_N, description}}` when it gives one.
    scenes, _ = read_scene_lines(pipeline_dir)
    for scene in scenes:
        if scene.location_id and scene.location_id not in described:
            if not scene.location_description:
                raise InputError(f"scene {scene.scene_id} uses {scene.location_id} but {source} does not describe it; "
                                 "run 1.story.py again or add a line for it.")
            described[scene.location_id] = scene.location_description
    return _described_items(
        "location", settings, pipeline_dir, seeds, described, {"source": source.name if source else None},
        (f"2.latent.location.{settings.LOCATION_LATENT_SIZE}.png", "LOCATION_LATENT_SIZE"),
        (settings.IMAGE_WIDTH, settings.IMAGE_HEIGHT),
        lambda text: prompts.location_prompt(settings.ART_STYLE, text, phrases=settings.EXTRA_PROMPT_PHRASES),
        lambda loc_id: loc_id,
    )


def scene_items(settings: Any, pipeline_dir: Path, seeds: SeedBook) -> list[ImageItem]:
    input_dir = pipeline_dir / "input"
    scenes, source = read_scene_lines(pipeline_dir)
    if not scenes:
        raise InputError(f"{input_dir / '3.scene.txt'} is missing and the story has no scene lines; run 1.story.py first.")
    character_mode, location_mode = _modes(settings)
    check_stitch_settings(settings.IMAGE_STITCH_COUNT, settings.CHARACTER_RESIZE_FACTOR)
    library = load_library(pipeline_dir)  # None: no asset library, the pictures are made as before it existed
    if library is not None:
        check_scene_names(library, scenes, source or input_dir / "3.scene.txt")
    objects = {k: o.description for k, o in library.objects.items()} if library is not None else {}
    summary = settings.USE_SUMMARY_TEXT
    characters, _ = read_description_map(input_dir, "character", summary, required=False)
    locations, _ = read_description_map(input_dir, "location", summary, required=False)
    inline = SceneList(scenes).locations()  # each place's first description in the scene lines
    factor = float(settings.CHARACTER_RESIZE_FACTOR)
    used = {**_common(settings), "source": source.name if source else None, "ACTIVE_CHARACTER_MODE": character_mode,
            "ACTIVE_LOCATION_MODE": location_mode}
    if "IMAGE" in character_mode or "IMAGE" in location_mode:
        used.update(IMAGE_STITCH_COUNT=settings.IMAGE_STITCH_COUNT, CHARACTER_RESIZE_FACTOR=factor)
    if "IMAGE" in character_mode and library is not None:
        used.update(CHARACTER_REFERENCE=settings.CHARACTER_REFERENCE, CHARACTER_SHEETS=settings.CHARACTER_SHEETS)
    if "TEXT" in character_mode or "TEXT" in location_mode:
        used.update(CHARACTER_WORD_LIMIT=settings.CHARACTER_WORD_LIMIT, LOCATION_WORD_LIMIT=settings.LOCATION_WORD_LIMIT)
    if settings.LATENT_MODE == "IMAGE":
        used.update(LATENT_DENOISING_STRENGTH=settings.LATENT_DENOISING_STRENGTH)
    items = []
    for order, scene in enumerate(scenes):
        cast = prompts.scene_cast(scene)
        refs: list[Reference] = []
        if "IMAGE" in character_mode:
            for character in cast:
                # With an asset library the character's sheet conditions the picture (CHARACTER_REFERENCE).
                sheet = scene_sheet(pipeline_dir, settings, library, character.tag)
                if sheet is None or settings.CHARACTER_REFERENCE == "both":
                    path = clean_picture(pipeline_dir, "character", character.tag, settings)
                    if not path.is_file():
                        raise InputError(f"{path} ({character.tag} in {scene.scene_id}) is missing; run 2.character.py "
                                         "first, or set ACTIVE_CHARACTER_MODE to TEXT.")
                    refs.append(Reference("character", character.tag, path, factor))
                if sheet is not None:
                    refs.append(Reference("sheet", character.tag, sheet, factor))
        location_picture = None
        if scene.location_id and ("IMAGE" in location_mode or settings.LATENT_MODE == "IMAGE"):
            location_picture = clean_picture(pipeline_dir, "location", scene.location_id, settings)
            if not location_picture.is_file():
                mode_key = "ACTIVE_LOCATION_MODE" if "IMAGE" in location_mode else "LATENT_MODE"
                raise InputError(f"{location_picture} ({scene.location_id} in {scene.scene_id}) is missing; run 2.location.py "
                                 f"first, or set {mode_key} to {'TEXT' if mode_key == 'ACTIVE_LOCATION_MODE' else 'LATENT'}.")
            if "IMAGE" in location_mode:
                refs.append(Reference("location", scene.location_id, location_picture, 1.0))
        groups = group_references(refs, settings.IMAGE_STITCH_COUNT)
        place_text = locations.get(scene.location_id or "") or inline.get(scene.location_id or "")
        prompt = prompts.scene_prompt(
            settings.ART_STYLE, scene, place_text=place_text, character_texts=characters, placements=placements(groups),
            character_mode=character_mode, location_mode=location_mode,
            character_word_limit=settings.CHARACTER_WORD_LIMIT, location_word_limit=settings.LOCATION_WORD_LIMIT,
            phrases=settings.EXTRA_PROMPT_PHRASES, object_texts=objects,
        )
        place = f"{scene.location_id}: {place_text}" if scene.location_id and place_text else (scene.location_id or "")
        caption = "; ".join(p for p in (prompts.setting_words(scene), place) if p)
        details = tuple(f"{c.tag}: {prompts.scene_action(c)}" for c in cast)
        start = location_picture if settings.LATENT_MODE == "IMAGE" else None
        for variation, key in _variants(settings, "VARIATIONS_PER_SCENE", scene.scene_id):
            out, clean = picture_paths(pipeline_dir, "scene", key, False)
            items.append(ImageItem(
                "scene", key, scene.scene_id, variation, order, prompt, caption, settings.IMAGE_WIDTH,
                settings.IMAGE_HEIGHT, seeds.choose(key, scene.scene_id, variation), out, clean,
                details=details, negative_prompt=_negative(settings), start_image=start,
                start_denoise=settings.LATENT_DENOISING_STRENGTH, groups=groups, settings=dict(used),
            ))
    return items


BUILDERS = {"character": character_items, "location": location_items, "scene": scene_items}


def plan_items(kind: str, settings: Any, pipeline_dir: Path, seeds: SeedBook) -> list[ImageItem]:
    """Every picture of one kind ('character', 'location' or 'scene'), in description order."""
    return BUILDERS[kind](settings, pipeline_dir, seeds)

