"""The ComfyUI engine: every media job is a workflow template, patched and queued on the server.

Templates are the pipeline's `workflow/*.json` (API format) or a user's own; the patch
points are found by node class and graph links (common.services.comfyui.workflow), not by node ids.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from common.media import ffmpeg as media
from common.state.atomic import atomic_path
from common.state.checkpoints import file_digest
from common.services.comfyui.client import ComfyClient
from common.services.comfyui.pool import ComfyPool
from common.pictures.references import add_reference_latents, edit_encoders, set_edit_images
from common.engines.comfy_speech import build_speech_prompt
from common.engines.comfy_talk import talk_workflow
from common.video.animation import FrameRule
from common.video.speaking import TalkRule
from common.services.comfyui.workflow import Workflow
from common.engines.base import ClipRequest, ImageRequest, SpeechLine, SpokenChunk
from common.run.errors import InputError, JobError
from common.run.notes import REDUCED, note


def _template_identity(path: Path) -> dict[str, object]:
    return {"workflow": path.name, "sha256": file_digest(path)}


def _single_output(files: list[Path], kinds: tuple[str, ...], what: str) -> Path:
    chosen = [f for f in files if f.suffix.lower() in kinds]
    if not chosen:
        raise JobError(
            f"ComfyUI finished the {what} job but returned no {'/'.join(kinds)} file; check the workflow's save node."
        )
    return chosen[-1]


def lowered_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The out-of-memory retry's size: both sides times `scale`, kept to multiples of 16 (the
    latent grid every image/video model here needs), never below 64."""
    scale = min(1.0, max(0.25, float(scale)))
    return (max(64, int(width * scale) // 16 * 16), max(64, int(height * scale) // 16 * 16))


def lower_for_memory(workflow: Workflow, width: int, height: int, scale: float) -> tuple[int, int]:
    """Patch a graph to need less GPU memory (smaller size, tiled VAE decoding); returns the new size.
    A smaller size means less detail even once scaled back, so the item's checkpoint is marked
    `reduced` (common.run.notes) for --status, the report and REDO_REDUCED."""
    size = lowered_size(width, height, scale)
    workflow.set_size(*size)
    workflow.use_tiled_decode()
    if size != (width, height):
        note(**{REDUCED: True})
    return size


def bridge_text_conditioning(workflow: Workflow) -> None:
    """Wire conditioning left open for reference images (the seed's scene.json points FluxGuidance
    at a node 30 that each job adds) straight to the text prompt, for jobs without references."""
    encoders = workflow.positive_prompt_ids() or workflow.find("CLIPTextEncode")
    for node_id, name, _ in workflow.dangling_links():
        if name == "conditioning" and encoders:
            workflow.connect(node_id, name, encoders[0])


def apportion_spans(texts: Sequence[str], total: float, pause: float) -> tuple[tuple[float, float], ...]:
    """Line spans inside one multi-speaker take, shared out by text length around fixed pauses.

    A single TTS job returns one audio; until transcription measures the real boundaries,
    the length of each line's text is the best estimate of its share of the speech.
    """
    pauses = pause * max(0, len(texts) - 1)
    speech = max(0.0, total - pauses)
    weights = [max(1, len(t)) for t in texts]
    scale = speech / sum(weights)
    spans, at = [], 0.0
    for weight in weights:
        end = at + weight * scale
        spans.append((round(at, 4), round(min(end, total), 4)))
        at = end + pause
    return tuple(spans)


_AUDIO_FILES = (".wav", ".flac", ".mp3", ".ogg", ".opus")


def _copied_to(out: Path) -> Callable[[Path], Path]:
    """A job's `keep`: its file copied, whole or not at all, to `out`."""
    def keep(made: Path) -> Path:
        with atomic_path(out) as part:
            part.write_bytes(made.read_bytes())
        return out

    return keep


@dataclass
class _OnPool:
    """An engine whose jobs go to the run's ComfyUI servers (common.services.comfyui.pool)."""

    name = "comfyui"
    preview = False
    pool: ComfyPool

    @property
    def parallel_jobs(self) -> int:
        return self.pool.parallel_jobs

    def _job(self, build: Callable[[ComfyClient, bool], dict], out: Path, scratch: str, *, what: str,
             output: tuple[tuple[str, ...], str], keep: Callable[[Path], Path]) -> Path:
        """Run one job in a scratch folder beside `out`; `keep` turns the job's one `output` file
        (suffixes, and what it is for the error sentence) into the result before the folder goes."""
        with tempfile.TemporaryDirectory(prefix=scratch, dir=out.parent) as tmp:
            files = self.pool.run(build, Path(tmp), timeout=self.timeout, what=what)
            return keep(_single_output(files, *output))


@dataclass
class ComfySpeech(_OnPool):
    """One job per chunk through a multi-speaker TTS node (SPEC 7)."""

    template: Path
    sample_rate: int = 44100
    line_pause: float = 0.3
    timeout: float = 3600.0

    def identity(self) -> dict[str, object]:
        return {"engine": "comfyui-speech", **_template_identity(self.template), "sample_rate": self.sample_rate}

    def speak_chunk(self, lines: Sequence[SpeechLine], out_wav: Path, *, seed: int) -> SpokenChunk:
        voices = {line.speaker: line.voice for line in lines}

        def build(client: ComfyClient, lowered: bool) -> dict:
            # Seed 0 means "derive it from the chunk's text": OmniVoice would take 0 as random.
            return build_speech_prompt(Workflow.load(self.template), [(l.speaker, l.text) for l in lines], voices,
                                       client.upload_image, seed=seed or None)

        self._job(build, out_wav, "tts-", what=f"the speech of {out_wav.stem}", output=(_AUDIO_FILES, "speech"),
                  keep=lambda audio: media.to_wav(audio, out_wav, sample_rate=self.sample_rate))
        total = media.audio_duration(out_wav)
        return SpokenChunk(out_wav, apportion_spans([l.text for l in lines], total, self.line_pause), "estimated")


@dataclass
class ComfySound(_OnPool):
    """One Stable Audio job per effect; safe to call from several threads at once (7.sfx.py keeps
    every server's queue full so no GPU idles between jobs)."""

    template: Path
    sample_rate: int = 44100
    timeout: float = 3600.0

    def identity(self) -> dict[str, object]:
        return {"engine": "comfyui-sfx", **_template_identity(self.template), "sample_rate": self.sample_rate}

    def sound_effect(self, description: str, seconds: float, out_wav: Path, *, seed: int) -> Path:
        need = "a sound effect"

        def build(client: ComfyClient, lowered: bool) -> dict:
            workflow = Workflow.load(self.template)
            workflow.set_prompt(description, required_for=need)
            workflow.set_seconds(max(1.0, float(seconds)), required_for=need)
            workflow.set_seed(seed)
            if lowered:
                workflow.use_tiled_decode()
            return workflow.to_prompt()

        return self._job(build, out_wav, "sfx-", what=f"the sound effect {out_wav.stem}",
                         output=(_AUDIO_FILES, "sound effect"),
                         keep=lambda audio: media.to_wav(audio, out_wav, sample_rate=self.sample_rate))


# The layered keyframes' kinds (common.pictures.layers): each has its own workflow, never another's.
LAYER_KINDS = {"plate": "plate.json", "pose": "pose.json", "composite": "composite.json"}


@dataclass
class ComfyImage(_OnPool):
    templates: dict[str, Path]  # kind -> workflow file
    timeout: float = 3600.0
    oom_scale: float = 0.75

    def identity(self) -> dict[str, object]:
        # The layered kinds' workflows are in their own pictures' fingerprints (kind_identity), so that
        # shipping them redid no picture of the other kinds.
        return {"engine": "comfyui-image", "workflows": {k: _template_identity(p) for k, p in sorted(self.templates.items())
                                                         if k not in LAYER_KINDS}}

    def kind_identity(self, kind: str) -> dict[str, object]:
        path = self.templates.get(kind)
        return {"engine": "comfyui-image", **(_template_identity(path) if path is not None else {"workflow": None})}

    def _template(self, kind: str) -> Path:
        if kind in LAYER_KINDS:
            if kind not in self.templates:
                raise InputError(f"workflow/{LAYER_KINDS[kind]} is missing, which KEYFRAME_MODE layered needs for its "
                                 "pictures; restore it from git or set KEYFRAME_MODE to stitched.")
            return self.templates[kind]
        return self.templates.get(kind) or self.templates["scene"]

    def image(self, request: ImageRequest, out_png: Path) -> Path:
        template = self._template(request.kind)
        need = f"a {request.kind} image"

        def build(client: ComfyClient, lowered: bool) -> dict:
            workflow = Workflow.load(template)
            bridge_text_conditioning(workflow)
            workflow.set_prompt(request.prompt, required_for=need)
            if request.negative_prompt:
                workflow.set_negative_prompt(request.negative_prompt)
            workflow.set_seed(request.seed)
            workflow.set_size(request.width, request.height, required_for=need)
            if request.steps:
                workflow.set_steps(request.steps)
            self._apply_loras_and_start_image(workflow, request)
            if request.input_image is not None:
                workflow.set_input_image(client.upload_image(request.input_image), required_for="an input image")
                if request.denoise is not None:
                    workflow.set_denoise(request.denoise)
            # After the start image: its LoadImage was pointed at above, each reference gets its own:
            # an edit encoder's own image input (Qwen-Image-Edit), else a reference latent (Flux Kontext).
            names = [client.upload_image(p) for p in request.reference_images]
            if names and edit_encoders(workflow):
                set_edit_images(workflow, names)
            else:
                add_reference_latents(workflow, names)
            if lowered:
                lower_for_memory(workflow, request.width, request.height, self.oom_scale)
            return workflow.to_prompt()

        def keep(picture: Path) -> Path:
            from PIL import Image

            with Image.open(picture) as img, atomic_path(out_png) as part:
                img = img.convert("RGB")
                if img.size != (request.width, request.height):  # made smaller after running out of memory
                    img = img.resize((request.width, request.height), Image.Resampling.LANCZOS)
                img.save(part, format="PNG")
            return out_png

        return self._job(build, out_png, "img-", what=f"the {request.kind} image {request.item_id}",
                         output=((".png", ".jpg", ".jpeg", ".webp"), "image"), keep=keep)

    # ---- LoRAs and IMAGE mode (10.thumbnail.py; ImageRequest.loras / input_image) ----
    @staticmethod
    def _apply_loras_and_start_image(workflow: Workflow, request: ImageRequest) -> None:
        """The seed's IMAGE mode (an input image *with* a denoise: start from this picture) replaces
        the empty latent with LoadImage + VAEEncode; its own workflows have no LoadImage, so one
        is added (fed the VAE the decoder uses) for the caller to point at the upload. A template
        that already loads an image, or an input image without a denoise (a reference), is left as it is.
        """
        if request.loras:
            workflow.add_loras(request.loras, required_for="LoRAs (USE_LORA)")
        if request.input_image is None or request.denoise is None or workflow.load_image_ids():
            return
        vae = next((workflow.link(n, "vae") for n in workflow.find("VAEDecode") if workflow.link(n, "vae")), None)
        empties = workflow.find("EmptySD3LatentImage", "EmptyLatentImage")
        if vae is None or not empties:
            raise InputError(
                f"{workflow.source} cannot start from an image (it needs a VAEDecode and an empty latent to replace); "
                "set LATENT_MODE to LATENT or use a workflow with a LoadImage node."
            )
        loader = workflow.add_node("LoadImage", {"image": ""}, title="start image")
        encoder = workflow.add_node("VAEEncode", {"pixels": [loader, 0], "vae": list(vae)}, title="start latent")
        for empty in empties:
            for node_id, name in workflow.consumers(empty, 0):
                workflow.connect(node_id, name, encoder, 0)
            del workflow.nodes[empty]


_VIDEO_FILES = (".mp4", ".webm", ".mov", ".mkv")
_VIDEO_OUTPUTS = ("VHS_VideoCombine", "SaveVideo", "SaveWEBM")
_END_TITLE = re.compile(r"\b(end|last)\b", re.I)


def end_image_loaders(workflow: Workflow) -> list[str]:
    """LoadImage nodes titled for the end picture ("end image", "Load Last Frame")."""
    return [n for n in workflow.load_image_ids() if _END_TITLE.search(workflow.title_of(n))]


def drop_frame_outputs(workflow: Workflow) -> None:
    """A graph that saves a video needs no PNG of every frame (the seed's LTX graph has one):
    hundreds of downloads per clip for nothing."""
    if workflow.find(*_VIDEO_OUTPUTS):
        for node_id in workflow.find("SaveImage", "PreviewImage"):
            del workflow.nodes[node_id]


def remove_branch(workflow: Workflow, node_id: str) -> None:
    """Remove a node and what only it fed: optional `*end*` inputs are unset, other dependants removed."""
    removed = {node_id}
    del workflow.nodes[node_id]
    changed = True
    while changed:
        changed = False
        for other in list(workflow.nodes):
            for name, (src, _) in list(workflow.links_of(other)):
                if src not in removed:
                    continue
                if "end" in name.lower():
                    del workflow.nodes[other]["inputs"][name]
                else:
                    removed.add(other)
                    del workflow.nodes[other]
                    changed = True
                    break


def add_ltx_end_guide(workflow: Workflow) -> str:
    """Give an LTX graph an end picture: a second LTXVAddGuide at frame_idx -1 (the last frame),
    chained after the start guide, fed by a new LoadImage (returned) through the same preprocessing."""
    guides = workflow.find("LTXVAddGuide")
    last = next((g for g in guides if not any(workflow.class_of(c) == "LTXVAddGuide" for c, _ in workflow.consumers(g))), None)
    if last is None:
        raise InputError(
            f"{workflow.source} cannot end a clip on a picture: it has no LoadImage titled \"end image\" and no "
            "LTXVAddGuide to add one to; set FIRST_LAST_FRAME to false or use a first-last-frame workflow."
        )
    inputs = workflow.node(last)["inputs"]
    loader = workflow.add_node("LoadImage", {"image": ""}, title="end image")
    image: list[object] = [loader, 0]
    before = workflow.link(last, "image")
    if before and workflow.class_of(before[0]) == "LTXVPreprocess":
        settings = {k: v for k, v in workflow.node(before[0])["inputs"].items() if k != "image"}
        image = [workflow.add_node("LTXVPreprocess", {**settings, "image": [loader, 0]}, title="end image preprocess"), 0]
    guide = workflow.add_node("LTXVAddGuide", {
        "positive": [last, 0], "negative": [last, 1], "vae": inputs.get("vae"), "latent": [last, 2],
        "image": image, "frame_idx": -1, "strength": inputs.get("strength", 1.0),
    }, title="end guide")
    for node_id, name in workflow.consumers(last):
        if node_id != guide:
            workflow.connect(node_id, name, guide, workflow.link(node_id, name)[1])  # type: ignore[index]
    return loader


@dataclass
class ComfyAnimation(_OnPool):
    """Image-to-video through an LTX or WAN 2.2 workflow: one job per clip segment.

    The start picture goes to the LoadImage node(s) not titled "end"; an end picture (first-last
    frame) to the one titled "end image" (animate_wan.json has it, wired to
    WanFirstLastFrameToVideo), or, in an LTX graph, to a guide added at the last frame. Without
    an end picture the end loader and its inputs are removed, so the same file does plain
    image-to-video. Segment planning (frame rules, chaining) is the caller's: common.video.animation.
    """

    template: Path
    rule: FrameRule = field(default_factory=lambda: FrameRule(8, None, "ltx"))
    timeout: float = 3600.0
    oom_scale: float = 0.75
    # The sound-to-video workflow (speak_wan.json) and its rule; None: speaking shots are ordinary clips.
    speaking: Path | None = None
    talk: TalkRule | None = None

    def identity(self) -> dict[str, object]:
        # The length limit is not here: it changes the plan (and so each job's frames), not a job. Nor is
        # the speaking workflow: it is in its own jobs' fingerprints (TalkRule.identity).
        return {"engine": "comfyui-animation", "version": 2, **_template_identity(self.template),
                "model": self.rule.name, "step": self.rule.step}

    def frame_rule(self) -> FrameRule:
        return self.rule

    def talk_rule(self) -> TalkRule | None:
        return self.talk if self.speaking is not None else None

    def _graph(self, request: ClipRequest, frames: int, client: ComfyClient) -> Workflow:
        workflow = Workflow.load(self.template)
        need = "an image-to-video clip"
        drop_frame_outputs(workflow)
        workflow.set_prompt(request.prompt, required_for=need)
        workflow.set_seed(request.seed)
        workflow.set_size(request.width, request.height, required_for=need)
        workflow.set_length(frames, required_for=need)
        workflow.set_fps(request.fps)
        ends = end_image_loaders(workflow)
        starts = [n for n in workflow.load_image_ids() if n not in ends]
        if not starts:
            raise InputError(f"{workflow.source} has no LoadImage node for the start picture, which {need} needs; use a workflow that has one.")
        start_name = client.upload_image(request.image)
        for node_id in starts:
            workflow.nodes[node_id]["inputs"]["image"] = start_name
        if request.end_image is not None:
            ends = ends or [add_ltx_end_guide(workflow)]
            end_name = client.upload_image(request.end_image)
            for node_id in ends:
                workflow.nodes[node_id]["inputs"]["image"] = end_name
        else:
            for node_id in ends:
                remove_branch(workflow, node_id)
        return workflow

    def animate(self, request: ClipRequest, out_mp4: Path) -> Path:
        if request.audio is not None and self.talk_rule() is not None:
            return self._speak(request, out_mp4)
        frames = request.frame_count
        if not self.rule.valid(frames):
            frames = self.rule.round_up(frames)  # the model would round (or refuse) it anyway

        def build(client: ComfyClient, lowered: bool) -> dict:
            workflow = self._graph(request, frames, client)
            if lowered:  # common.video.clips scales a smaller clip back to the film's size
                lower_for_memory(workflow, request.width, request.height, self.oom_scale)
            return workflow.to_prompt()

        return self._job(build, out_mp4, "clip-", what=f"the clip of {request.scene_id}",
                         output=(_VIDEO_FILES, "animation"), keep=_copied_to(out_mp4))

    def _speak(self, request: ClipRequest, out: Path) -> Path:
        """One chunk of a speaking clip (common.engines.comfy_talk): its video, or with `keep_latent` the
        latent the next chunk extends. Frame counts are the caller's plan (TalkPlan), already on the rule."""
        assert self.speaking is not None and self.talk is not None and request.audio is not None
        template, fps = self.speaking, self.talk.fps

        def build(client: ComfyClient, lowered: bool) -> dict:
            latent = client.upload_image(request.latent) if request.latent is not None else None
            workflow = talk_workflow(template, request, fps=fps, image=client.upload_image(request.image),
                                     audio=client.upload_image(request.audio), latent=latent)
            if lowered and latent is None:
                lower_for_memory(workflow, request.width, request.height, self.oom_scale)
            elif lowered:  # an extension's size is its latent's: only the decoding can need less
                workflow.use_tiled_decode()
            return workflow.to_prompt()

        output = (((".latent",), "latent") if request.keep_latent else (_VIDEO_FILES, "speaking clip"))
        return self._job(build, out, "talk-", what=f"the speaking clip of {request.scene_id}", output=output,
                         keep=_copied_to(out))
