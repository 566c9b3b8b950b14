"""Latent shapes through a graph, and .latent files, as ComfyUI 0.8.0 makes and reads them.

A Wan S2V job is run in chunks that hand their latent on through files: SaveLatent writes
`latents/<prefix>_<counter:05>_.latent`, the client uploads it, LoadLatent reads it back, and
LatentConcat(dim "t") joins it to the next chunk's sampled latent. So that the fake's decoded video
has the frame count and size the real one would, the shape of a LATENT is followed here:

    WanSoundImageToVideo          [b, 16, (length-1)//4 + 1, height//8, width//8]
    WanSoundImageToVideoExtend    the same T from `length`; b, h, w from `video_latent`
    KSampler(Advanced)            its `latent_image`, unchanged
    LatentConcat                  torch.cat along x/y/t (-1/-2/-3) after samples2 is cut or repeated to
                                  samples1's batch; mismatched sizes fail with torch's own message
    LoadLatent                    the shape in the file's safetensors header
    EmptyLatentImage / EmptySD3LatentImage / EmptyHunyuanLatentVideo, WanImageToVideo: as the real nodes

A latent is `tracked` when one of the first four made it: only such a latent is decoded by this rule
(VAEDecode of a Wan 2.1 VAE: T latent frames -> 4(T-1)+1 frames of width*8 x height*8, times the
batch), so the graphs the fake drew before (Wan i2v, LTX, pictures) keep their sizes. A .latent file
is a safetensors file: an 8-byte little-endian header length, a JSON header (`__metadata__` with the
prompt, then `latent_format_version_0` (F32, shape [0]) and `latent_tensor` (F32, the shape)) padded
with spaces to a multiple of 8, then the data: zeros here (a sampler's float32 values in the real one).
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .graph import _is_link
from .state import NodeFailure

SAFETENSORS_ERROR = "safetensors._safetensors_rust.SafetensorError"
MAX_HEADER = 100_000_000  # safetensors refuses a longer header
TRACKED = frozenset({"WanSoundImageToVideo", "WanSoundImageToVideoExtend", "LoadLatent", "LatentConcat"})
S2V = ("WanSoundImageToVideo", "WanSoundImageToVideoExtend")


@dataclass(frozen=True)
class Latent:
    shape: tuple[int, ...]
    tracked: bool = False   # made by the S2V nodes, LoadLatent or LatentConcat: decoded by the Wan rule
    sound: str | None = None  # the S2V node whose audio it was sampled with, if any


def read_header(path: Path) -> dict[str, Any]:
    """A safetensors header; raises NodeFailure as safetensors.torch.load_file fails on a bad file."""
    data = path.read_bytes()

    def bad(why: str) -> NodeFailure:
        return NodeFailure("", SAFETENSORS_ERROR, f"Error while deserializing header: {why}\n")

    if len(data) < 8:
        raise bad("header too small")
    size = struct.unpack("<Q", data[:8])[0]
    if size > MAX_HEADER:
        raise bad("header too large")
    if 8 + size > len(data):
        raise bad("invalid header length")
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except UnicodeDecodeError as ex:
        raise bad(f"invalid UTF-8 in header: {ex.reason}") from None
    except ValueError as ex:
        raise bad(f"invalid JSON in header: {ex}") from None
    if not isinstance(header, dict):
        raise bad("invalid JSON in header: invalid type: expected a map")
    return header


def file_shape(path: Path) -> tuple[int, ...]:
    """What LoadLatent loads from `path`: the shape of its `latent_tensor`."""
    entry = read_header(path).get("latent_tensor")
    if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
        raise NodeFailure("", "KeyError", "'latent_tensor'\n")
    return tuple(int(n) for n in entry["shape"])


def write_latent(path: Path, shape: tuple[int, ...], metadata: dict[str, str] | None) -> None:
    """SaveLatent's file: a float32 `latent_tensor` of `shape` (zeros) and the format marker."""
    size = 4 * math.prod(shape)
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    header["latent_format_version_0"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    header["latent_tensor"] = {"dtype": "F32", "shape": list(shape), "data_offsets": [0, size]}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        handle.truncate(8 + len(text) + size)  # zeros, without building them in memory


def _int(inputs: dict[str, Any], name: str, default: int) -> int:
    value = inputs.get(name, default)
    return int(value) if isinstance(value, (int, float)) else default


def _cat(node_id: str, first: Latent, second: Latent, dim: str) -> Latent:
    """LatentConcat: samples2 cut or repeated to samples1's batch, then torch.cat, failing as torch does."""
    s1, s2 = list(first.shape), list(second.shape)
    if s2 and s1:
        s2[0] = s1[0]
    parts = (s2, s1) if "-" in dim else (s1, s2)
    axis = -1 if "x" in dim else -2 if "y" in dim else -3
    if len(s1) != len(s2):
        raise NodeFailure(node_id, "RuntimeError",
                          f"Tensors must have same number of dimensions: got {len(parts[0])} and {len(parts[1])}\n")
    where = len(s1) + axis
    for d in range(len(s1)):
        if d != where and parts[0][d] != parts[1][d]:
            raise NodeFailure(node_id, "RuntimeError", f"Sizes of tensors must match except in dimension {where}. "
                              f"Expected size {parts[0][d]} but got size {parts[1][d]} for tensor number 1 in the list.\n")
    out = list(parts[0])
    out[where] = parts[0][where] + parts[1][where]
    return Latent(tuple(out), True, first.sound or second.sound)


def latent_of(prompt: dict[str, Any], link: Any, input_dir: Path, seen: frozenset[str] = frozenset()) -> Latent | None:
    """The LATENT a link carries, or None where the fake does not follow it (it then draws as before)."""
    if not _is_link(link) or str(link[0]) not in prompt or str(link[0]) in seen:
        return None
    node_id, slot = str(link[0]), link[1]
    node = prompt[node_id]
    cls, inputs = node["class_type"], node.get("inputs", {})
    seen = seen | {node_id}
    if cls in S2V or cls in ("WanImageToVideo", "WanFirstLastFrameToVideo"):
        if slot != 2:
            return None
        frames = (_int(inputs, "length", 1) - 1) // 4 + 1
        if cls == "WanSoundImageToVideoExtend":
            before = latent_of(prompt, inputs.get("video_latent"), input_dir, seen)
            if before is None or len(before.shape) < 3:
                return None
            return Latent((before.shape[0], 16, frames, before.shape[-2], before.shape[-1]), True, node_id)
        shape = (_int(inputs, "batch_size", 1), 16, frames, _int(inputs, "height", 480) // 8, _int(inputs, "width", 832) // 8)
        return Latent(shape, cls in S2V, node_id if cls in S2V else None)
    if cls in ("KSampler", "KSamplerAdvanced", "SamplerCustom"):
        return latent_of(prompt, inputs.get("latent_image"), input_dir, seen)
    if cls == "LatentConcat":
        first = latent_of(prompt, inputs.get("samples1"), input_dir, seen)
        second = latent_of(prompt, inputs.get("samples2"), input_dir, seen)
        if first is None or second is None:
            return None
        return _cat(node_id, first, second, str(inputs.get("dim", "t")))
    if cls == "LoadLatent":
        try:
            return Latent(file_shape(input_dir / str(inputs.get("latent"))), True)
        except NodeFailure as failure:
            failure.node_id = node_id
            raise
    width, height, batch = _int(inputs, "width", 512), _int(inputs, "height", 512), _int(inputs, "batch_size", 1)
    if cls == "EmptyLatentImage":
        return Latent((batch, 4, height // 8, width // 8))
    if cls == "EmptySD3LatentImage":
        return Latent((batch, 16, height // 8, width // 8))
    if cls == "EmptyHunyuanLatentVideo":
        return Latent((batch, 16, (_int(inputs, "length", 25) - 1) // 4 + 1, height // 8, width // 8))
    return None


def decoded(prompt: dict[str, Any], samples: Any, input_dir: Path) -> tuple[int, int, int, Latent] | None:
    """(width, height, frames, latent) a VAEDecode of `samples` gives, for a tracked latent; else None."""
    latent = latent_of(prompt, samples, input_dir)
    if latent is None or not latent.tracked or len(latent.shape) < 4:
        return None
    batch, height, width = latent.shape[0], latent.shape[-2] * 8, latent.shape[-1] * 8
    frames = 4 * (latent.shape[2] - 1) + 1 if len(latent.shape) == 5 else 1
    return width, height, batch * frames, latent


def run_node(prompt: dict[str, Any], node_id: str, input_dir: Path) -> None:
    """LoadLatent and LatentConcat at run time: fail as the real nodes would (NodeFailure), else nothing."""
    cls = prompt[node_id]["class_type"]
    if cls in ("LoadLatent", "LatentConcat"):
        latent_of(prompt, [node_id, 0], input_dir)
