"""The identity judges: who scores a candidate against the characters' sheets (common.pictures.identity).

- `VisionJudge`: the LLM server's vision model (IDENTITY_JUDGE_MODEL, else MODEL_MOTION_GENERATION,
  the model 2.motion.py already uses) is shown the candidate (or a clip's first, middle and last
  frames) and every character's sheet, told the scene line, and answers one JSON object: per
  character a score from 0 to 1 and one line of reason. Pictures are sent at most MAX_SIDE pixels
  on their long side: a sheet is large, and a vision model sees no more than that anyway.
- `CardJudge`: model-free, for the offline engine's storyboard cards, which draw every character as
  a silhouette in its identity colour (common.offline.cards.identity_colour), on its sheet and in
  every scene alike. It counts the pixels of that colour in each picture (each pixel for the
  nearest colour of the scene's characters, so two similar colours are still told apart): a
  figure covers well over FOUND of a card, so a character drawn nowhere scores 0.

`choose_judge` picks one from IDENTITY_JUDGE: `auto` judges cards by their colours and real pictures
by the vision model, or not at all when the run has no LLM server or it does not answer (said
once, never an error: unjudged pictures are still the night's work); `vision` insists on it.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from common.pictures.identity import Judge, Policy, Subject, Verdict
from common.run.errors import ConfigError, ServiceError

PROMPT_VERSION = 1
MAX_SIDE = 1024
REASON_CHARS = 200
JUDGE_SYSTEM = ("You are the continuity supervisor of an illustrated story. You compare the people in a picture "
                "with their character sheets and say, for each character, how surely the picture shows that same "
                "character: the same face, hair, build, clothes and colours.")


# ---------------------------------------------------------------- the vision model

def judge_schema(tags: Sequence[str]) -> dict[str, Any]:
    """One property per character, so every character gets exactly one score (the tags are the story's)."""
    one = {"type": "object", "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1},
                                            "reason": {"type": "string", "maxLength": REASON_CHARS}},
           "required": ["score", "reason"], "additionalProperties": False}
    return {"type": "object", "properties": {tag: one for tag in tags}, "required": list(tags),
            "additionalProperties": False}


def judge_question(subject: Subject, views: int) -> tuple[str, list[int]]:
    """The question's text, and for each character the number of its sheet among the images (0: none)."""
    shown = "Image 1 is the picture to judge." if views == 1 else \
        f"Images 1 to {views} are {subject.views}, to judge together: a character must stay the same in every one."
    lines = [f"Scene {subject.label}: {subject.scene}", shown]
    numbers: list[int] = []
    image = views + 1
    for member in subject.cast:
        words = f"{member.tag} ({member.name}){': ' + member.description if member.description else ''}"
        if member.reference is not None:
            numbers.append(image)
            lines.append(f"Image {image} is the character sheet of {words}.")
            image += 1
        else:
            numbers.append(0)
            lines.append(f"{words} has no sheet: judge by these words alone.")
    lines.append("For each character give a score from 0 (not in the picture, or someone else) to 1 (clearly the "
                 "same character as on the sheet, doing what the scene says), and one short line saying why.")
    return "\n".join(lines), numbers


def _small(path: Path, folder: Path, number: int) -> Path:
    """A copy at most MAX_SIDE pixels long, as JPEG (a sheet's PNG can be megabytes)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((MAX_SIDE, MAX_SIDE))
        out = folder / f"{number}.jpg"
        img.save(out, format="JPEG", quality=90)
    return out


@dataclass
class VisionJudge:
    """The LLM server's vision model as judge; every answer checked against the schema and the range."""

    client: Any  # common.services.llm.LLMClient
    model: str
    name: str = "vision"
    preview: bool = False

    def identity(self) -> dict[str, Any]:
        return {"judge": "vision", "model": self.model, "prompts": PROMPT_VERSION, "max_side": MAX_SIDE}

    def judge(self, views: Sequence[Path], subject: Subject) -> Verdict:
        tags = [m.tag for m in subject.cast]
        prompt, _ = judge_question(subject, len(views))
        with tempfile.TemporaryDirectory(prefix="judge-") as tmp:
            pictures = list(views) + [m.reference for m in subject.cast if m.reference is not None]
            small = [_small(p, Path(tmp), n) for n, p in enumerate(pictures, start=1)]
            answer = self.client.complete_json(
                prompt, judge_schema(tags), system=JUDGE_SYSTEM, name="identity", images=small,
                shrink=("lower SHEET_EXPRESSIONS or SHEET_COLUMNS (smaller sheets are sent to the judge)",))
        return Verdict({t: float(answer[t]["score"]) for t in tags},
                       {t: " ".join(str(answer[t]["reason"]).split())[:REASON_CHARS] for t in tags})


