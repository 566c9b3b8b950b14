"""LoRA passes: how many jobs one picture takes, and what each job gets.

The seed system had two LoRA modes. `chained`: every enabled LoRA in one job, LoraLoader after
LoraLoader. `serial`: one job per enabled LoRA, each with its own steps and denoise, the second
starting from the first one's picture (LoadImage + VAEEncode) and so on, so a fast "turbo" LoRA
can draw and a detail LoRA refine. A serial pass before the last is checkpointed on its own
(its picture in output/lora/), so a run killed between passes resumes at the next pass; it is
kept after the item finishes only when its LoRA says `save_intermediate`.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from common.state.checkpoints import CheckpointStore, fingerprint
from common.engines.base import ImageEngine, ImageRequest
from common.run.errors import ConfigError

LoraTriple = tuple[str, float, float]


@dataclass(frozen=True)
class LoraSpec:
    """One LORAS entry as the seed wrote it (`name` or `file`; `bypass_*` zero that strength)."""

    name: str
    strength_model: float = 1.0
    strength_clip: float = 1.0
    steps: int | None = None
    denoise: float = 1.0
    save_intermediate: bool = False
    use_only_intermediate: bool = False

    @property
    def triple(self) -> LoraTriple:
        return (self.name, self.strength_model, self.strength_clip)

    @property
    def label(self) -> str:
        """The file's stem as a safe file-name part: "FLUX.1-Turbo-Alpha.safetensors" -> "FLUX.1-Turbo-Alpha"."""
        stem = re.sub(r"\.(safetensors|ckpt|pt|bin)$", "", Path(self.name).name, flags=re.I)
        return re.sub(r"[^\w.-]+", "_", stem).strip("._") or "lora"


@dataclass(frozen=True)
class PassSpec:
    """One job of a picture. Pass 1 starts from the empty latent (or the LATENT_MODE IMAGE start
    picture); a pass `from_previous` starts from the previous pass's picture at `denoise`."""

    number: int
    label: str
    loras: tuple[LoraTriple, ...]
    steps: int
    denoise: float | None = None
    from_previous: bool = False
    references: bool = True
    save_intermediate: bool = False

    def describe(self) -> dict[str, Any]:
        return {"number": self.number, "label": self.label, "loras": [list(l) for l in self.loras], "steps": self.steps,
                "denoise": self.denoise, "from_previous": self.from_previous, "references": self.references,
                "save_intermediate": self.save_intermediate}


def _number(entry: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} has {key} = {value!r}, which is not a number; fix it in LORAS.")
    return float(value)


def parse_loras(raw: Sequence[Any]) -> list[LoraSpec]:
    """The enabled LORAS entries, in order, checked: a typo is an error, not a LoRA silently skipped."""
    found: list[LoraSpec] = []
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"LORAS is {raw!r}; it must be a list of {{\"name\": \"file.safetensors\", ...}} entries.")
    for index, entry in enumerate(raw, start=1):
        where = f"LORAS entry {index}"
        name = str(entry.get("name") or entry.get("file") or "").strip() if isinstance(entry, Mapping) else ""
        if not name:
            raise ConfigError(f"{where} is {entry!r}; each needs at least {{\"name\": \"file.safetensors\"}}.")
        if not entry.get("enabled", True):
            continue
        strength_model = 0.0 if entry.get("bypass_model") else _number(entry, "strength_model", 1.0, where)
        strength_clip = 0.0 if entry.get("bypass_clip") else _number(entry, "strength_clip", 1.0, where)
        steps = entry.get("steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"{where} ({name}) has steps = {steps!r}; use a whole number of at least 1 or leave it out.")
        denoise = _number(entry, "denoising_strength", 1.0, where)
        if not 0.0 < denoise <= 1.0:
            raise ConfigError(f"{where} ({name}) has denoising_strength = {denoise}; use a value above 0 and at most 1.")
        found.append(LoraSpec(name, strength_model, strength_clip, steps, denoise,
                              bool(entry.get("save_intermediate", False)), bool(entry.get("use_only_intermediate", False))))
    return found


def plan_passes(settings: Any) -> tuple[PassSpec, ...]:
    """The jobs every picture of this run takes, from USE_LORA, LORA_MODE, LORAS and SAMPLING_STEPS."""
    steps = int(settings.SAMPLING_STEPS)
    loras = parse_loras(settings.LORAS) if settings.USE_LORA else []
    if not loras:
        return (PassSpec(1, "base", (), steps),)
    if settings.LORA_MODE == "chained":
        return (PassSpec(1, "chained", tuple(l.triple for l in loras), steps),)
    return tuple(
        PassSpec(number, lora.label, (lora.triple,), lora.steps or steps,
                 denoise=lora.denoise if number > 1 else None, from_previous=number > 1,
                 references=not (number > 1 and lora.use_only_intermediate), save_intermediate=lora.save_intermediate)
        for number, lora in enumerate(loras, start=1)
    )


@dataclass(frozen=True)
class PassJob:
    """What the passes of one item share: the request for pass 1, the start picture and its denoise."""

    key: str
    fingerprint: str
    request: ImageRequest  # loras/steps/input_image/denoise/references are set per pass
    start_image: Path | None
    start_denoise: float
    references: tuple[Path, ...]
    out: Path
    lora_dir: Path


def intermediate_path(job: PassJob, spec: PassSpec) -> Path:
    return job.lora_dir / f"{job.key.replace(':', '_')}.{spec.number}.{spec.label}.png"  # no `:` in file names


def run_passes(engine: ImageEngine, job: PassJob, passes: Sequence[PassSpec], store: CheckpointStore,
               relative: Callable[[Path], str]) -> list[dict[str, Any]]:
    """Make the item's picture at `job.out` in as many jobs as it has passes; returns what each pass did."""
    records: list[dict[str, Any]] = []
    previous: Path | None = None
    finished: list[tuple[str, PassSpec, Path]] = []
    for spec in passes:
        last = spec is passes[-1]
        target = job.out if last else intermediate_path(job, spec)
        pass_key, pass_fp = f"{job.key}#pass{spec.number}", fingerprint(job.fingerprint, spec.number)
        if spec.from_previous and previous is not None:
            source, start, denoise = f"pass {spec.number - 1}", previous, spec.denoise
        elif job.start_image is not None:
            source, start, denoise = "start image", job.start_image, job.start_denoise
        else:
            source, start, denoise = "empty latent", None, None
        cached = None if last else store.lookup(pass_key, pass_fp)
        if cached is None:
            request = replace(job.request, loras=spec.loras, steps=spec.steps, input_image=start, denoise=denoise,
                              reference_images=job.references if spec.references else ())
            target.parent.mkdir(parents=True, exist_ok=True)
            engine.image(request, target)
            if not last:
                store.record(pass_key, pass_fp, files=[target], data={"pass": spec.number}, preview=engine.preview)
        kept: Path | None = None
        if spec.save_intermediate:
            kept = intermediate_path(job, spec)
            if last:
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(target, kept)
        if not last:
            finished.append((pass_key, spec, target))
        records.append({**spec.describe(), "input": source, "cached": cached is not None,
                        "file": relative(kept) if kept else None})
        previous = target
    for pass_key, spec, path in finished:
        store.forget(pass_key)
        if not spec.save_intermediate:
            path.unlink(missing_ok=True)
    return records

