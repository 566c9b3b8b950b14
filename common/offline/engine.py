"""The offline engine: model-free but real media, so a laptop or CI gets a watchable preview.

Speech is eSpeak NG with one distinct voice per voice stem, images are storyboard cards
drawn from the prompt's own words, clips are Ken Burns moves over the still, and sound
effects are synthesised procedurally for a small vocabulary (rain, wind, surf, fire, thunder,
footsteps, bells, a crowd, knocking, a clock, birds, crickets: common.offline.sfx); any other
description is silence, because a wrong sound is worse than none.
"""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from common.media import ffmpeg as media
from common.engines.base import ClipRequest, ImageRequest, SpeechLine, SpokenChunk
from common.audio.voices import Voice, VoiceLibrary
from common.offline import espeak  # standard library only: the engines below import NumPy and Pillow when used

if TYPE_CHECKING:
    from common.video.animation import FrameRule


def voice_indices(library: VoiceLibrary) -> dict[str, int]:
    """Each stem's rank among voices of its gender: rank k gets the k-th distinct eSpeak voice."""
    ranks: dict[str, int] = {}
    by_gender: dict[str | None, list[str]] = {}
    for stem in sorted(library.voices):
        by_gender.setdefault(library.voices[stem].gender, []).append(stem)
    for stems in by_gender.values():
        for index, stem in enumerate(stems):
            ranks[stem] = index
    return ranks


@dataclass
class _Offline:
    """What every offline engine is: a preview, made one job at a time (each job already uses every core, or
    takes no time). `name` and `preview` are keywords, after each engine's own fields."""

    parallel_jobs = 1
    follows_seed = False  # the same inputs make the same output whatever the seed: a retake would repeat it
    name: str = field(default="offline", kw_only=True)
    preview: bool = field(default=True, kw_only=True)


@dataclass
class OfflineSpeech(_Offline):
    """Each line synthesised alone, so line timings are exact."""

    sample_rate: int = 44100
    line_pause: float = 0.3
    indices: Mapping[str, int] = field(default_factory=dict)

    def identity(self) -> dict[str, object]:
        return {"engine": "offline-espeak", "version": 1, "sample_rate": self.sample_rate, "pause": self.line_pause}

    def espeak_voice(self, voice: Voice) -> espeak.EspeakVoice:
        return espeak.voice_for(voice.gender or "n", self.indices.get(voice.stem, 0))

    def speak_chunk(self, lines: Sequence[SpeechLine], out_wav: Path, *, seed: int) -> SpokenChunk:
        # Scratch space outside the project: a killed run must leave no folder among the outputs.
        with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
            pieces = [Path(tmp) / f"{number:03d}.wav" for number in range(len(lines))]
            # Each synthesis is its own short-lived worker process, so lines run in parallel.
            with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
                list(pool.map(lambda job: espeak.synthesize(job[0].text, self.espeak_voice(job[0].voice), job[1],
                                                            sample_rate=self.sample_rate), zip(lines, pieces)))
            spans = media.concat_wavs(pieces, out_wav, sample_rate=self.sample_rate, gap_seconds=self.line_pause)
        return SpokenChunk(out_wav, tuple((round(a, 4), round(b, 4)) for a, b in spans), "exact")


@dataclass
class OfflineSound(_Offline):
    """Procedural effects for the vocabulary `sounds()` names; silence for anything else."""

    sample_rate: int = 44100

    def identity(self) -> dict[str, object]:
        from common.offline import sfx

        return {"engine": "offline-sfx", "version": 2, "vocabulary": sfx.VERSION, "sample_rate": self.sample_rate}

    def sounds(self) -> tuple[str, ...]:
        """The sounds this engine can make (what the offline text engine may propose)."""
        from common.offline import sfx

        return sfx.names()

    def sound_effect(self, description: str, seconds: float, out_wav: Path, *, seed: int) -> Path:
        from common.offline import sfx

        return media.write_wav(out_wav, sfx.synthesize(description, seconds, self.sample_rate, seed), self.sample_rate)


