"""Build one multi-speaker TTS job for ComfyUI, the way the seed system's story.json expects.

The template holds a multi-speaker TTS node (ComfyUI-OmniVoice-TTS's OmniVoiceMultiSpeakerTTS)
and a save node. Per chunk: the speakers, in order of first appearance, become slots 1..N;
every line is rewritten `[Speaker_N]: text`; each slot's voice file is uploaded and loaded by
a LoadAudio node wired to `num_speakers.speaker_N_audio`, with `speaker_N_ref_text` set from
the voice's transcript. The TTS node is found by its `num_speakers` input, not its class name,
so another pack with the same dynamic inputs plugs in unchanged.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from common.services.comfyui.workflow import Workflow
from common.run.errors import InputError

MAX_SPEAKERS = 10  # the OmniVoice node offers 2..10 speaker slots
# OmniVoice's num_speakers choices start at 2; a one-speaker chunk fills slot 2 with the same voice.
MIN_SLOTS = 2
SLOT_KEY = "num_speakers"


class VoiceLike(Protocol):
    wav: Path
    reference_text: str


def find_tts_node(workflow: Workflow) -> str:
    """The id of the node whose inputs include `num_speakers` (the multi-speaker TTS node)."""
    found = [n for n in workflow.ids()
             if any(k == SLOT_KEY or k.startswith(SLOT_KEY + ".") for k in workflow.node(n)["inputs"])]
    if not found:
        raise InputError(
            f"{workflow.source} has no multi-speaker TTS node (a node with a num_speakers input, such as "
            "OmniVoiceMultiSpeakerTTS), which speech through ComfyUI needs; use the shipped workflow/story.json."
        )
    return found[0]


def speaker_order(lines: Sequence[tuple[str, str]]) -> list[str]:
    """Speaker tags in order of first appearance: slot 1 is whoever speaks first."""
    return list(dict.fromkeys(tag for tag, _ in lines))


def speech_text(lines: Sequence[tuple[str, str]], slots: Mapping[str, int]) -> str:
    """`[Speaker_N]: text` lines; a line's own newlines would start a new turn, so they become spaces."""
    return "\n".join(f"[Speaker_{slots[tag]}]: {' '.join(text.split())}" for tag, text in lines)


def default_seed(text: str) -> int:
    """A seed fixed by the chunk's text: the same chunk sounds the same on a rerun (OmniVoice: 0 means random)."""
    return 1 + int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") % (2**31 - 2)


def build_speech_prompt(
    workflow: Workflow | Mapping[str, Any],
    lines: Sequence[tuple[str, str]],
    voices: Mapping[str, VoiceLike],
    upload: Callable[[Path], str],
    *,
    seed: int | None = None,
    voice_map: str = "the voice map",
    filename_prefix: str | None = None,
) -> dict[str, Any]:
    """The API prompt for one chunk of dialogue; `workflow` itself is left untouched.

    `upload(path)` sends a voice file to ComfyUI and returns the name LoadAudio must use.
    """
    if not isinstance(workflow, Workflow):
        workflow = Workflow.from_data(dict(workflow), "the speech workflow")
    if not lines:
        raise InputError(f"a speech chunk for {workflow.source} has no lines; nothing to say.")
    order = speaker_order(lines)
    missing = [tag for tag in order if tag not in voices]
    if missing:
        raise InputError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in {voice_map}; "
            "add a line `tag  voice_stem` for each, or run 1.character.py to assign voices."
        )
    if len(order) > MAX_SPEAKERS:
        raise InputError(
            f"this chunk has {len(order)} speakers ({', '.join(order)}), more than the {MAX_SPEAKERS} one TTS job can voice; "
            "run again with a smaller --chunk-size."
        )
    wf = workflow.copy()
    tts_id = find_tts_node(wf)
    inputs = wf.node(tts_id)["inputs"]
    for key in [k for k in inputs if k.startswith(SLOT_KEY + ".")]:
        del inputs[key]  # the template's own speakers must not leak into this chunk
    slots = {tag: index for index, tag in enumerate(order, start=1)}
    loaders: dict[str, str] = {}
    for tag in order:
        voice = voices[tag]
        name = upload(Path(voice.wav))
        loaders[tag] = wf.add_node("LoadAudio", {"audio": name}, title=f"Voice of {tag}")
    slot_tags = order + [order[-1]] * max(0, MIN_SLOTS - len(order))
    for slot, tag in enumerate(slot_tags, start=1):
        inputs[f"{SLOT_KEY}.speaker_{slot}_audio"] = [loaders[tag], 0]
        inputs[f"{SLOT_KEY}.speaker_{slot}_ref_text"] = voices[tag].reference_text.strip()
        inputs[f"{SLOT_KEY}.speaker_{slot}_instruct"] = ""
    text = speech_text(lines, slots)
    inputs["text"] = text
    inputs[SLOT_KEY] = str(len(slot_tags))
    # OmniVoice seeds are 0..2**31-1 and 0 means "random": keep any caller's seed in range and non-zero.
    wf.set_seed(default_seed(text) if seed is None else (int(seed) % (2**31 - 1) or 1))
    if filename_prefix is not None:
        wf.set_filename_prefix(filename_prefix)
    return wf.to_prompt()
