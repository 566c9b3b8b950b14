"""Layered keyframes (KEYFRAME_MODE = "layered"): what each scene picture is made of, planned from the story.

One job per scene (the stitched mode) asks the model to invent the place and keep every face at
once, and the place drifts from shot to shot. Here a scene picture is made in layers, each kept on
disk and each checkpointed on its own (common.pictures.keyframes makes them):

1. a background **plate** per place and time of day: the asset library's location (its description
   and its light at that time), the style bible, no people (Qwen-Image; offline, the place's card).
   Every scene at that place and time shares it. A new plate of a place already shown starts from
   that place's latest plate with PLATE_CHAIN_DENOISE (the previous scene's plate when the place
   continues), so the place stays the same while the light changes.
2. each character **posed** alone as the scene line says (expression, pose, action, what they hold),
   following their character sheet and the sheet's panel with that expression (Qwen-Image-Edit;
   offline, that panel cut out).
3. the **composite**: Qwen-Image-Edit with the plate as image 1 and up to two posed characters as
   images 2 and 3, each told where to stand; more characters take further passes, each starting from
   the picture so far. A scene without characters is its plate.

Files: output/layers/plates/<loc>.<time>.png, and per scene picture output/layers/<scene>/plate.png
(a copy), <tag>.png per character, composite.<n>.png per pass before the last, composite.png; the
scene picture itself is still output/scene/<scene>.png. Fingerprints: a plate's covers its place's
entry, its time, the style and the plate it starts from; a pose's its character's sheet (by
content) and words; a scene's all of its layers'. So editing one place redoes only its plates and
the composites on them, and editing one character only their poses and the composites with them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from common.engines.base import ImageRequest
from common.formats.assets import AssetLibrary
from common.formats.story import Scene, SceneCharacter, SceneList
from common.offline.cards import display_name
from common.pictures import prompts
from common.pictures.asset_facts import scene_time
from common.pictures.assets import check_scene_names, load_library, own_sheet, scene_sheet, sheet_file
from common.pictures.plan import (
    ImageItem, Seed, SeedBook, _common, _negative, _variants, clean_picture, picture_paths, read_description_map,
    read_scene_lines,
)
from common.pictures.sheets import sheet_panel
from common.pictures.stitch import position_words
from common.pictures.story_visuals import appearance
from common.run.errors import ConfigError, InputError

VERSION = 1  # bump when the same inputs should give different layers
PLATE_PREFIX = "plate:"
POSE_PREFIX = "pose:"
PER_PASS = 2  # characters per composite pass: with the plate, three pictures (Qwen-Image-Edit's best)
LAYERS_FOLDER = ("output", "layers")
PLATES = "plates"
_FEET = 0.97  # where everyone stands, as a fraction of the picture's height
_TALLEST = 0.78  # the largest share of the picture's height one person takes


@dataclass(frozen=True)
class Plate:
    """A place alone at one time of day; `parent` is the plate it starts from (None: from nothing)."""

    key: str  # "plate:loc_1@night"
    place: str  # loc_<n>, or the scene id of a scene with no place
    time: str  # common.pictures.asset_facts.TIMES or "unspecified"
    prompt: str
    caption: str
    width: int
    height: int
    seed: Seed
    out: Path
    order: int
    negative_prompt: str = ""
    parent: "Plate | None" = None
    denoise: float = 1.0

    def identity(self) -> list[Any]:
        """Everything the plate's picture depends on, the plate it starts from included."""
        return [VERSION, self.place, self.time, self.prompt, self.caption, self.width, self.height, self.negative_prompt,
                "random" if self.seed.random else self.seed.value,
                self.parent.identity() if self.parent else None, self.denoise if self.parent else None]

    def request(self, seed: int, job_size: tuple[int, int]) -> ImageRequest:
        start = self.parent.out if self.parent is not None else None
        return ImageRequest("plate", self.place, self.prompt, *job_size, seed, negative_prompt=self.negative_prompt,
                            title=self.time, caption=self.caption, input_image=start,
                            denoise=self.denoise if start is not None else None)


@dataclass(frozen=True)
class Pose:
    """One character of a scene, posed alone from their sheet."""

    tag: str
    prompt: str
    caption: str  # their description (what an offline layer would show)
    words: tuple[str, ...]  # pose and action, written on the offline layer
    references: tuple[Path, ...]  # their sheet (and its panel with the expression), else their picture
    width: int
    height: int

    def identity(self) -> list[Any]:
        return [self.tag, self.prompt, self.caption, list(self.words), list(self.references), self.width, self.height]

    def request(self, seed: int, job_size: tuple[int, int], negative: str) -> ImageRequest:
        return ImageRequest("pose", self.tag, self.prompt, *job_size, seed, negative_prompt=negative,
                            details=self.words, caption=self.caption, reference_images=self.references)