@dataclass
class OfflineImage(_Offline):
    """Storyboard cards that show the item's id, place, people and action."""


    def identity(self) -> dict[str, object]:
        return {"engine": "offline-cards", "version": 4}  # 4: character and location cards show their seed (a retake differs)

    def kind_identity(self, kind: str) -> dict[str, object]:
        from common.offline import layers

        return {**self.identity(), "layers": layers.VERSION}

    def image(self, request: ImageRequest, out_png: Path) -> Path:
        from common.offline import cards, layers

        text = request.caption or request.prompt  # a card shows the description, not the whole prompt
        take = f"\nseed {request.seed}"
        # The layered keyframes (common.offline.layers): `title` is a plate's time of day or a composite's scene id.
        if request.kind == "plate":
            return layers.plate_card(request.item_id, request.title, text, out_png, request.width, request.height,
                                     start=request.input_image, denoise=request.denoise)
        if request.kind == "pose":  # the last reference is the most specific: the sheet panel of the expression
            return layers.pose_card(request.reference_images[-1], request.details, out_png, request.width, request.height)
        if request.kind == "composite":
            return layers.composite(request.reference_images[0], request.reference_images[1:], request.layout, out_png,
                                    request.width, request.height, request.title)
        if request.kind == "character":
            return cards.character_card(request.item_id, text, out_png, request.width, request.height, take=take)
        if request.kind == "sheet":  # one panel of a character sheet; `title` is its view or expression
            return cards.sheet_panel_card(request.item_id, request.title, text, out_png, request.width, request.height)
        if request.kind == "location":
            return cards.location_card(request.item_id, text, out_png, request.width, request.height, take=take)
        if request.kind == "thumbnail":
            # A picture only, coloured by the prompt: 10.thumbnail.py draws the title where
            # TITLE_POSITION says, and Shorts burn captions over it, so no text of its own.
            return cards.draw_card(out_png, width=request.width, height=request.height, title="",
                                   palette=cards.palette_from_text(request.prompt), seed_text=request.prompt)
        people = [(d.split(":", 1)[0], d.split(":", 1)[1].strip() if ":" in d else "") for d in request.details]
        return cards.scene_card(request.item_id, text, people, out_png, request.width, request.height)


@dataclass
class OfflineAnimation(_Offline):
    """A Ken Burns move over the scene's still: the camera move the motion prompt asked for
    (ClipRequest.camera), else one chosen per scene so consecutive clips differ. Any length in
    one job, so a scene is always a single clip; an end picture cannot be honoured by a move
    over one still and is ignored."""


    def identity(self) -> dict[str, object]:
        return {"engine": "offline-kenburns", "version": 2}

    def frame_rule(self) -> "FrameRule":
        from common.video.animation import FrameRule

        return FrameRule(1, None, "kenburns")

    def talk_rule(self) -> None:
        return None  # a speaking shot is one direct job: the talking card takes the line's audio itself

    def animate(self, request: ClipRequest, out_mp4: Path) -> Path:
        from common.offline import kenburns

        if request.audio is not None and request.speaker is not None:
            return self._talking(request, out_mp4)
        move = request.camera if request.camera in kenburns.MOVES else None
        return kenburns.ken_burns(
            request.image, out_mp4, seconds=request.frame_count / request.fps, width=request.width,
            height=request.height, fps=request.fps, move=move, seed_text=request.scene_id,
        )

    def _talking(self, request: ClipRequest, out_mp4: Path) -> Path:
        """A speaking shot: the speaker's card, the mouth following the line's loudness."""
        from common.offline.talking import talking_card
        from common.video.speaking import envelope, read_pcm

        assert request.audio is not None and request.speaker is not None
        data, rate, channels, width = read_pcm(request.audio)
        speech = max(1, math.ceil(len(data) // (channels * width) * request.fps / rate - 1e-6))
        levels = envelope(request.audio, speech, request.fps)
        tag, text = request.speaker
        return talking_card(tag, text, levels, out_mp4, width=request.width, height=request.height, fps=request.fps,
                            lead=request.lead, frames=request.frame_count)