# ---------------------------------------------------------------- the offline cards

TOLERANCE = 36.0  # RGB distance: a figure's colour blended with the card under it, or after video coding
FOUND = 0.001  # the share of a picture a figure covers at the least (0.24% on a 256x144 card, 1.3% on 1280x720)


@dataclass
class CardJudge:
    """Finds each character's identity colour on the offline cards; the least of all the views counts."""

    name: str = "offline"
    preview: bool = True

    def identity(self) -> dict[str, Any]:
        return {"judge": "cards", "version": 1, "tolerance": TOLERANCE, "found": FOUND}

    def judge(self, views: Sequence[Path], subject: Subject) -> Verdict:
        import numpy as np

        from common.offline.cards import identity_colour

        colours = [identity_colour(m.tag) for m in subject.cast]
        targets = np.array(colours, dtype=np.int32)
        shares = np.ones(len(colours))
        for path in views:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"), dtype=np.int32).reshape(-1, 3)
            # Each pixel counts for the nearest of the cast's colours, and only when it is close to it: two
            # characters of similar colours are told apart when both are there, and one is not found in the other.
            distance = ((pixels[:, None, :] - targets[None, :, :]) ** 2).sum(axis=2)
            nearest, close = distance.argmin(axis=1), distance.min(axis=1) <= TOLERANCE ** 2
            counts = np.bincount(nearest[close], minlength=len(colours)) / max(1, len(pixels))
            shares = np.minimum(shares, counts)
        scores, reasons = {}, {}
        for member, colour, share in zip(subject.cast, colours, shares.tolist()):
            hex_colour = "#%02x%02x%02x" % colour
            scores[member.tag] = round(min(1.0, share / FOUND), 3)
            where = "" if len(views) == 1 else f" in the frame that shows it least (of {len(views)})"
            reasons[member.tag] = (f"its identity colour {hex_colour} covers {share * 100:.2f}% of the picture{where}"
                                   if share >= FOUND else
                                   f"no figure in its identity colour {hex_colour}{where}: {member.name} is not in the picture")
        return Verdict(scores, reasons)


# ---------------------------------------------------------------- which judge

def choose_judge(settings: Any, pipeline_dir: Path, policy: Policy, *, cards: bool) -> tuple[Judge | None, str]:
    """The judge for this step and the line that says so. `cards`: the pictures are the offline engine's."""
    if policy.mode == "off":
        return None, "identity judge: off (IDENTITY_JUDGE), pictures are kept as made"
    if policy.mode == "offline" or (policy.mode == "auto" and cards):
        return CardJudge(), "identity judge: offline, finds each character's identity colour on the cards"
    from common.engines.registry import get_engine

    model = str(settings.IDENTITY_JUDGE_MODEL or "").strip() or str(settings.MODEL_MOTION_GENERATION or "").strip()
    judged = settings.with_overrides(LM_STUDIO_MODEL=model) if model else settings
    try:
        text = get_engine("text", judged, pipeline_dir)
    except ServiceError as exc:
        if policy.mode == "vision":
            raise
        return None, f"identity judge: none, the LLM server is not there ({exc}); pictures are kept unjudged"
    if text.preview:
        if policy.mode == "vision":
            raise ConfigError("IDENTITY_JUDGE is vision but this run has no LLM server (its text engine is offline); "
                              "start one and set PIPELINE_TEXT_ENGINE to llm, or set IDENTITY_JUDGE to auto.")
        return None, ("identity judge: none, these pictures need the LLM server's vision model and the run's text "
                      "engine is offline; pictures are kept unjudged")
    if policy.mode == "auto" and not text.client.is_up():  # a quick look: ComfyUI's pictures are still the night's work
        return None, (f"identity judge: none, no LLM server answers at {text.client.base_url} for its vision model; "
                      "pictures are kept unjudged (start the server, or set IDENTITY_JUDGE to off to silence this)")
    return VisionJudge(text.client, text.model), f"identity judge: the vision model {text.model} on the LLM server"
