"""ComfyUI: the HTTP/WebSocket client, API-format workflow editing, and speech-job building."""
from common.comfyui.client import (
    ComfyClient,
    ComfyJobError,
    ExecutionError,
    JobInterruptedError,
    JobLostError,
    JobTimeoutError,
    MissingModelError,
    MissingNodeError,
    OutOfMemoryJobError,
    Progress,
    WorkflowRejectedError,
    model_folder,
    safe_filename,
)
from common.comfyui.speech import build_speech_prompt, find_tts_node, speaker_order
from common.comfyui.workflow import Workflow

__all__ = [
    "ComfyClient", "ComfyJobError", "ExecutionError", "JobInterruptedError", "JobLostError", "JobTimeoutError",
    "MissingModelError", "MissingNodeError", "OutOfMemoryJobError", "Progress", "WorkflowRejectedError",
    "Workflow", "build_speech_prompt", "find_tts_node", "model_folder", "safe_filename", "speaker_order",
]
