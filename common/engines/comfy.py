"""The ComfyUI engine: every media job is a workflow template, patched and queued on the server.

Templates are the pipeline's `workflow/*.json` (API format) or a user's own; the patch
points are found by node class and graph links (common.comfyui.workflow), not by node ids.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common import media
from common.checkpoints import file_digest
from common.comfyui.client import ComfyClient
from common.comfyui.speech import build_speech_prompt
from common.comfyui.workflow import Workflow
from common.engines.base import ClipRequest, ImageRequest, SpeechLine, SpokenChunk
from common.errors import JobError


def _template_identity(path: Path) -> dict[str, object]:
    return {"workflow": path.name, "sha256": file_digest(path)}


def _single_output(files: list[Path], kinds: tuple[str, ...], what: str) -> Path:
    chosen = [f for f in files if f.suffix.lower() in kinds]
    if not chosen:
        raise JobError(
            f"ComfyUI finished the {what} job but returned no {'/'.join(kinds)} file; check the workflow's save node."
        )
    return chosen[-1]


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


@dataclass
class ComfySpeech:
    """One job per chunk through a multi-speaker TTS node (SPEC 7)."""

    client: ComfyClient
    template: Path
    sample_rate: int = 44100
    line_pause: float = 0.3
    timeout: float = 3600.0
    name: str = "comfyui"
    preview: bool = False

    def identity(self) -> dict[str, object]:
        return {"engine": "comfyui-speech", **_template_identity(self.template), "sample_rate": self.sample_rate}

    def speak_chunk(self, lines: Sequence[SpeechLine], out_wav: Path, *, seed: int) -> SpokenChunk:
        workflow = Workflow.load(self.template)
        voices = {line.speaker: line.voice for line in lines}
        # Seed 0 means "derive it from the chunk's text": OmniVoice would take 0 as random.
        prompt = build_speech_prompt(workflow, [(l.speaker, l.text) for l in lines], voices, self.client.upload_image,
                                     seed=seed or None)
        with tempfile.TemporaryDirectory(prefix="tts-", dir=out_wav.parent) as tmp:
            files = self.client.run(prompt, Path(tmp), timeout=self.timeout)
            audio = _single_output(files, (".wav", ".flac", ".mp3", ".ogg", ".opus"), "speech")
            media.to_wav(audio, out_wav, sample_rate=self.sample_rate)
        total = media.audio_duration(out_wav)
        return SpokenChunk(out_wav, apportion_spans([l.text for l in lines], total, self.line_pause), "estimated")


@dataclass
class ComfySound:
    client: ComfyClient
    template: Path
    sample_rate: int = 44100
    timeout: float = 3600.0
    name: str = "comfyui"
    preview: bool = False

    def identity(self) -> dict[str, object]:
        return {"engine": "comfyui-sfx", **_template_identity(self.template), "sample_rate": self.sample_rate}

    def sound_effect(self, description: str, seconds: float, out_wav: Path, *, seed: int) -> Path:
        workflow = Workflow.load(self.template)
        need = "a sound effect"
        workflow.set_prompt(description, required_for=need)
        workflow.set_seconds(max(1.0, float(seconds)), required_for=need)
        workflow.set_seed(seed)
        with tempfile.TemporaryDirectory(prefix="sfx-", dir=out_wav.parent) as tmp:
            files = self.client.run(workflow.to_prompt(), Path(tmp), timeout=self.timeout)
            audio = _single_output(files, (".wav", ".flac", ".mp3", ".ogg", ".opus"), "sound effect")
            return media.to_wav(audio, out_wav, sample_rate=self.sample_rate)


@dataclass
class ComfyImage:
    client: ComfyClient
    templates: dict[str, Path]  # kind -> workflow file
    timeout: float = 3600.0
    name: str = "comfyui"
    preview: bool = False

    def identity(self) -> dict[str, object]:
        return {"engine": "comfyui-image", "workflows": {k: _template_identity(p) for k, p in sorted(self.templates.items())}}

    def image(self, request: ImageRequest, out_png: Path) -> Path:
        template = self.templates.get(request.kind) or self.templates["scene"]
        workflow = Workflow.load(template)
        need = f"a {request.kind} image"
        bridge_text_conditioning(workflow)
        workflow.set_prompt(request.prompt, required_for=need)
        if request.negative_prompt:
            workflow.set_negative_prompt(request.negative_prompt)
        workflow.set_seed(request.seed)
        workflow.set_size(request.width, request.height, required_for=need)
        if request.steps:
            workflow.set_steps(request.steps)
        if request.input_image is not None:
            workflow.set_input_image(self.client.upload_image(request.input_image), required_for="an input image")
            if request.denoise is not None:
                workflow.set_denoise(request.denoise)
        with tempfile.TemporaryDirectory(prefix="img-", dir=out_png.parent) as tmp:
            files = self.client.run(workflow.to_prompt(), Path(tmp), timeout=self.timeout)
            picture = _single_output(files, (".png", ".jpg", ".jpeg", ".webp"), "image")
            from PIL import Image

            from common.atomic import atomic_path

            with Image.open(picture) as img, atomic_path(out_png) as part:
                img.convert("RGB").save(part, format="PNG")
        return out_png


@dataclass
class ComfyAnimation:
    client: ComfyClient
    template: Path
    frame_rule: tuple[int, int] = (8, 1)  # LTX: 8n+1 frames; WAN: 4n+1
    timeout: float = 3600.0
    name: str = "comfyui"
    preview: bool = False

    def identity(self) -> dict[str, object]:
        return {"engine": "comfyui-animation", **_template_identity(self.template), "frames": list(self.frame_rule)}

    def frames_for(self, seconds: float, fps: int) -> int:
        step, plus = self.frame_rule
        wanted = max(plus, round(seconds * fps))
        return ((wanted - plus + step - 1) // step) * step + plus

    def animate(self, request: ClipRequest, out_mp4: Path) -> Path:
        workflow = Workflow.load(self.template)
        need = "an image-to-video clip"
        workflow.set_prompt(request.prompt, required_for=need)
        workflow.set_seed(request.seed)
        workflow.set_size(request.width, request.height, required_for=need)
        workflow.set_length(self.frames_for(request.seconds, request.fps), required_for=need)
        workflow.set_fps(request.fps)
        workflow.set_input_image(self.client.upload_image(request.image), required_for=need)
        with tempfile.TemporaryDirectory(prefix="clip-", dir=out_mp4.parent) as tmp:
            files = self.client.run(workflow.to_prompt(), Path(tmp), timeout=self.timeout)
            clip = _single_output(files, (".mp4", ".webm", ".mov", ".mkv"), "animation")
            from common.atomic import atomic_path

            with atomic_path(out_mp4) as part:
                part.write_bytes(clip.read_bytes())
        return out_mp4
