"""How much GPU memory this machine has, and which quantisation of a model suits it.

Why: a Q8 FLUX or LTX file does not fit a 12 GB card, and a 24 GB card wastes quality on Q4. The
memory is asked of nvidia-smi first (cheap, no torch), then of torch in ComfyUI's own Python (AMD,
Apple, a machine without nvidia-smi on its PATH); SETUP_QUANT overrides the choice.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Sequence

from common.setup.manifest import ModelFile, Variant

_TORCH_MEMORY = ("import torch\n"
                 "if torch.cuda.is_available():\n"
                 "    print(max(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())))\n")


@dataclass(frozen=True)
class Gpu:
    """The largest GPU's memory in GiB (None: unknown) and where that came from, for the plan's line."""

    vram_gb: float | None
    how: str


def nvidia_smi_gb(command: str = "nvidia-smi") -> float | None:
    """The largest NVIDIA GPU's memory in GiB, from nvidia-smi; None when there is no such tool or GPU."""
    exe = shutil.which(command)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    sizes = [float(x) for x in out.stdout.split() if x.replace(".", "", 1).isdigit()]
    return max(sizes) / 1024 if out.returncode == 0 and sizes else None


def torch_gb(python: str) -> float | None:
    """The largest CUDA/ROCm device's memory in GiB as torch in `python` sees it; None without one."""
    try:
        out = subprocess.run([python, "-c", _TORCH_MEMORY], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    return int(text) / 1024 ** 3 if out.returncode == 0 and text.isdigit() else None


def detect_gpu(python: str | None) -> Gpu:
    """nvidia-smi, else torch in ComfyUI's Python (when it has one), else unknown."""
    gb = nvidia_smi_gb()
    if gb is not None:
        return Gpu(gb, "nvidia-smi")
    if python:
        gb = torch_gb(python)
        if gb is not None:
            return Gpu(gb, "torch in ComfyUI's Python")
    return Gpu(None, "no GPU found (neither nvidia-smi nor torch in ComfyUI's Python reports one)")


def choose_variant(model: ModelFile, quant: str, gpu: Gpu | None) -> tuple[Variant, str]:
    """The variant of `model` to fetch, and why. `quant`: SETUP_QUANT ("auto" or a name such as Q5_K_M)."""
    default = model.default_variant()
    if not model.variants:
        return default, ""
    if quant and quant.lower() != "auto":
        chosen = next((v for v in model.variants if v.quant.lower() == quant.lower()), None)
        if chosen is None:
            offered = ", ".join(v.quant for v in model.variants)
            return default, f"SETUP_QUANT={quant} is not offered for {model.name} ({offered}): {default.quant}"
        return chosen, f"SETUP_QUANT={chosen.quant}"
    if gpu is None or gpu.vram_gb is None:
        return default, f"{default.quant} (GPU memory unknown: the quantisation the workflows name)"
    # A card sold as 24 GB reports 23.99 GiB: compare whole gigabytes.
    have = round(gpu.vram_gb)
    fitting = sorted((v for v in model.variants if v.min_vram_gb <= have), key=lambda v: -v.min_vram_gb)
    if fitting:
        return fitting[0], f"{fitting[0].quant} for {have} GB of GPU memory ({gpu.how})"
    smallest = min(model.variants, key=lambda v: v.min_vram_gb)
    return smallest, (f"{smallest.quant}, the smallest offered, though it wants {smallest.min_vram_gb:g} GB and "
                      f"the GPU has {have} GB ({gpu.how}): expect out-of-memory retries or add --lowvram")


def variants_wanted(models: Sequence[ModelFile]) -> bool:
    return any(m.variants for m in models)
