"""Character sheets: each character of the asset library drawn front, three-quarter and with the
expressions the story gives them, in one picture every later picture of them is conditioned on.

2.character.py makes them after the character pictures: one engine job per panel (through the
same passes as every picture, common.pictures.passes), the panel following the character's own
picture as its reference image (ComfyUI: the Kontext scene workflow), then the panels composed
with Pillow into a labelled grid, `output/sheets/<tag>.png`; the panels stay in
`output/sheets/panels/<tag>.<n>.<label>.png`. The offline engine draws each panel as the
character's card with the view or expression as its title, in the character's identity colour.

Checkpoints (2.character.py's file): the sheet is the item, `sheet:<tag>`, fingerprinted by the
character's entry (name, description, expressions), the style bible, the character's picture, the
size and the seed, so editing one character in assets.json redoes that sheet alone; each finished
panel is checkpointed on its own (`sheet:<tag>#panel<n>`) until its sheet is done, so a kill costs
at most the panel in flight. A `sheet` field the user pointed elsewhere is their own sheet: used,
never drawn.

3.scene.py takes the sheet as a character's reference picture (`scene_reference`), instead of or
beside the character's picture as CHARACTER_REFERENCE says, whenever input/assets.json exists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw

from common.engines.base import ImageEngine, ImageRequest
from common.engines.registry import get_engine
from common.formats.assets import AssetLibrary, CharacterAsset, StyleAsset
from common.pictures import prompts
from common.pictures.assets import load_library, own_sheet, sheet_file, user_sheet
from common.pictures.image_files import fit_picture, request_size, save_png
from common.pictures.passes import PassJob, PassSpec, plan_passes, run_passes
from common.pictures.plan import Seed, SeedBook, clean_picture
from common.pictures.text_fit import draw_fitted, fit_text
from common.run.errors import ConfigError
from common.state.checkpoints import CheckpointStore, fingerprint

SHEET_VERSION = 1
PREFIX = "sheet:"
REFERENCE_MODES = ("sheet", "picture", "both")
_LABEL_RATIO = 0.08  # height of the label strip under each panel, as a share of the panel's


@dataclass(frozen=True)
class Panel:
    number: int  # 1-based, the order on the sheet
    view: str  # a key of prompts.SHEET_VIEWS: "front", "three-quarter", "expression"
    expression: str | None = None

    @property
    def label(self) -> str:
        return self.expression or self.view

    @property
    def slug(self) -> str:
        return "-".join("".join(c if c.isalnum() else " " for c in self.label.lower()).split()) or self.view


def panels_for(character: CharacterAsset, most_expressions: int) -> tuple[Panel, ...]:
    """Front, three-quarter, then the story's most frequent expressions (at most `most_expressions`)."""
    views = [Panel(1, "front"), Panel(2, "three-quarter")]
    views += [Panel(3 + n, "expression", e) for n, e in enumerate(character.expressions[:max(0, most_expressions)])]
    return tuple(views)


@dataclass(frozen=True)
class SheetItem:
    """One character's sheet: everything it depends on, and where its panels and picture go."""

    tag: str
    character: CharacterAsset
    style: StyleAsset
    panels: tuple[Panel, ...]
    out: Path
    panel_dir: Path
    reference: Path | None  # the character's clean picture the panels follow; None: not drawn (yet)
    width: int  # one panel's size
    height: int
    columns: int
    seed: Seed
    order: int
    phrases: tuple[str, ...] = ()
    negative_prompt: str = ""

    @property
    def key(self) -> str:
        return PREFIX + self.tag

    def panel_path(self, panel: Panel) -> Path:
        return self.panel_dir / f"{self.tag}.{panel.number}.{panel.slug}.png"

    def prompt(self, panel: Panel) -> str:
        c = self.character
        return prompts.sheet_panel_prompt(self.style.prompt_text(), self.style.art_style or "the story", c.name or c.key,
                                          c.description, panel.view, panel.expression,
                                          referenced=self.reference is not None, phrases=self.phrases)

    def identity(self) -> list[Any]:
        c = self.character
        return [SHEET_VERSION, self.tag, c.name, c.description, c.gender, [p.label for p in self.panels],
                [self.style.art_style, list(self.style.palette), self.style.lens, self.style.lighting, self.style.mood],
                self.reference, self.width, self.height, self.columns, "random" if self.seed.random else self.seed.value,
                list(self.phrases), self.negative_prompt]


