"""The small interfaces every engine implements, one per kind of media.

Scripts ask `common.engines.registry` for an engine of a kind and never know which backend
they got: ComfyUI (real models) or offline (model-free previews). `identity()` goes into each
item's checkpoint fingerprint, so switching engine or model redoes the work, and `preview`
marks offline outputs so publishing can refuse them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from common.audio.voices import Voice

if TYPE_CHECKING:
    from common.video.animation import FrameRule
    from common.video.speaking import TalkRule


@dataclass(frozen=True)
class SpeechLine:
    """One utterance of a chunk: who says what, in which voice."""

    speaker: str
    text: str
    voice: Voice


@dataclass(frozen=True)
class SpokenChunk:
    """A chunk's audio and where each line sits in it (seconds from the chunk's start).

    `timing` says how the spans were obtained: 'exact' (each line synthesised alone) or
    'estimated' (one multi-speaker job, spans apportioned by text length).
    """

    wav: Path
    line_spans: tuple[tuple[float, float], ...]
    timing: str


class Engine(Protocol):
    name: str
    preview: bool
    parallel_jobs: int  # items worth running at once: enough to keep every server's queue full


    def identity(self) -> dict[str, object]:
        """What determines the output besides the item's own inputs (engine, model, workflow)."""
        ...


class SpeechEngine(Engine, Protocol):
    def speak_chunk(self, lines: Sequence[SpeechLine], out_wav: Path, *, seed: int) -> SpokenChunk: ...


class SoundEngine(Engine, Protocol):
    def sound_effect(self, description: str, seconds: float, out_wav: Path, *, seed: int) -> Path: ...


@dataclass(frozen=True)
class ImageRequest:
    """One picture to make; `kind` picks the offline card layout and the default workflow."""

    # 'character' | 'location' | 'scene' | 'sheet' (a character sheet's panel) | 'thumbnail' | the layered
    # keyframes' 'plate' (a place alone), 'pose' (one character posed) and 'composite' (common.pictures.layers)
    kind: str
    item_id: str
    prompt: str
    width: int
    height: int
    seed: int
    steps: int | None = None
    negative_prompt: str = ""
    denoise: float | None = None
    input_image: Path | None = None
    title: str = ""
    details: tuple[str, ...] = ()
    # (lora file, strength_model, strength_clip), applied in one pass (LORA_MODE chained); engines
    # without LoRA support ignore them.
    loras: tuple[tuple[str, float, float], ...] = ()
    # Pictures the result must follow (a scene's stitched characters and location), each given
    # to the model as a reference latent (Flux Kontext); `input_image` is the start picture.
    reference_images: tuple[Path, ...] = ()
    # What a card engine writes on the picture instead of the prompt: a character's or
    # location's description, a scene's setting (offline cards also take their colours from it).
    caption: str = ""
    # A composite's characters: where each reference image after the first goes, as (centre x, feet y,
    # height), fractions of the picture. The prompt says the same in words, for engines that read it.
    layout: tuple[tuple[float, float, float], ...] = ()


class ImageEngine(Engine, Protocol):
    def image(self, request: ImageRequest, out_png: Path) -> Path: ...

    def kind_identity(self, kind: str) -> dict[str, object]:
        """The identity of the layered keyframes' kinds ('plate', 'pose', 'composite'), used instead of
        `identity()`: the engine and that kind's own workflow, so that editing another kind's workflow
        redoes none of them and adding them redid no older picture."""
        ...


@dataclass(frozen=True)
class ClipRequest:
    """One animation job: from `image` (and to `end_image`, first-last-frame) in `frame_count` frames.

    `frames` is the exact count to make (0: round(seconds * fps)); the caller plans it to the
    engine's `frame_rule()` (common.video.animation). `camera` is a Ken Burns move name the motion
    prompt asked for: engines that move a still honour it, generative ones read the prompt.
    """

    scene_id: str
    image: Path
    prompt: str
    seconds: float
    width: int
    height: int
    fps: int
    seed: int
    end_image: Path | None = None
    frames: int = 0
    camera: str = ""
    # A speaking shot (common.video.speaking): the speaker's line cut from story.wav, who speaks
    # (tag, attributes), and how many frames of the clip come before the line starts.
    audio: Path | None = None
    speaker: tuple[str, str] | None = None
    lead: int = 0
    # A sound-to-video chunk after the first continues the clip saved in `latent` (the previous job's
    # SaveLatent file); `keep_latent`: this chunk is not the last, its product is that file, not a video.
    latent: Path | None = None
    keep_latent: bool = False

    @property
    def frame_count(self) -> int:
        return self.frames or max(1, round(self.seconds * self.fps))


class AnimationEngine(Engine, Protocol):
    def frame_rule(self) -> "FrameRule":
        """Which frame counts one job may have, and how long it may be (common.video.animation.FrameRule)."""
        ...

    def talk_rule(self) -> "TalkRule | None":
        """How this engine's sound-to-video model makes speaking clips (common.video.speaking.TalkPlan), or
        None when a speaking shot is one ordinary job that gets the line's audio (offline) or none."""
        ...

    def animate(self, request: ClipRequest, out_mp4: Path) -> Path:
        """Exactly one job, written to `out_mp4` as the engine made it (size and frames as asked, if it obeys)."""
        ...
