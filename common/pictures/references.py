"""Reference pictures for an edit model: what a scene's characters and place look like.

Flux Kontext (`add_reference_latents`): each uploaded picture becomes LoadImage ->
FluxKontextImageScale -> VAEEncode -> ReferenceLatent, and the ReferenceLatents cascade on the
positive prompt's conditioning, as the seed system's 3.scene.py built them. Everything that used
the prompt's conditioning for guidance or sampling (the seed's scene.json: FluxGuidance; a plain
graph: the sampler's `positive`) then takes the last ReferenceLatent instead; the zeroed negative
keeps the bare prompt.

Qwen-Image-Edit (`set_edit_images`): the pictures are the text encoder's own inputs
(TextEncodeQwenImageEditPlus `image1`..`image3`, the layered keyframes' plate and posed
characters), each fed by a LoadImage, possibly through a scaling node; the k-th picture goes to
the loader behind every encoder's `image<k>`. Both found by class and links, so a user's own
workflow is wired the same way.
"""
from __future__ import annotations

from typing import Sequence

from common.services.comfyui.workflow import Workflow
from common.run.errors import InputError

_ZEROING = ("ConditioningZeroOut",)
# Edit encoders that take their pictures as inputs, and the names of those inputs in order.
EDIT_IMAGE_INPUTS = {"TextEncodeQwenImageEditPlus": ("image1", "image2", "image3"),
                     "TextEncodeQwenImageEdit": ("image",)}


def _vae_link(workflow: Workflow, need: str) -> list[object]:
    for node_id in workflow.find("VAEDecode", "VAEEncode"):
        link = workflow.link(node_id, "vae")
        if link is not None:
            return list(link)
    raise InputError(f"{workflow.source} has no VAEDecode with a VAE, which {need} needs; use a workflow that decodes with a VAE.")


def add_reference_latents(workflow: Workflow, image_names: Sequence[str]) -> list[str]:
    """Wire one reference latent per uploaded picture (names as ComfyUI returned them).

    Returns the ReferenceLatent node ids in chain order; nothing changes when there are no
    pictures. Call it after the prompt's conditioning is complete (dangling links bridged).
    """
    if not image_names:
        return []
    need = "reference images (ACTIVE_CHARACTER_MODE / ACTIVE_LOCATION_MODE with IMAGE)"
    encoders = workflow.positive_prompt_ids()
    if not encoders:
        raise InputError(f"{workflow.source} has no positive prompt encoder to attach {need} to; use a workflow with a CLIPTextEncode.")
    encoder = encoders[0]
    users = [(node_id, name) for node_id, name in workflow.consumers(encoder, 0) if workflow.class_of(node_id) not in _ZEROING]
    vae = _vae_link(workflow, need)
    previous: list[object] = [encoder, 0]
    chain: list[str] = []
    for number, name in enumerate(image_names, start=1):
        loader = workflow.add_node("LoadImage", {"image": name}, title=f"reference {number}")
        scaled = workflow.add_node("FluxKontextImageScale", {"image": [loader, 0]}, title=f"reference {number} scale")
        latent = workflow.add_node("VAEEncode", {"pixels": [scaled, 0], "vae": list(vae)}, title=f"reference {number} latent")
        reference = workflow.add_node("ReferenceLatent", {"conditioning": previous, "latent": [latent, 0]},
                                      title=f"reference {number}")
        previous = [reference, 0]
        chain.append(reference)
    for node_id, name in users:
        workflow.connect(node_id, name, chain[-1], 0)
    return chain



def edit_encoders(workflow: Workflow) -> list[str]:
    """The nodes that take reference pictures as their own inputs (Qwen-Image-Edit's encoders)."""
    return workflow.find(*EDIT_IMAGE_INPUTS)


def _loader_behind(workflow: Workflow, node_id: str, name: str) -> str | None:
    """The LoadImage an IMAGE input comes from, through single-image nodes (ImageScaleToTotalPixels & co)."""
    link = workflow.link(node_id, name)
    seen: set[str] = set()
    while link is not None and link[0] in workflow.nodes and link[0] not in seen:
        source = link[0]
        seen.add(source)
        if workflow.class_of(source) == "LoadImage":
            return source
        link = workflow.link(source, "image")
    return None


def _drop_unused(workflow: Workflow, node_ids: Sequence[str]) -> None:
    """Remove the given nodes, and what fed only them, once nothing consumes them any more."""
    pending = list(node_ids)
    while pending:
        node_id = pending.pop()
        if node_id not in workflow.nodes or workflow.consumers(node_id):
            continue
        sources = [src for _, (src, _) in workflow.links_of(node_id)]
        del workflow.nodes[node_id]
        pending += [s for s in sources if workflow.class_of(s) in ("LoadImage", "ImageScaleToTotalPixels", "ImageScale",
                                                                   "ImageScaleBy", "FluxKontextImageScale")]


def set_edit_images(workflow: Workflow, image_names: Sequence[str]) -> None:
    """Give the edit encoders their pictures (names as ComfyUI returned them), in order.

    The k-th picture goes to the LoadImage behind every encoder's k-th image input; an input with
    no loader gets a new LoadImage; the inputs beyond the pictures are unset and their loaders
    removed, so one file serves one, two or three pictures.
    """
    encoders = edit_encoders(workflow)
    if not encoders:
        raise InputError(f"{workflow.source} has no TextEncodeQwenImageEditPlus to give the pictures to; "
                         "use a Qwen-Image-Edit workflow.")
    slots = min(len(EDIT_IMAGE_INPUTS[workflow.class_of(e)]) for e in encoders)
    if len(image_names) > slots:
        raise InputError(f"{workflow.source} takes {slots} picture(s) per job and this job has {len(image_names)}; "
                         "use a workflow whose encoder takes image1 to image3 (TextEncodeQwenImageEditPlus).")
    dropped: list[str] = []
    for index in range(slots):
        inputs = [(encoder, EDIT_IMAGE_INPUTS[workflow.class_of(encoder)][index]) for encoder in encoders]
        if index >= len(image_names):
            for encoder, name in inputs:
                link = workflow.link(encoder, name)
                workflow.nodes[encoder]["inputs"].pop(name, None)
                if link is not None:
                    dropped.append(link[0])
            continue
        found = {encoder: _loader_behind(workflow, encoder, name) for encoder, name in inputs}
        loaders = list(dict.fromkeys(loader for loader in found.values() if loader is not None))
        if None in found.values():  # an encoder without a picture there: it gets the slot's (new) loader
            if not loaders:
                loaders.append(workflow.add_node("LoadImage", {"image": ""}, title=f"image {index + 1}"))
            for encoder, name in inputs:
                if found[encoder] is None:
                    workflow.connect(encoder, name, loaders[0], 0)
        for loader in loaders:
            workflow.nodes[loader]["inputs"]["image"] = image_names[index]
    _drop_unused(workflow, dropped)