def _check_settings(settings: Any) -> None:
    if settings.CHARACTER_REFERENCE not in REFERENCE_MODES:
        raise ConfigError(f"CHARACTER_REFERENCE is {settings.CHARACTER_REFERENCE!r}; use one of {', '.join(REFERENCE_MODES)}.")
    if int(settings.SHEET_COLUMNS) < 1 or int(settings.SHEET_EXPRESSIONS) < 0:
        raise ConfigError(f"SHEET_COLUMNS is {settings.SHEET_COLUMNS} and SHEET_EXPRESSIONS {settings.SHEET_EXPRESSIONS}; "
                          "use at least 1 column and 0 or more expressions.")


def plan_sheets(settings: Any, pipeline_dir: Path, library: AssetLibrary, seeds: SeedBook) -> list[SheetItem]:
    """A sheet for every character of the library whose sheet this step draws."""
    _check_settings(settings)
    width, height = int(settings.CHARACTER_WIDTH), int(settings.CHARACTER_HEIGHT)
    items = []
    for order, character in enumerate(library.characters.values()):
        if user_sheet(pipeline_dir, library, character) is not None:
            continue
        panels = panels_for(character, int(settings.SHEET_EXPRESSIONS))
        reference = clean_picture(pipeline_dir, "character", character.key, settings)
        key = PREFIX + character.key
        items.append(SheetItem(
            character.key, character, library.style, panels, sheet_file(pipeline_dir, own_sheet(character.key)),
            pipeline_dir / "output" / "sheets" / "panels", reference if reference.is_file() else None, width, height,
            min(int(settings.SHEET_COLUMNS), len(panels)), seeds.choose(key, key, 1), order,
            tuple(settings.EXTRA_PROMPT_PHRASES),
            str(settings.NEGATIVE_PROMPT) if settings.USE_NEGATIVE_PROMPT else ""))
    return items