@dataclass(frozen=True)
class CompositePass:
    """One Qwen-Image-Edit job: image 1 (the plate, or the picture so far) and these characters' poses."""

    number: int
    tags: tuple[str, ...]
    prompt: str
    layout: tuple[tuple[float, float, float], ...]  # (centre x, feet y, height) of each, fractions of the picture

    def identity(self) -> list[Any]:
        return [self.number, list(self.tags), self.prompt, [list(place) for place in self.layout]]

    def request(self, scene_id: str, base: Path, poses: Sequence[Path], seed: int, job_size: tuple[int, int],
                negative: str, caption: str) -> ImageRequest:
        return ImageRequest("composite", scene_id, self.prompt, *job_size, seed, negative_prompt=negative, title=scene_id,
                            caption=caption, reference_images=(base, *poses), layout=self.layout)


@dataclass(frozen=True)
class LayeredPlan:
    """A scene picture's layers: `ImageItem.layers` in layered mode."""

    plate: Plate
    poses: tuple[Pose, ...]
    passes: tuple[CompositePass, ...]

    def identity(self) -> list[Any]:
        return [VERSION, self.plate.identity(), [p.identity() for p in self.poses], [c.identity() for c in self.passes]]


def layers_folder(pipeline_dir: Path) -> Path:
    return Path(pipeline_dir).joinpath(*LAYERS_FOLDER)


def layout(count: int, picture: tuple[int, int], pose: tuple[int, int]) -> tuple[tuple[float, float, float], ...]:
    """Where `count` people stand, left to right in the order the line names them: evenly spaced,
    feet on one line, as tall as their share of the width allows."""
    if count < 1:
        return ()
    share = 0.92 / count * (picture[0] / picture[1]) / (pose[0] / pose[1])
    tall = round(min(_TALLEST, share), 4)
    return tuple((round((slot + 0.5) / count, 4), _FEET, tall) for slot in range(count))


def _chain_denoise(settings: Any) -> float:
    value = float(settings.PLATE_CHAIN_DENOISE)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"PLATE_CHAIN_DENOISE is {settings.PLATE_CHAIN_DENOISE}; use a value above 0 and at most 1.")
    return value


class _Texts:
    """Where the words of every layer come from: the asset library, else the description files."""

    def __init__(self, settings: Any, pipeline_dir: Path, scenes: tuple[Scene, ...],
                 library: AssetLibrary | None) -> None:
        summary = settings.USE_SUMMARY_TEXT
        input_dir = pipeline_dir / "input"
        self.library = library
        self.characters, _ = read_description_map(input_dir, "character", summary, required=False)
        self.places, _ = read_description_map(input_dir, "location", summary, required=False)
        self.inline = SceneList(scenes).locations()
        self.objects = {k: o.description for k, o in library.objects.items()} if library is not None else {}
        self.style = library.style.prompt_text() if library is not None else ""

    def place(self, loc: str) -> str:
        if self.library is not None and loc in self.library.locations and self.library.locations[loc].description:
            return self.library.locations[loc].description
        return self.places.get(loc) or self.inline.get(loc) or ""

    def lighting(self, loc: str, time: str) -> str:
        entry = self.library.locations.get(loc) if self.library is not None else None
        return entry.lighting.get(time, "") if entry is not None else ""

    def who(self, tag: str) -> tuple[str, str]:
        """(name, identity description) of a character."""
        entry = self.library.characters.get(tag) if self.library is not None else None
        if entry is not None:
            return entry.name or display_name(tag), entry.description or self.characters.get(tag, "")
        return display_name(tag), self.characters.get(tag, "")


def _pose_references(settings: Any, pipeline_dir: Path, library: AssetLibrary | None, tag: str, expression: str,
                     scene: Scene) -> tuple[Path, ...]:
    """The character's sheet and its panel with the scene's expression; without a sheet, their picture."""
    sheet = scene_sheet(pipeline_dir, settings, library, tag)
    if sheet is None:
        picture = clean_picture(pipeline_dir, "character", tag, settings)
        if not picture.is_file():
            raise InputError(f"{picture} ({tag} in {scene.scene_id}) is missing, and KEYFRAME_MODE layered poses every "
                             "character from their sheet or picture; run 2.character.py first.")
        return (picture,)
    own = library is not None and sheet == sheet_file(pipeline_dir, own_sheet(tag))
    panel = sheet_panel(pipeline_dir, settings, library.characters[tag], expression) if own and library else None
    return (sheet, panel) if panel is not None else (sheet,)


def _pose(settings: Any, pipeline_dir: Path, texts: _Texts, scene: Scene, character: SceneCharacter) -> Pose:
    seen = appearance(scene, character)
    name, description = texts.who(character.tag)
    expression, pose, action = (", ".join(v) for v in (seen.expression, seen.pose, seen.action))
    references = _pose_references(settings, pipeline_dir, texts.library, character.tag, expression, scene)
    prompt = prompts.pose_prompt(
        settings.ART_STYLE, name, description, expression=expression, pose=pose, action=action,
        held=prompts.things_text(character.objects, texts.objects), panel=len(references) > 1,
        style_text=texts.style, phrases=settings.EXTRA_PROMPT_PHRASES)
    return Pose(character.tag, prompt, description, tuple(w for w in (pose, action) if w), references,
                int(settings.CHARACTER_WIDTH), int(settings.CHARACTER_HEIGHT))


