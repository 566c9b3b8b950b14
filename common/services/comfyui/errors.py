"""ComfyUI's refusals and failures as our errors: the error classes, and what the server says (a
/prompt refusal, a node's execution error, a failed history entry) read into one sentence that
says what to fix. What /object_info lacks for a workflow, asked before queueing, is `checks`."""
from __future__ import annotations

import re
from typing import Any

from common.run.errors import JobError, ServiceError

# Which ComfyUI/models folder a loader input reads from; (class, input) first, then input alone.
_CLASS_INPUT_FOLDERS = {
    ("UnetLoaderGGUF", "unet_name"): "unet",
    ("UnetLoaderGGUFAdvanced", "unet_name"): "unet",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("OmniVoiceMultiSpeakerTTS", "model"): "omnivoice",
}
_INPUT_FOLDERS = {
    "ckpt_name": "checkpoints", "vae_name": "vae", "lora_name": "loras", "unet_name": "diffusion_models",
    "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
    "clip_name3": "text_encoders", "clip_name4": "text_encoders", "control_net_name": "controlnet",
    "style_model_name": "style_models", "audio_encoder_name": "audio_encoders", "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks", "model_patch_name": "model_patches",
}


def model_folder(class_type: str, input_name: str) -> str | None:
    """The ComfyUI/models subfolder a loader's file input reads from, if it is a model input."""
    return _CLASS_INPUT_FOLDERS.get((class_type, input_name)) or _INPUT_FOLDERS.get(input_name)


class ComfyJobError(JobError):
    """A job ComfyUI refused or failed; carries what the engine may want to act on."""

    def __init__(self, message: str, *, prompt_id: str | None = None, node_id: str | None = None,
                 node_type: str | None = None) -> None:
        super().__init__(message)
        self.prompt_id, self.node_id, self.node_type = prompt_id, node_id, node_type


