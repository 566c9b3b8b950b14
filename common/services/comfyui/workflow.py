"""An API-format ComfyUI workflow and the edits the pipelines make to it before queueing.

Users may point a script at their own workflow, so nothing here trusts node ids: every edit
finds its target by node class and by following the graph's links (a sampler's `positive`
input leads back to the prompt encoder through FluxGuidance, LTXVConditioning, ...).
`_meta.title` only breaks ties. Each setter returns how many nodes it changed; pass
`required_for="..."` to turn "nothing to change" into an InputError naming the workflow file.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from common.run.errors import InputError

Link = tuple[str, int]

# Nodes that turn text into conditioning, and which of their inputs hold the text.
_TEXT_INPUTS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
    "TextEncodeHunyuanVideo_ImageToVideo": ("prompt",),
}
# Primitive nodes a text input may be linked to instead of holding the text itself.
_PRIMITIVE_TEXT_INPUTS = ("value", "string", "text", "prompt")
# Conditioning nodes that end a trace: their output carries no prompt text.
_ZEROING = {"ConditioningZeroOut"}
# Nodes that set the picture/video size the job starts from.
SIZE_CLASSES = {
    "EmptySD3LatentImage", "EmptyLatentImage", "EmptyImage", "EmptyLTXVLatentVideo",
    "EmptyHunyuanLatentVideo", "EmptyMochiLatentVideo", "EmptyCosmosLatentVideo",
    "EmptyHunyuanImageLatent", "EmptyQwenImageLayeredLatentImage", "EmptyFlux2LatentImage",
    "WanImageToVideo", "WanFirstLastFrameToVideo", "Wan22ImageToVideoLatent", "WanVaceToVideo",
    "WanFunInpaintToVideo", "LTXVImgToVideo", "WanSoundImageToVideo", "WanHuMoImageToVideo",
}
OUTPUT_CLASSES = {
    "SaveImage", "PreviewImage", "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio",
    "SaveVideo", "SaveWEBM", "SaveAnimatedWEBP", "SaveAnimatedPNG", "VHS_VideoCombine",
}


def is_output_class(class_type: str) -> bool:
    """Whether a node class saves or shows results, by name: for a class no server was asked about."""
    return class_type in OUTPUT_CLASSES or class_type.startswith(("Save", "Preview"))


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
        and isinstance(value[1], int) and not isinstance(value[1], bool)
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _display_name(path: Path) -> str:
    # "workflow/scene.json" reads better in a message than an absolute path, and still says where.
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _id_key(node_id: str) -> tuple[int, int | str]:
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)


class Workflow:
    """A mutable API-format graph `{id: {"class_type", "inputs", "_meta"}}` plus where it came from."""

    def __init__(self, nodes: dict[str, Any], source: str = "the workflow") -> None:
        self.source = source
        self.nodes: dict[str, dict[str, Any]] = {str(k): v for k, v in nodes.items()}
        for node_id, node in self.nodes.items():
            if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
                raise InputError(f"{source}: node {node_id} has no class_type; export the workflow again with \"Export (API)\" in ComfyUI.")
            if not isinstance(node.get("inputs", {}), dict):
                raise InputError(f"{source}: node {node_id} has inputs that are not an object; export the workflow again with \"Export (API)\".")
            node.setdefault("inputs", {})

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Workflow":
        """Read an API-format workflow file, refusing UI-format saves with the fix in the message."""
        path = Path(path)
        name = _display_name(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{name} does not exist ({path}); put an API-format workflow there (ComfyUI: Workflow > Export (API)).") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{name} cannot be read ({exc}); check the file and its permissions.") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                "fix it or export it again from ComfyUI with \"Export (API)\"."
            ) from None
        return cls.from_data(data, name)

    @classmethod
    def from_data(cls, data: Any, source: str = "the workflow") -> "Workflow":
        """Wrap already-parsed JSON; accepts a bare graph or a /prompt body `{"prompt": graph}`."""
        if isinstance(data, dict) and "nodes" in data and "links" in data:
            raise InputError(
                f"{source} is a ComfyUI UI-format workflow (it has \"nodes\" and \"links\"), which the API cannot run; "
                "open it in ComfyUI and save it with \"Export (API)\", then use that file."
            )
        if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data.get("prompt", {}):
            data = data["prompt"]
        if not isinstance(data, dict):
            raise InputError(f"{source} is not a ComfyUI API-format workflow (expected a JSON object of nodes); export it with \"Export (API)\".")
        if not data:
            raise InputError(f"{source} has no nodes; export a working workflow from ComfyUI with \"Export (API)\".")
        return cls(copy.deepcopy(data), source)

    def copy(self) -> "Workflow":
        return Workflow(copy.deepcopy(self.nodes), self.source)

    def to_prompt(self) -> dict[str, Any]:
        """A deep copy ready for POST /prompt; later edits to this Workflow do not leak into it."""
        return copy.deepcopy(self.nodes)

    # ----------------------------------------------------------------- looking around
    def node(self, node_id: str) -> dict[str, Any]:
        return self.nodes[str(node_id)]

    def ids(self) -> list[str]:
        return sorted(self.nodes, key=_id_key)

    def class_of(self, node_id: str) -> str:
        return self.nodes[node_id]["class_type"]

    def title_of(self, node_id: str) -> str:
        meta = self.nodes[node_id].get("_meta")
        return str(meta.get("title", "")) if isinstance(meta, dict) else ""

    def find(self, *class_types: str, title: str | None = None) -> list[str]:
        """Ids of nodes of any of `class_types` (all classes if none), whose title contains `title`."""
        return [n for n in self.ids() if (not class_types or self.class_of(n) in class_types)
                and (title is None or title.lower() in self.title_of(n).lower())]

    def links_of(self, node_id: str) -> Iterator[tuple[str, Link]]:
        """(input name, (source id, slot)) for each linked input of a node."""
        for name, value in self.nodes[node_id]["inputs"].items():
            if _is_link(value):
                yield name, (str(value[0]), int(value[1]))

    def link(self, node_id: str, input_name: str) -> Link | None:
        value = self.nodes[node_id]["inputs"].get(input_name)
        return (str(value[0]), int(value[1])) if _is_link(value) else None

    def consumers(self, source_id: str, slot: int | None = None) -> list[tuple[str, str]]:
        """(node id, input name) of every input linked to `source_id` (at `slot`, if given)."""
        return [(node_id, name) for node_id in self.ids() for name, (src, src_slot) in self.links_of(node_id)
                if src == source_id and (slot is None or src_slot == slot)]

    def dangling_links(self) -> list[tuple[str, str, str]]:
        """(node id, input, missing source id) for links to nodes the graph lacks.

        The seed's scene.json ships one on purpose (FluxGuidance -> node 30, filled in per job);
        ComfyUI rejects such a graph, so callers wire it before queueing.
        """
        return [
            (node_id, name, src)
            for node_id in self.ids()
            for name, (src, _) in self.links_of(node_id)
            if src not in self.nodes
        ]

    def connect(self, node_id: str, input_name: str, source_id: str, slot: int = 0) -> None:
        if source_id not in self.nodes:
            raise KeyError(f"no node {source_id} in {self.source}")
        self.nodes[node_id]["inputs"][input_name] = [source_id, slot]

    def ancestors(self, node_id: str) -> set[str]:
        """`node_id` and every node it reads from, directly or not."""
        found, todo = set(), [str(node_id)]
        while todo:
            current = todo.pop()
            if current in found or current not in self.nodes:
                continue
            found.add(current)
            todo += [src for _, (src, _) in self.links_of(current)]
        return found

    def keep_only(self, node_ids: set[str]) -> None:
        """Drop every other node (a graph cut down to what one output needs)."""
        for node_id in [n for n in self.nodes if n not in node_ids]:
            del self.nodes[node_id]

    def output_node_ids(self) -> list[str]:
        """Nodes whose results ComfyUI saves or shows: the ones /history lists outputs for."""
        return [node_id for node_id in self.ids() if is_output_class(self.class_of(node_id))]

    def new_id(self) -> str:
        numeric = [int(k) for k in self.nodes if k.isdigit()]
        candidate = (max(numeric) + 1) if numeric else 1
        while str(candidate) in self.nodes:
            candidate += 1
        return str(candidate)

    def add_node(self, class_type: str, inputs: dict[str, Any], title: str | None = None) -> str:
        """Add a node under a fresh numeric id (never one the template uses) and return the id."""
        node_id = self.new_id()
        node: dict[str, Any] = {"inputs": dict(inputs), "class_type": class_type}
        if title:
            node["_meta"] = {"title": title}
        self.nodes[node_id] = node
        return node_id

    def _missing_sentence(self, what: str, required_for: str) -> str:
        return f"{self.source} has no {what} node, which {required_for} needs; use a workflow that has one."

    def _done(self, changed: int, what: str, required_for: str | None) -> int:
        if changed == 0 and required_for:
            raise InputError(self._missing_sentence(what, required_for))
        return changed

    # ----------------------------------------------------------------- prompt text
    def _text_encoder_ids(self) -> list[str]:
        return [n for n in self.ids() if self.class_of(n) in _TEXT_INPUTS]

    def _trace(self, start: Link | None) -> tuple[list[str], bool]:
        """Follow conditioning upstream from a sampler input.

        Returns (text encoder ids, whether a zeroing node ended a branch). Dangling links end
        a branch quietly: the caller falls back to titles.
        Nodes with both `positive` and `negative` inputs (LTXVConditioning, LTXVAddGuide,
        WanImageToVideo...) output positive on slot 0 and negative on slot 1, so the slot we
        arrived through says which input to follow.
        """
        encoders: list[str] = []
        zeroed = False
        seen: set[Link] = set()
        stack = [start] if start else []
        while stack:
            src, slot = stack.pop()
            if (src, slot) in seen:
                continue
            seen.add((src, slot))
            if src not in self.nodes:
                continue
            cls = self.class_of(src)
            if cls in _TEXT_INPUTS:
                if src not in encoders:
                    encoders.append(src)
                continue
            if cls in _ZEROING:
                zeroed = True
                continue
            links = dict(self.links_of(src))
            if "positive" in links or "negative" in links:
                wanted = {0: "positive", 1: "negative"}.get(slot)
                if wanted in links:
                    stack.append(links[wanted])
                continue
            stack.extend(value for name, value in links.items() if "cond" in name.lower())
        return encoders, zeroed

    def _sampler_inputs(self, name: str) -> list[Link]:
        found = []
        for node_id in self.ids():
            link = self.link(node_id, name)
            if link is None:
                continue
            # Only nodes that consume conditioning to sample or guide; LTXVCropGuides & co are on the path.
            cls = self.class_of(node_id)
            if "Sampler" in cls or "Guider" in cls or "model" in self.nodes[node_id]["inputs"]:
                found.append(link)
        if name == "positive":
            for node_id in self.find("BasicGuider"):
                link = self.link(node_id, "conditioning")
                if link:
                    found.append(link)
        return found

    def _prompt_encoders(self) -> tuple[list[str], list[str], bool]:
        """(positive encoders, negative encoders, negative is zeroed) found from the samplers."""
        positive: list[str] = []
        negative: list[str] = []
        zeroed = False
        for link in self._sampler_inputs("positive"):
            found, _ = self._trace(link)
            positive += [e for e in found if e not in positive]
        for link in self._sampler_inputs("negative"):
            found, zero = self._trace(link)
            zeroed |= zero
            negative += [e for e in found if e not in negative]
        negative = [e for e in negative if e not in positive]
        if not positive:
            # The trace dead-ended (a template with a link wired per job, or no sampler we know):
            # every encoder that is not a negative is a candidate; titles break ties.
            candidates = [e for e in self._text_encoder_ids() if e not in negative]
            titled_pos = [e for e in candidates if "positive" in self.title_of(e).lower()]
            untitled_neg = [e for e in candidates if "negative" not in self.title_of(e).lower()]
            if titled_pos:
                positive = titled_pos
            elif len(untitled_neg) == 1:
                positive = untitled_neg
        if not negative and not zeroed:
            negative = [
                e for e in self._text_encoder_ids()
                if e not in positive and "negative" in self.title_of(e).lower()
            ]
        return positive, negative, zeroed

    def positive_prompt_ids(self) -> list[str]:
        return self._prompt_encoders()[0]

    def negative_prompt_ids(self) -> list[str]:
        return self._prompt_encoders()[1]

    def _write_text(self, encoder_id: str, text: str) -> None:
        inputs = self.nodes[encoder_id]["inputs"]
        for name in _TEXT_INPUTS[self.class_of(encoder_id)]:
            target = inputs.get(name)
            if _is_link(target) and str(target[0]) in self.nodes:
                # The text comes from a primitive node (PrimitiveStringMultiline, String...): edit that.
                prim = self.nodes[str(target[0])]["inputs"]
                key = next((k for k in _PRIMITIVE_TEXT_INPUTS if k in prim and not _is_link(prim[k])), None)
                if key:
                    prim[key] = text
                continue
            if name in inputs or name == _TEXT_INPUTS[self.class_of(encoder_id)][0]:
                inputs[name] = text

    def set_prompt(self, text: str, *, required_for: str | None = None) -> int:
        """Put `text` into the encoder(s) feeding the samplers' positive conditioning."""
        return self._write_texts(self.positive_prompt_ids(), text, "positive prompt (CLIPTextEncode)", required_for)

    def set_negative_prompt(self, text: str, *, required_for: str | None = None) -> int:
        """Put `text` into the negative encoder(s); 0 when the graph has none or zeroes the negative (Flux)."""
        return self._write_texts(self.negative_prompt_ids(), text, "negative prompt (CLIPTextEncode)", required_for)

    def _write_texts(self, encoder_ids: list[str], text: str, what: str, required_for: str | None) -> int:
        for encoder_id in encoder_ids:
            self._write_text(encoder_id, text)
        return self._done(len(encoder_ids), what, required_for)

    def negative_is_zeroed(self) -> bool:
        return self._prompt_encoders()[2]

    # ----------------------------------------------------------------- numbers
    def _set_inputs(self, names: Iterable[str], value: Any, node_ids: Iterable[str], *, numeric: bool = True,
                    first_only: bool = False) -> int:
        """Set the `names` inputs a node holds itself (not linked); `value` may be a function of the old
        value. Returns how many nodes changed; `first_only` sets only the first of `names` a node has."""
        changed = 0
        for node_id in node_ids:
            inputs = self.nodes[node_id]["inputs"]
            hit = False
            for name in names:
                if name in inputs and not _is_link(inputs[name]) and (not numeric or _is_number(inputs[name])):
                    inputs[name] = value(inputs[name]) if callable(value) else value
                    hit = True
                    if first_only:
                        break
            changed += hit
        return changed

    def set_seed(self, seed: int, *, required_for: str | None = None) -> int:
        """Every seed widget: KSampler `seed`, SamplerCustom/RandomNoise `noise_seed`, TTS nodes' `seed`."""
        changed = self._set_inputs(("seed", "noise_seed"), int(seed), self.ids())
        return self._done(changed, "seed (KSampler, SamplerCustom or RandomNoise)", required_for)

    def _sampling_ids(self) -> list[str]:
        return [n for n in self.ids() if "Sampler" in self.class_of(n) or "Scheduler" in self.class_of(n)]

    def set_steps(self, steps: int, *, required_for: str | None = None) -> int:
        changed = self._set_inputs(("steps",), int(steps), self._sampling_ids())
        return self._done(changed, "sampler with steps (KSampler, BasicScheduler, LTXVScheduler)", required_for)

    def set_denoise(self, denoise: float, *, required_for: str | None = None) -> int:
        changed = self._set_inputs(("denoise",), float(denoise), self._sampling_ids())
        return self._done(changed, "sampler with denoise (KSampler, BasicScheduler)", required_for)

    def _size_ids(self) -> list[str]:
        return [
            n for n in self.ids()
            if self.class_of(n) in SIZE_CLASSES
            or (self.class_of(n).startswith("Empty") and {"width", "height"} <= set(self.nodes[n]["inputs"]))
        ]

    def set_size(self, width: int, height: int, *, required_for: str | None = None) -> int:
        """Width/height of the empty latent (or empty image, or image-to-video node) the job starts from."""
        changed = 0
        for node_id in self._size_ids():
            inputs = self.nodes[node_id]["inputs"]
            if _is_link(inputs.get("width")) or _is_link(inputs.get("height")):
                continue
            if "width" in inputs or "height" in inputs:
                inputs["width"], inputs["height"] = int(width), int(height)
                changed += 1
        return self._done(changed, "size (EmptySD3LatentImage, EmptyLatentImage, EmptyLTXVLatentVideo or EmptyImage)", required_for)

    def use_tiled_decode(self, tile_size: int = 512) -> int:
        """Decode in tiles (core ComfyUI's VAEDecodeTiled): much less GPU memory for big images and
        long videos, the out-of-memory retry's first remedy. Returns how many decoders changed."""
        changed = 0
        for node_id in self.find("VAEDecode"):
            node = self.nodes[node_id]
            node["class_type"] = "VAEDecodeTiled"
            node["inputs"].update({"tile_size": tile_size, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8})
            changed += 1
        return changed

    def set_length(self, frames: int, *, required_for: str | None = None) -> int:
        """Frame count of a video latent (EmptyLTXVLatentVideo, WAN image-to-video nodes)."""
        ids = [n for n in self.ids() if any(k in self.class_of(n) for k in ("Video", "Wan", "LTXV"))]
        changed = self._set_inputs(("length",), int(frames), ids)
        return self._done(changed, "video length (EmptyLTXVLatentVideo or a WAN ...ToVideo)", required_for)

    def set_fps(self, fps: float, *, required_for: str | None = None) -> int:
        """Frame rate everywhere it matters: LTXVConditioning, VHS_VideoCombine, CreateVideo."""
        def rate(old: Any) -> int | float:
            return int(fps) if isinstance(old, int) and float(fps).is_integer() else float(fps)

        changed = self._set_inputs(("frame_rate", "fps"), rate, self.ids(), first_only=True)
        return self._done(changed, "frame rate (LTXVConditioning, VHS_VideoCombine or CreateVideo)", required_for)

    def set_seconds(self, seconds: float, *, required_for: str | None = None) -> int:
        """Length of an audio job: EmptyLatentAudio `seconds`, EmptyAudio `duration`."""
        audio = [n for n in self.ids() if "Audio" in self.class_of(n)]
        changed = self._set_inputs(("seconds", "duration"), float(seconds), audio, first_only=True)
        return self._done(changed, "audio length (EmptyLatentAudio)", required_for)

    def load_image_ids(self, which: str | None = None) -> list[str]:
        return self.find("LoadImage", title=which)

    def set_input_image(self, name: str, *, which: str | None = None, required_for: str | None = None) -> int:
        """Point LoadImage node(s) at an uploaded file; `which` picks one by title (e.g. "end")."""
        changed = 0
        for node_id in self.load_image_ids(which):
            self.nodes[node_id]["inputs"]["image"] = name
            changed += 1
        what = "LoadImage" if which is None else f"LoadImage titled \"{which}\""
        return self._done(changed, what, required_for)

    def set_filename_prefix(self, prefix: str, *, required_for: str | None = None) -> int:
        changed = self._set_inputs(("filename_prefix",), prefix, self.output_node_ids(), numeric=False)
        return self._done(changed, "output (SaveImage, SaveAudio, VHS_VideoCombine...)", required_for)

    # ----------------------------------------------------------------- LoRAs
    def _sources_of(self, input_name: str) -> list[Link]:
        """Links feeding `input_name` inputs that come from a node without such an input itself: the loaders."""
        found: list[Link] = []
        for node_id in self.ids():
            link = self.link(node_id, input_name)
            if link and link[0] in self.nodes and input_name not in self.nodes[link[0]]["inputs"] and link not in found:
                found.append(link)
        return found

    def add_loras(
        self,
        loras: Sequence[tuple[str, float, float]],
        *,
        required_for: str | None = None,
    ) -> list[str]:
        """Chain LoraLoader nodes between the model (and CLIP) loaders and everything that used them.

        Returns the new node ids in chain order. With several model loaders (WAN 2.2 high/low
        noise), each gets its own chain; only the first also carries the CLIP.
        """
        if not loras:
            return []
        model_sources = self._sources_of("model")
        if not model_sources:
            if required_for:
                raise InputError(self._missing_sentence("model loader (CheckpointLoaderSimple, UNETLoader or UnetLoaderGGUF)", required_for))
            return []
        clip_sources = self._sources_of("clip")
        added: list[str] = []
        for index, model_src in enumerate(model_sources):
            clip_src = clip_sources[0] if (index == 0 and clip_sources) else None
            model_users = [c for c in self.consumers(*model_src) if self.link(*c) == model_src and c[1] == "model"]
            clip_users = [c for c in self.consumers(*clip_src) if c[1] == "clip"] if clip_src else []
            prev_model, prev_clip = model_src, clip_src
            for name, strength_model, strength_clip in loras:
                if prev_clip is not None:
                    node_id = self.add_node("LoraLoader", {
                        "lora_name": name, "strength_model": float(strength_model),
                        "strength_clip": float(strength_clip),
                        "model": list(prev_model), "clip": list(prev_clip),
                    }, title=f"LoRA {name}")
                    prev_clip = (node_id, 1)
                else:
                    node_id = self.add_node("LoraLoaderModelOnly", {
                        "lora_name": name, "strength_model": float(strength_model), "model": list(prev_model),
                    }, title=f"LoRA {name}")
                prev_model = (node_id, 0)
                added.append(node_id)
            for node_id, input_name in model_users:
                self.nodes[node_id]["inputs"][input_name] = list(prev_model)
            for node_id, input_name in clip_users:
                if prev_clip is not None:
                    self.nodes[node_id]["inputs"][input_name] = list(prev_clip)
        return added
