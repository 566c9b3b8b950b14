"""Reference pictures for an edit model (Flux Kontext): what a scene's characters and place look like.

Each uploaded picture becomes LoadImage -> FluxKontextImageScale -> VAEEncode -> ReferenceLatent,
and the ReferenceLatents cascade on the positive prompt's conditioning, as the seed system's
3.scene.py built them. Everything that used the prompt's conditioning for guidance or sampling
(the seed's scene.json: FluxGuidance; a plain graph: the sampler's `positive`) then takes the
last ReferenceLatent instead; the zeroed negative keeps the bare prompt. Found by class and
links, so a user's own Kontext workflow is wired the same way.
"""
from __future__ import annotations

from typing import Sequence

from common.services.comfyui.workflow import Workflow
from common.run.errors import InputError

_ZEROING = ("ConditioningZeroOut",)


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