def _passes(settings: Any, texts: _Texts, scene: Scene, cast: list[SceneCharacter]) -> tuple[CompositePass, ...]:
    size = (int(settings.IMAGE_WIDTH), int(settings.IMAGE_HEIGHT))
    places = layout(len(cast), size, (int(settings.CHARACTER_WIDTH), int(settings.CHARACTER_HEIGHT)))
    passes = []
    for number, start in enumerate(range(0, len(cast), PER_PASS), start=1):
        group = cast[start:start + PER_PASS]
        people = [(texts.who(c.tag)[0], position_words(start + k + 1, len(cast)), prompts.scene_action(c))
                  for k, c in enumerate(group)]
        prompt = prompts.composite_prompt(
            settings.ART_STYLE, people, first=number == 1, setting=prompts.setting_words(scene),
            things=prompts.things_text(scene.objects, texts.objects) if number == 1 else "",
            style_text=texts.style, phrases=settings.EXTRA_PROMPT_PHRASES)
        passes.append(CompositePass(number, tuple(c.tag for c in group), prompt, places[start:start + PER_PASS]))
    return tuple(passes)


def plan_layered(settings: Any, pipeline_dir: Path, seeds: SeedBook) -> tuple[list[ImageItem], list[Plate]]:
    """Every scene picture with its layers (`ImageItem.layers`), and the plates they share, in story order."""
    pipeline_dir = Path(pipeline_dir)
    scenes, source = read_scene_lines(pipeline_dir)
    if not scenes:
        raise InputError(f"{pipeline_dir / 'input' / '3.scene.txt'} is missing and the story has no scene lines; "
                         "run 1.story.py first.")
    denoise = _chain_denoise(settings)
    library = load_library(pipeline_dir)
    if library is not None:
        check_scene_names(library, scenes, source or pipeline_dir / "input" / "3.scene.txt")
    texts = _Texts(settings, pipeline_dir, scenes, library)
    size = (int(settings.IMAGE_WIDTH), int(settings.IMAGE_HEIGHT))
    negative = _negative(settings)
    used = {**_common(settings), "source": source.name if source else None, "KEYFRAME_MODE": "layered",
            "PLATE_CHAIN_DENOISE": denoise, "CHARACTER_REFERENCE": settings.CHARACTER_REFERENCE,
            "CHARACTER_SHEETS": settings.CHARACTER_SHEETS}
    plates: dict[str, Plate] = {}
    latest: dict[str, Plate] = {}  # place -> its most recent plate, in story order
    items: list[ImageItem] = []
    for order, scene in enumerate(scenes):
        place, time = scene.location_id or scene.scene_id, scene_time(scene)
        key = f"{PLATE_PREFIX}{place}@{time}"
        if key not in plates:
            description = texts.place(scene.location_id) if scene.location_id else ""
            lighting = texts.lighting(place, time)
            parent = latest.get(place) if scene.location_id else None
            plates[key] = Plate(
                key, place, time,
                prompts.plate_prompt(settings.ART_STYLE, description, time=time, lighting=lighting,
                                     setting=prompts.setting_words(scene), style_text=texts.style,
                                     phrases=settings.EXTRA_PROMPT_PHRASES),
                " ".join(p for p in (description, lighting) if p) or prompts.setting_words(scene) or place,
                *size, seeds.choose(key, key, 1), layers_folder(pipeline_dir) / PLATES / f"{place}.{time}.png",
                len(plates), negative, parent, denoise)
        plate = latest[place] = plates[key]
        cast = prompts.scene_cast(scene)
        layered = LayeredPlan(plate, tuple(_pose(settings, pipeline_dir, texts, scene, c) for c in cast),
                              _passes(settings, texts, scene, cast))
        where = f"{scene.location_id}: {texts.place(scene.location_id)}" if scene.location_id else ""
        caption = "; ".join(p for p in (prompts.setting_words(scene), where) if p)
        prompt = "\n\n".join(c.prompt for c in layered.passes) or plate.prompt
        details = tuple(f"{c.tag}: {prompts.scene_action(c)}" for c in cast)
        for variation, item_key in _variants(settings, "VARIATIONS_PER_SCENE", scene.scene_id):
            out, clean = picture_paths(pipeline_dir, "scene", item_key, False)
            items.append(ImageItem("scene", item_key, scene.scene_id, variation, order, prompt, caption, *size,
                                   seeds.choose(item_key, scene.scene_id, variation), out, clean, details=details,
                                   negative_prompt=negative, settings=dict(used), layers=layered))
    return items, list(plates.values())


def job_count(items: list[ImageItem], plates: list[Plate]) -> tuple[int, int, int]:
    """(plates, poses, composite passes) a full run of these items makes."""
    return (len(plates), sum(len(i.layers.poses) for i in items),
            sum(math.ceil(len(i.layers.poses) / PER_PASS) for i in items))