class WorkflowRejectedError(ComfyJobError):
    """POST /prompt said no (validation): nothing ran, and no other job of the graph would run."""

    affects_every_item = True

    def __init__(self, message: str, *, node_errors: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.node_errors = node_errors or {}


class MissingNodeError(WorkflowRejectedError):
    """The workflow uses a node class this ComfyUI lacks: a custom node pack is not installed."""


class MissingModelError(WorkflowRejectedError):
    """A loader names a model file this ComfyUI does not have."""

    def __init__(self, message: str, *, model_file: str, folder: str | None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.model_file, self.folder = model_file, folder


class ExecutionError(ComfyJobError):
    """A node raised while the job ran (`execution_error`)."""

    def __init__(self, message: str, *, exception_type: str = "", exception_message: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.exception_type, self.exception_message = exception_type, exception_message


class OutOfMemoryJobError(ExecutionError):
    """The GPU (or RAM) ran out during the job; freeing memory and retrying may work."""


class JobInterruptedError(ComfyJobError):
    """Someone interrupted the job (Cancel in the UI, POST /interrupt)."""


class JobLostError(ComfyJobError):
    """ComfyUI no longer knows the job (restarted, queue cleared): submit it again."""


class JobTimeoutError(ComfyJobError):
    """The job did not finish in time; it was interrupted so the GPU is free again."""


class JobStalledError(ComfyJobError):
    """The watchdog saw no progress for too long and interrupted the job: retrying may work."""


class ServerAnswerError(ServiceError):
    """ComfyUI answered, but with an error or nonsense (a 5xx, not JSON): retrying elsewhere won't help."""


class ServerStuckError(ServiceError):
    """ComfyUI did not stop a stalled job when asked: only restarting it frees the GPU."""



def first_line(text: Any, limit: int = 300) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_rejection(error: dict[str, Any] | None, node_errors: dict[str, Any] | None,
                       prompt: dict[str, Any] | None = None) -> WorkflowRejectedError:
    """Turn a /prompt 400 body (or a 200 with node_errors) into one error with one sentence."""
    error = error or {}
    node_errors = node_errors or {}
    prompt = prompt or {}
    if error.get("type") == "invalid_prompt":
        match = re.search(r"node (\S+) does not exist", str(error.get("message", "")))
        node_id = re.sub(r"[^\w.-]", "", str(error.get("details", "")).replace("Node ID", ""))
        cls = match.group(1) if match else str(prompt.get(node_id, {}).get("class_type", "?"))
        if match:
            return MissingNodeError(
                f"ComfyUI has no node type {cls} (node {node_id} of the workflow): a custom node pack is missing; "
                f"install the pack that provides {cls} into ComfyUI/custom_nodes (see ComfyUI/README.md) and restart ComfyUI.",
                node_id=node_id, node_type=cls)
        return WorkflowRejectedError(f"ComfyUI refused the workflow: {first_line(error.get('message'))} ({error.get('details', '')}).")
    problems = [
        (node_id, info.get("class_type") or prompt.get(node_id, {}).get("class_type", "?"), reason)
        for node_id, info in sorted(node_errors.items(), key=lambda kv: str(kv[0]))
        for reason in info.get("errors", [])
    ]
    if not problems:
        text = f"{error.get('message', 'the workflow was refused')}" + (f": {first_line(error['details'])}" if error.get("details") else "")
        return WorkflowRejectedError(f"ComfyUI refused the workflow ({text}); fix it in ComfyUI and export it again with \"Export (API)\".")
    # A missing model is the most common and most fixable problem: name it first.
    problems.sort(key=lambda p: p[2].get("type") != "value_not_in_list" or not model_folder(p[1], p[2].get("extra_info", {}).get("input_name", "")))
    node_id, cls, reason = problems[0]
    more = f" ({len(problems) - 1} more problem{'s' if len(problems) > 2 else ''} in the workflow after that)" if len(problems) > 1 else ""
    extra = reason.get("extra_info") or {}
    input_name = str(extra.get("input_name", reason.get("details", "")))
    value = extra.get("received_value")
    kind = reason.get("type")
    common = {"node_id": node_id, "node_type": cls, "node_errors": node_errors}
    if kind == "value_not_in_list":
        folder = model_folder(cls, input_name)
        if folder:
            return MissingModelError(
                f"ComfyUI does not have the model file {value} that node {node_id} ({cls}) needs for its {input_name} input: "
                f"put it in ComfyUI/models/{folder} (see ComfyUI/README.md) and run again{more}.",
                model_file=str(value), folder=folder, **common)
        return WorkflowRejectedError(
            f"Node {node_id} ({cls}) has {input_name} = {value!r}, which this ComfyUI does not offer: choose one it lists, "
            f"or update ComfyUI and the node pack{more}.", **common)
    if kind == "custom_validation_failed" and cls in ("LoadImage", "LoadAudio"):
        # The real server names only the input here (no received_value): the file is in the node's inputs.
        value = value if value is not None else prompt.get(node_id, {}).get("inputs", {}).get(input_name)
        return WorkflowRejectedError(
            f"Node {node_id} ({cls}) needs the file {value}, which is not in ComfyUI's input folder: "
            f"upload it first (the pipeline uploads its own inputs, so check that the upload worked){more}.", **common)
    if kind == "required_input_missing":
        return WorkflowRejectedError(
            f"Node {node_id} ({cls}) is missing its required input {input_name}: connect it in ComfyUI and export "
            f"the workflow again with \"Export (API)\"{more}.", **common)
    if kind in ("exception_during_inner_validation", "exception_during_validation"):
        return WorkflowRejectedError(
            f"Node {node_id} ({cls}) links to a node the workflow does not have ({first_line(reason.get('details'))}): "
            f"fix the workflow's links and export it again with \"Export (API)\"{more}.", **common)
    detail = first_line(reason.get("details", ""))
    return WorkflowRejectedError(
        f"ComfyUI refused node {node_id} ({cls}): {reason.get('message', kind)}{': ' + detail if detail else ''}{more}.", **common)


def describe_execution_error(prompt_id: str, data: dict[str, Any]) -> ExecutionError:
    node_id = str(data.get("node_id", "?"))
    node_type = str(data.get("node_type", "?"))
    exc_type = str(data.get("exception_type", ""))
    message = str(data.get("exception_message", ""))
    kw = {"prompt_id": prompt_id, "node_id": node_id, "node_type": node_type,
          "exception_type": exc_type, "exception_message": message}
    low = message.lower()
    if "outofmemory" in exc_type.lower().replace("_", "") or "out of memory" in low or "allocation on device" in low:
        return OutOfMemoryJobError(
            f"ComfyUI ran out of GPU memory in node {node_id} ({node_type}): close other programs that use the GPU, "
            "or lower the size, length or batch, then run again.", **kw)
    return ExecutionError(
        f"ComfyUI failed in node {node_id} ({node_type}): {exc_type + ': ' if exc_type else ''}{first_line(message)}", **kw)



def succeeded(entry: dict[str, Any]) -> bool:
    status = entry.get("status")
    return not isinstance(status, dict) or status.get("status_str", "success") == "success"


def checked_entry(pid: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The history entry of a job that succeeded; the error it ended with otherwise."""
    if succeeded(entry):
        return entry
    for event, data in reversed(entry["status"].get("messages") or []):
        if event == "execution_error":
            raise describe_execution_error(pid, data)
        if event == "execution_interrupted":
            raise JobInterruptedError(
                f"ComfyUI job {pid} was interrupted in node {data.get('node_id')} ({data.get('node_type')}): "
                "someone pressed Cancel or called /interrupt; run again to redo it.",
                prompt_id=pid, node_id=str(data.get("node_id")), node_type=str(data.get("node_type")))
    raise ComfyJobError(f"ComfyUI job {pid} failed without saying why; see ComfyUI's console output.", prompt_id=pid)
