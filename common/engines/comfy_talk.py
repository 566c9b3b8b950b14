"""The ComfyUI graph of one speaking-shot job (Wan 2.2 S2V), made from gen.video/workflow/speak_wan.json.

A speaking clip is planned as chunks (common.video.speaking.TalkPlan). The first chunk is the template
as it stands: the scene's picture as the reference image, the speaker's whole line as the audio. A
later chunk turns the template's WanSoundImageToVideo into WanSoundImageToVideoExtend, fed with the
latent of every chunk before it (the previous job's SaveLatent file, uploaded again): that node reads
the line on from where the latent ends (frame_offset = latent frames * 4) and carries the motion on from
the latent's last frames, which is the S2V way of starting a segment from the previous one's last frame.
The new latent is appended to the old one (LatentConcat on t). A chunk that is not the last keeps only
that latent (SaveLatent, the checkpoint the next job starts from); the last decodes the whole of it.
The video carries no sound: the film has its own mix.

Like every patch here, the nodes are found by class and links, not ids, so a user's own S2V workflow
exported with "Export (API)" works as long as it has the same kinds of nodes.
"""
from __future__ import annotations

from pathlib import Path

from common.engines.base import ClipRequest
from common.run.errors import InputError
from common.services.comfyui.workflow import Workflow

SOUND_TO_VIDEO = "WanSoundImageToVideo"
EXTEND = "WanSoundImageToVideoExtend"
# Inputs the extension node does not have: it takes the size and the motion from the latent it extends.
_NOT_IN_EXTEND = ("width", "height", "batch_size", "ref_motion")
LATENT_PREFIX = "latents/s2v"
NEED = "a speaking shot (lip sync)"


def _fix(workflow: Workflow, what: str) -> InputError:
    return InputError(f"{workflow.source} has no {what}, which {NEED} needs; use the shipped speak_wan.json "
                      "or set SPEAKING_SHOTS to false.")


def _decoders(workflow: Workflow) -> list[str]:
    decoders = workflow.find("VAEDecode", "VAEDecodeTiled")
    if not decoders:
        raise _fix(workflow, "VAEDecode node")
    return decoders


def _extend(workflow: Workflow, node_id: str, latent_name: str) -> None:
    """Make the graph continue the clip saved in `latent_name` instead of starting it."""
    node = workflow.node(node_id)
    node["class_type"] = EXTEND
    for name in _NOT_IN_EXTEND:
        node["inputs"].pop(name, None)
    loaded = workflow.add_node("LoadLatent", {"latent": latent_name}, title="the speaking clip so far")
    node["inputs"]["video_latent"] = [loaded, 0]
    for decoder in _decoders(workflow):
        sampled = workflow.link(decoder, "samples")
        if sampled is None:
            raise _fix(workflow, "VAEDecode fed by the sampler")
        joined = workflow.add_node("LatentConcat", {"samples1": [loaded, 0], "samples2": list(sampled), "dim": "t"},
                                   title="the clip so far and this chunk")
        workflow.connect(decoder, "samples", joined)


def _keep_latent(workflow: Workflow) -> None:
    """Cut the graph down to saving the latent so far: nothing is decoded until the last chunk."""
    samples = workflow.link(_decoders(workflow)[0], "samples")
    if samples is None:
        raise _fix(workflow, "VAEDecode fed by the sampler")
    saver = workflow.add_node("SaveLatent", {"samples": list(samples), "filename_prefix": LATENT_PREFIX},
                              title="the speaking clip so far")
    workflow.keep_only(workflow.ancestors(saver))


def talk_workflow(template: Path, request: ClipRequest, *, fps: float, image: str, audio: str,
                  latent: str | None) -> Workflow:
    """The graph of one chunk: `image`, `audio` and `latent` are the names ComfyUI gave the uploads;
    `latent` None is the first chunk; `request.keep_latent` a chunk that is not the last."""
    workflow = Workflow.load(template)
    found = workflow.find(SOUND_TO_VIDEO)
    if len(found) != 1:
        raise _fix(workflow, f"single {SOUND_TO_VIDEO} node") if found else _fix(workflow, f"{SOUND_TO_VIDEO} node")
    for node_id in workflow.find("SaveImage", "PreviewImage"):
        del workflow.nodes[node_id]
    workflow.set_prompt(request.prompt, required_for=NEED)
    workflow.set_seed(request.seed)
    workflow.set_length(request.frame_count, required_for=NEED)
    workflow.set_fps(fps)
    loaders = workflow.find("LoadAudio")
    if not loaders:
        raise _fix(workflow, "LoadAudio node for the speaker's line")
    for node_id in loaders:
        workflow.node(node_id)["inputs"]["audio"] = audio
        for consumer, name in workflow.consumers(node_id):
            if workflow.class_of(consumer) == "CreateVideo":
                del workflow.node(consumer)["inputs"][name]  # a silent clip: final.wav is the film's sound
    pictures = workflow.load_image_ids()
    if not pictures:
        raise _fix(workflow, "LoadImage node for the reference picture")
    for node_id in pictures:
        workflow.node(node_id)["inputs"]["image"] = image
    if latent is None:
        workflow.set_size(request.width, request.height, required_for=NEED)
    else:
        _extend(workflow, found[0], latent)
    if request.keep_latent:
        _keep_latent(workflow)
    return workflow