def compose(item: SheetItem, pictures: Sequence[Path]) -> tuple[int, int]:
    """The panels in a grid, each with its label on a strip beneath it, written atomically; returns its size."""
    strip = max(18, round(item.height * _LABEL_RATIO))
    rows = math.ceil(len(pictures) / item.columns)
    sheet = Image.new("RGB", (item.columns * item.width, rows * (item.height + strip)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (panel, path) in enumerate(zip(item.panels, pictures)):
        x, y = (index % item.columns) * item.width, (index // item.columns) * (item.height + strip)
        with Image.open(path) as img:
            sheet.paste(img.convert("RGB").resize((item.width, item.height)), (x, y))
        fitted = fit_text(panel.label.upper(), item.width - 8, strip - 2, max_size=round(strip * 0.6),
                          min_size=8, bold=True)
        draw_fitted(draw, fitted, x, y + item.height + (strip - fitted.height) // 2, (20, 20, 20), align="center",
                    box_width=item.width)
    save_png(sheet, item.out)
    return sheet.size


def make_sheet(engine: ImageEngine, item: SheetItem, passes: tuple[PassSpec, ...], store: CheckpointStore,
               pipeline_dir: Path, item_fp: str) -> tuple[list[Path], dict[str, Any]]:
    """Every panel not yet checkpointed (one job each, or one per LoRA pass), then the composed sheet."""
    def rel(path: Path) -> str:
        try:
            return path.resolve().relative_to(pipeline_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    job_size = request_size((item.width, item.height))
    pictures, records = [], []
    for panel in item.panels:
        path = item.panel_path(panel)
        panel_key, panel_fp = f"{item.key}#panel{panel.number}", fingerprint(item_fp, panel.number, panel.label)
        if store.lookup(panel_key, panel_fp) is None:
            request = ImageRequest("sheet", item.tag, item.prompt(panel), *job_size, item.seed.value,
                                   negative_prompt=item.negative_prompt, title=panel.label, details=(panel.label,),
                                   caption=item.character.description or item.character.name)
            refs = (item.reference,) if item.reference is not None else ()
            job = PassJob(f"{item.key}.{panel.number}", panel_fp, request, None, 1.0, refs, path,
                          pipeline_dir / "output" / "lora")
            records.append({"panel": panel.label, "passes": run_passes(engine, job, passes, store, rel)})
            fit_picture(path, (item.width, item.height))
            store.record(panel_key, panel_fp, files=[path], data={"panel": panel.label}, preview=engine.preview)
        pictures.append(path)
    width, height = compose(item, pictures)
    front = item.panels[0]
    data = {"kind": "sheet", "item_id": item.tag, "variation": 1, "order": item.order, "prompt": item.prompt(front),
            "negative_prompt": item.negative_prompt, "caption": item.character.description,
            "seed": item.seed.value, "random_seed": item.seed.random, "take": item.seed.take,
            "width": width, "height": height,
            "panels": [{"number": p.number, "label": p.label, "view": p.view, "file": rel(path)}
                       for p, path in zip(item.panels, pictures)],
            "references": [rel(item.reference)] if item.reference is not None else [],
            "passes": records[0]["passes"] if records else [], "settings": {"SHEET_COLUMNS": item.columns}}
    return [item.out, *pictures], data


def _remove_stale(store: CheckpointStore, keys: set[str], pipeline_dir: Path) -> list[str]:
    """Sheets of characters no longer in the library: their files and entries; finished sheets' panel entries."""
    folder = (pipeline_dir / "output" / "sheets").resolve()
    removed = []
    for key, entry in store.entries().items():
        if not key.startswith(PREFIX):
            continue
        sheet = key.split("#", 1)[0]
        done = store.entries().get(sheet)
        if sheet in keys and "#" in key and done is not None and done.status == "done":
            store.forget(key)  # its sheet is done: the panel's own checkpoint has served
        elif sheet not in keys:
            for name in entry.files:
                path = (pipeline_dir / name).resolve()
                if folder in path.parents:
                    path.unlink(missing_ok=True)
            store.forget(key)
            if "#" not in key:
                removed.append(key.removeprefix(PREFIX))
    return removed


def run_sheets(ctx: Any) -> None:
    """2.character.py's second part: a sheet per character of input/assets.json (none without a library)."""
    settings = ctx.settings
    library = load_library(ctx.pipeline_dir)
    store: CheckpointStore = ctx.checkpoints()
    if library is None:  # no library (any more): no sheets, and none left over for 3.scene.py to take
        removed = _remove_stale(store, set(), ctx.pipeline_dir)
        ctx.say("character sheets: none, there is no input/assets.json (1.story.py writes it)"
                + (f"; removed the old sheets of {', '.join(removed)}" if removed else ""))
        return
    if not settings.CHARACTER_SHEETS:
        ctx.say("character sheets: none, CHARACTER_SHEETS is off")
        return
    seeds = SeedBook(settings, store.entries())
    items = plan_sheets(settings, ctx.pipeline_dir, library, seeds)
    own = [c.key for c in library.characters.values() if user_sheet(ctx.pipeline_dir, library, c) is not None]
    engine = get_engine("image", settings, ctx.pipeline_dir)
    passes = plan_passes(settings)
    prints = {item.key: fingerprint(engine.identity(), [p.describe() for p in passes], item.identity()) for item in items}
    if items:
        ctx.say(f"{len(items)} character sheet(s): {len(items[0].panels)}+ panels of {items[0].width}x{items[0].height} "
                f"each (front, three-quarter, up to {settings.SHEET_EXPRESSIONS} expressions), engine {engine.name}")
    if own:
        ctx.say(f"your own sheets, used as they are: {', '.join(own)}")
    ctx.each(items, label="sheets", key=lambda i: i.key, fingerprint=lambda i: prints[i.key],
             work=lambda i: make_sheet(engine, i, passes, store, ctx.pipeline_dir, prints[i.key]),
             preview=engine.preview, workers=engine.parallel_jobs)
    removed = _remove_stale(store, {i.key for i in items}, ctx.pipeline_dir)
    if removed:
        ctx.say(f"removed the sheet(s) of {', '.join(removed)}, no longer in {library.source}")
