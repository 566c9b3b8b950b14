#!/usr/bin/env python
"""A protocol-faithful fake ComfyUI server, run as its own process by tests.

    python tests/fakes/fake_comfyui.py --port 0 --job-seconds 0.2 --record events.jsonl

It answers like ComfyUI 0.8 does (shared/COMFYUI_API.md): the same routes (also under /api),
the same validation errors, the same WebSocket message order, a one-at-a-time queue, output
files that are real media (PNG, FLAC/MP3, H.264 MP4) sized by the graph, per-node caching of
the previous prompt. As in ComfyUI, only samplers send `progress` and take an interrupt mid-node;
every other node (a model load, a VAE decode, a save, a TTS node) is silent while it works and an
interrupt lands only once it has ended (--node-seconds makes such nodes slow). Model-free: nodes
are "executed" by reading the graph (sizes, lengths, frame rates, text) and drawing or
synthesising something that follows from it, so different prompts give different files.

Failure switches (--fail-mode, --missing-node, --missing-model, --ws) make the unhappy paths
reachable; --record appends one JSON line per event, flushed at once, so a test can count jobs
across restarts of this process and kills of its client.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from PIL import Image


# =============================================================================== node registry
# The node classes this fake knows, in the shape /object_info gives them: enough for the six seed
# workflows and the graphs the pipelines build. Model-file combos are resolved per request from
# the fake's model folders; LoadImage/LoadAudio list the input folder live, as ComfyUI does.

MAX_RES = 16384


@dataclass(frozen=True)
class Files:
    """A combo whose options are the model files of one ComfyUI/models folder."""

    folder: str
    suffixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputFiles:
    """A combo listing the files in the input folder (LoadImage, LoadAudio), validated by content."""

    kind: str  # "image" | "audio"


@dataclass
class NodeDef:
    name: str
    required: dict[str, tuple[Any, dict[str, Any]]]
    optional: dict[str, tuple[Any, dict[str, Any]]] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    output_node: bool = False
    category: str = ""
    display_name: str | None = ""
    python_module: str = "nodes"
    description: str = ""


REGISTRY: dict[str, NodeDef] = {}

SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep",
    "res_multistep_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp",
    "gradient_estimation", "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim",
    "uni_pc", "uni_pc_bh2",
]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic", "kl_optimal"]
CLIP_TYPES = [
    "stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
    "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux2", "ovis",
]
DUAL_CLIP_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15", "kandinsky5", "kandinsky5_image", "ltxv", "newbie", "ace"]
DEVICES = ["default", "cpu"]
VHS_FORMATS = ["image/gif", "image/webp", "video/16bit-png", "video/8bit-png", "video/av1-webm", "video/ffmpeg-gif", "video/h264-mp4", "video/h265-mp4", "video/nvenc_h264-mp4", "video/ProRes", "video/webm"]

# Model files the fake "has" unless told otherwise: every file the seed workflows name, plus a few.
DEFAULT_MODELS: dict[str, list[str]] = {
    "checkpoints": ["stable-audio-open-1.0.safetensors", "sd_xl_base_1.0.safetensors"],
    "text_encoders": [
        "t5-base.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "clip_l.safetensors",
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    ],
    "vae": ["flux_kontext_vae.safetensors", "LTX2_video_vae_bf16.safetensors", "wan_2.1_vae.safetensors"],
    "unet": ["flux1-kontext-dev-Q8_0.gguf", "LTXV-13B-0.9.8-distilled-Q8_0.gguf"],
    "diffusion_models": [
        "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors",
    ],
    "loras": ["ghibli_style.safetensors", "detail_tweaker.safetensors"],
    "clip_vision": ["clip_vision_h.safetensors"],
    "upscale_models": [],
    "audio_encoders": [],
    "hypernetworks": [],
    "omnivoice": ["OmniVoice (auto download)", "OmniVoice-bf16 (auto download)"],
}


def INT(default: int = 0, lo: int | None = None, hi: int | None = None) -> tuple[str, dict[str, Any]]:
    opts: dict[str, Any] = {"default": default}
    if lo is not None:
        opts["min"] = lo
    if hi is not None:
        opts["max"] = hi
    return ("INT", opts)


def FLOAT(default: float = 0.0, lo: float | None = None, hi: float | None = None) -> tuple[str, dict[str, Any]]:
    opts: dict[str, Any] = {"default": default}
    if lo is not None:
        opts["min"] = lo
    if hi is not None:
        opts["max"] = hi
    return ("FLOAT", opts)


def STRING(multiline: bool = False, default: str = "") -> tuple[str, dict[str, Any]]:
    return ("STRING", {"multiline": multiline, "default": default})


def BOOL(default: bool = True) -> tuple[str, dict[str, Any]]:
    return ("BOOLEAN", {"default": default})


def T(type_name: str) -> tuple[str, dict[str, Any]]:
    return (type_name, {})


def COMBO(options: Any, **opts: Any) -> tuple[Any, dict[str, Any]]:
    return (options, dict(opts))


def node(name: str, required: dict, outputs: tuple[str, ...] = (), *, optional: dict | None = None,
         output_node: bool = False, category: str = "", names: tuple[str, ...] = (), module: str = "nodes",
         display_name: str | None = "", description: str = "") -> None:
    REGISTRY[name] = NodeDef(
        name, required, optional or {}, outputs, names or outputs, output_node, category,
        name if display_name == "" else display_name, module, description,
    )


def _size(default_w: int = 1024, default_h: int = 1024) -> dict:
    return {"width": INT(default_w, 16, MAX_RES), "height": INT(default_h, 16, MAX_RES), "batch_size": INT(1, 1, 4096)}


# --- loaders
node("CheckpointLoaderSimple", {"ckpt_name": COMBO(Files("checkpoints"))}, ("MODEL", "CLIP", "VAE"), category="loaders")
node("CLIPLoader", {"clip_name": COMBO(Files("text_encoders")), "type": COMBO(CLIP_TYPES)}, ("CLIP",),
     optional={"device": COMBO(DEVICES)}, category="advanced/loaders")
node("DualCLIPLoader", {"clip_name1": COMBO(Files("text_encoders")), "clip_name2": COMBO(Files("text_encoders")),
                        "type": COMBO(DUAL_CLIP_TYPES)}, ("CLIP",), optional={"device": COMBO(DEVICES)}, category="advanced/loaders")
node("VAELoader", {"vae_name": COMBO(Files("vae"))}, ("VAE",), category="loaders")
node("UNETLoader", {"unet_name": COMBO(Files("diffusion_models")),
                    "weight_dtype": COMBO(["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"])}, ("MODEL",), category="advanced/loaders")
node("UnetLoaderGGUF", {"unet_name": COMBO(Files("unet", (".gguf",)))}, ("MODEL",), category="bootleg", module="custom_nodes.ComfyUI-GGUF")
node("LoraLoader", {"model": T("MODEL"), "clip": T("CLIP"), "lora_name": COMBO(Files("loras")),
                    "strength_model": FLOAT(1.0, -100, 100), "strength_clip": FLOAT(1.0, -100, 100)}, ("MODEL", "CLIP"), category="loaders")
node("LoraLoaderModelOnly", {"model": T("MODEL"), "lora_name": COMBO(Files("loras")),
                             "strength_model": FLOAT(1.0, -100, 100)}, ("MODEL",), category="loaders")
node("CLIPVisionLoader", {"clip_name": COMBO(Files("clip_vision"))}, ("CLIP_VISION",), category="loaders")
# Loaders written against ComfyUI's newer node API: /object_info gives their combos as ["COMBO", {...}].
node("UpscaleModelLoader", {"model_name": COMBO(Files("upscale_models"))}, ("UPSCALE_MODEL",), category="loaders",
     module="comfy_extras.nodes_upscale_model", display_name="Load Upscale Model")
node("TripleCLIPLoader", {f"clip_name{n}": COMBO(Files("text_encoders")) for n in (1, 2, 3)}, ("CLIP",),
     category="advanced/loaders", module="comfy_extras.nodes_sd3", display_name=None,
     description="[Recipes]\n\nsd3: clip-l, clip-g, t5")
node("QuadrupleCLIPLoader", {f"clip_name{n}": COMBO(Files("text_encoders")) for n in (1, 2, 3, 4)}, ("CLIP",),
     category="advanced/loaders", module="comfy_extras.nodes_hidream", display_name=None,
     description="[Recipes]\n\nhidream: long clip-l, long clip-g, t5xxl, llama_8b_3.1_instruct")
node("AudioEncoderLoader", {"audio_encoder_name": COMBO(Files("audio_encoders"))}, ("AUDIO_ENCODER",), category="loaders",
     module="comfy_extras.nodes_audio_encoder", display_name=None)
node("HypernetworkLoader", {"model": T("MODEL"), "hypernetwork_name": COMBO(Files("hypernetworks")),
                            "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})},
     ("MODEL",), category="loaders", module="comfy_extras.nodes_hypernetwork", display_name=None)
node("CLIPVisionEncode", {"clip_vision": T("CLIP_VISION"), "image": T("IMAGE"), "crop": COMBO(["center", "none"])},
     ("CLIP_VISION_OUTPUT",), category="conditioning")
node("ModelSamplingSD3", {"model": T("MODEL"), "shift": FLOAT(3.0, 0, 100)}, ("MODEL",), category="advanced/model")

# --- conditioning
node("CLIPTextEncode", {"text": STRING(True), "clip": T("CLIP")}, ("CONDITIONING",), category="conditioning")
node("ConditioningZeroOut", {"conditioning": T("CONDITIONING")}, ("CONDITIONING",), category="advanced/conditioning")
node("FluxGuidance", {"conditioning": T("CONDITIONING"), "guidance": FLOAT(3.5, 0, 100)}, ("CONDITIONING",), category="advanced/conditioning/flux")
node("ReferenceLatent", {"conditioning": T("CONDITIONING")}, ("CONDITIONING",), optional={"latent": T("LATENT")},
     category="advanced/conditioning/edit_models")
node("FluxKontextImageScale", {"image": T("IMAGE")}, ("IMAGE",), category="advanced/conditioning/flux")

# --- sampling
node("KSampler", {
    "model": T("MODEL"), "seed": INT(0, 0, 0xFFFFFFFFFFFFFFFF), "steps": INT(20, 1, 10000), "cfg": FLOAT(8.0, 0, 100),
    "sampler_name": COMBO(SAMPLERS), "scheduler": COMBO(SCHEDULERS), "positive": T("CONDITIONING"),
    "negative": T("CONDITIONING"), "latent_image": T("LATENT"), "denoise": FLOAT(1.0, 0, 1),
}, ("LATENT",), category="sampling")
node("KSamplerAdvanced", {
    "model": T("MODEL"), "add_noise": COMBO(["enable", "disable"]), "noise_seed": INT(0, 0, 0xFFFFFFFFFFFFFFFF),
    "steps": INT(20, 1, 10000), "cfg": FLOAT(8.0, 0, 100), "sampler_name": COMBO(SAMPLERS),
    "scheduler": COMBO(SCHEDULERS), "positive": T("CONDITIONING"), "negative": T("CONDITIONING"),
    "latent_image": T("LATENT"), "start_at_step": INT(0, 0, 10000), "end_at_step": INT(10000, 0, 10000),
    "return_with_leftover_noise": COMBO(["disable", "enable"]),
}, ("LATENT",), category="sampling")
node("KSamplerSelect", {"sampler_name": COMBO(SAMPLERS)}, ("SAMPLER",), category="sampling/custom_sampling/samplers")
node("SamplerCustom", {
    "model": T("MODEL"), "add_noise": BOOL(True), "noise_seed": INT(0, 0, 0xFFFFFFFFFFFFFFFF), "cfg": FLOAT(8.0, 0, 100),
    "positive": T("CONDITIONING"), "negative": T("CONDITIONING"), "sampler": T("SAMPLER"), "sigmas": T("SIGMAS"),
    "latent_image": T("LATENT"),
}, ("LATENT", "LATENT"), names=("output", "denoised_output"), category="sampling/custom_sampling")

# --- latents and images
node("EmptySD3LatentImage", _size(), ("LATENT",), category="latent/sd3")
node("EmptyLatentImage", _size(512, 512), ("LATENT",), category="latent")
node("EmptyImage", {**_size(512, 512), "color": INT(0, 0, 0xFFFFFF)}, ("IMAGE",), category="image")
node("VAEDecode", {"samples": T("LATENT"), "vae": T("VAE")}, ("IMAGE",), category="latent")
node("VAEDecodeTiled", {"samples": T("LATENT"), "vae": T("VAE"), "tile_size": INT(512, 64, 4096),
                        "overlap": INT(64, 0, 4096), "temporal_size": INT(64, 8, 4096),
                        "temporal_overlap": INT(8, 4, 4096)}, ("IMAGE",), category="_for_testing")
node("VAEEncode", {"pixels": T("IMAGE"), "vae": T("VAE")}, ("LATENT",), category="latent")
node("ImageScaleBy", {"image": T("IMAGE"), "upscale_method": COMBO(["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]),
                      "scale_by": FLOAT(1.0, 0.01, 8.0)}, ("IMAGE",), category="image/upscaling")
node("ImageStitch", {"image1": T("IMAGE"), "direction": COMBO(["right", "down", "left", "up"]),
                     "match_image_size": BOOL(True), "spacing_width": INT(0, 0, 1024),
                     "spacing_color": COMBO(["white", "black", "red", "green", "blue"])},
     ("IMAGE",), optional={"image2": T("IMAGE")}, category="image/transform")
node("LoadImage", {"image": COMBO(InputFiles("image"), image_upload=True)}, ("IMAGE", "MASK"), category="image")
node("SaveImage", {"images": T("IMAGE"), "filename_prefix": STRING(default="ComfyUI")}, output_node=True, category="image")
node("PreviewImage", {"images": T("IMAGE")}, output_node=True, category="image")

# --- audio
node("EmptyLatentAudio", {"seconds": FLOAT(47.6, 1.0, 1000.0), "batch_size": INT(1, 1, 4096)}, ("LATENT",), category="latent/audio")
node("VAEDecodeAudio", {"samples": T("LATENT"), "vae": T("VAE")}, ("AUDIO",), category="latent/audio")
node("EmptyAudio", {"duration": FLOAT(60.0, 0.0, 3600.0), "sample_rate": INT(44100, 1, 192000), "channels": INT(2, 1, 8)},
     ("AUDIO",), category="audio")
node("LoadAudio", {"audio": COMBO(InputFiles("audio"), audio_upload=True)}, ("AUDIO",), category="audio")
node("SaveAudio", {"audio": T("AUDIO"), "filename_prefix": STRING(default="audio/ComfyUI")}, output_node=True, category="audio")
node("SaveAudioMP3", {"audio": T("AUDIO"), "filename_prefix": STRING(default="audio/ComfyUI"),
                      "quality": COMBO(["V0", "128k", "320k"])}, output_node=True, category="audio")
node("SaveAudioOpus", {"audio": T("AUDIO"), "filename_prefix": STRING(default="audio/ComfyUI"),
                       "quality": COMBO(["64k", "96k", "128k", "192k", "320k"])}, output_node=True, category="audio")
node("PreviewAudio", {"audio": T("AUDIO")}, output_node=True, category="audio")
node("OmniVoiceMultiSpeakerTTS", {
    "model": COMBO(Files("omnivoice")), "text": STRING(True), "steps": INT(32, 4, 64),
    "guidance_scale": FLOAT(2.0, 0, 10), "t_shift": FLOAT(0.1, 0, 1), "speed": FLOAT(1.0, 0.5, 2.0),
    "pause_between_speakers": FLOAT(0.3, 0, 2), "device": COMBO(["auto", "cuda", "cpu", "mps", "xpu"]),
    "dtype": COMBO(["auto", "bf16", "fp16", "fp32"]), "attention": COMBO(["auto", "eager", "sage_attention"]),
    "position_temperature": FLOAT(5.0, 0, 20), "class_temperature": FLOAT(0.0, 0, 5),
    "layer_penalty_factor": FLOAT(5.0, 0, 20), "denoise": BOOL(True), "preprocess_prompt": BOOL(True),
    "postprocess_output": BOOL(True), "seed": INT(0, 0, 2**31 - 1), "keep_model_loaded": BOOL(True),
    "num_speakers": COMBO([str(n) for n in range(2, 11)]),
}, ("AUDIO",), category="OmniVoice", module="custom_nodes.ComfyUI-OmniVoice-TTS")

# --- video (LTX nodes are core ComfyUI: comfy_extras/nodes_lt.py)
node("EmptyLTXVLatentVideo", {"width": INT(768, 64, MAX_RES), "height": INT(512, 64, MAX_RES),
                              "length": INT(97, 1, MAX_RES), "batch_size": INT(1, 1, 4096)}, ("LATENT",), category="latent/video/ltxv")
node("LTXVImgToVideo", {"positive": T("CONDITIONING"), "negative": T("CONDITIONING"), "vae": T("VAE"), "image": T("IMAGE"),
                        "width": INT(768, 64, MAX_RES), "height": INT(512, 64, MAX_RES), "length": INT(97, 9, MAX_RES),
                        "batch_size": INT(1, 1, 4096), "strength": FLOAT(1.0, 0, 1)},
     ("CONDITIONING", "CONDITIONING", "LATENT"), names=("positive", "negative", "latent"), category="conditioning/video_models")
node("LTXVAddGuide", {"positive": T("CONDITIONING"), "negative": T("CONDITIONING"), "vae": T("VAE"), "latent": T("LATENT"),
                      "image": T("IMAGE"), "frame_idx": INT(0, -9999, 9999), "strength": FLOAT(1.0, 0, 1)},
     ("CONDITIONING", "CONDITIONING", "LATENT"), names=("positive", "negative", "latent"), category="conditioning/video_models")
node("LTXVCropGuides", {"positive": T("CONDITIONING"), "negative": T("CONDITIONING"), "latent": T("LATENT")},
     ("CONDITIONING", "CONDITIONING", "LATENT"), names=("positive", "negative", "latent"), category="conditioning/video_models")
node("LTXVConditioning", {"positive": T("CONDITIONING"), "negative": T("CONDITIONING"), "frame_rate": FLOAT(25.0, 0, 1000)},
     ("CONDITIONING", "CONDITIONING"), names=("positive", "negative"), category="conditioning/video_models")
node("LTXVScheduler", {"steps": INT(20, 1, 10000), "max_shift": FLOAT(2.05, 0, 100), "base_shift": FLOAT(0.95, 0, 100),
                       "stretch": BOOL(True), "terminal": FLOAT(0.1, 0, 0.99)}, ("SIGMAS",),
     optional={"latent": T("LATENT")}, category="sampling/custom_sampling/schedulers")
node("LTXVPreprocess", {"image": T("IMAGE"), "img_compression": INT(35, 0, 100)}, ("IMAGE",), names=("output_image",),
     category="video/preprocessors")
_wan = {"positive": T("CONDITIONING"), "negative": T("CONDITIONING"), "vae": T("VAE"), "width": INT(832, 16, MAX_RES),
        "height": INT(480, 16, MAX_RES), "length": INT(81, 1, MAX_RES), "batch_size": INT(1, 1, 4096)}
node("WanImageToVideo", dict(_wan), ("CONDITIONING", "CONDITIONING", "LATENT"), names=("positive", "negative", "latent"),
     optional={"clip_vision_output": T("CLIP_VISION_OUTPUT"), "start_image": T("IMAGE")}, category="conditioning/video_models")
node("WanFirstLastFrameToVideo", dict(_wan), ("CONDITIONING", "CONDITIONING", "LATENT"), names=("positive", "negative", "latent"),
     optional={"clip_vision_start_image": T("CLIP_VISION_OUTPUT"), "clip_vision_end_image": T("CLIP_VISION_OUTPUT"),
               "start_image": T("IMAGE"), "end_image": T("IMAGE")}, category="conditioning/video_models")
node("Wan22ImageToVideoLatent", {"vae": T("VAE"), "width": INT(1280, 32, MAX_RES), "height": INT(704, 32, MAX_RES),
                                 "length": INT(49, 1, MAX_RES), "batch_size": INT(1, 1, 4096)}, ("LATENT",),
     optional={"start_image": T("IMAGE")}, category="conditioning/inpaint")
node("CreateVideo", {"images": T("IMAGE"), "fps": FLOAT(30.0, 1.0, 120.0)}, ("VIDEO",), optional={"audio": T("AUDIO")}, category="image/video")
node("SaveVideo", {"video": T("VIDEO"), "filename_prefix": STRING(default="video/ComfyUI"),
                   "format": COMBO(["auto", "mp4"]), "codec": COMBO(["auto", "h264"])}, output_node=True, category="image/video")
node("VHS_VideoCombine", {
    "images": T("IMAGE"), "frame_rate": FLOAT(8, 1, 120), "loop_count": INT(0, 0, 100),
    "filename_prefix": STRING(default="AnimateDiff"), "format": COMBO(VHS_FORMATS), "pingpong": BOOL(False),
    "save_output": BOOL(True),
}, ("VHS_FILENAMES",), names=("Filenames",), optional={"audio": T("AUDIO"), "meta_batch": T("VHS_BatchManager"), "vae": T("VAE")},
    output_node=True, category="Video Helper Suite", module="custom_nodes.ComfyUI-VideoHelperSuite")


# Classes the real 0.8.0 server defines with its newer node API (comfy_api v3): /object_info gives every
# combo of theirs as ["COMBO", {"multiselect": false, "options": [...]}], every other input as
# [type, {...}] even when empty, and three more keys (shared/fixtures/comfyui-0.8.0-object_info.json).
V3_NODES = frozenset({
    "AudioEncoderLoader", "CreateVideo", "EmptyAudio", "EmptyLTXVLatentVideo", "EmptyLatentAudio",
    "EmptySD3LatentImage", "FluxGuidance", "FluxKontextImageScale", "HypernetworkLoader", "ImageStitch",
    "KSamplerSelect", "LTXVAddGuide", "LTXVConditioning", "LTXVCropGuides", "LTXVImgToVideo", "LTXVPreprocess",
    "LTXVScheduler", "LoadAudio", "PreviewAudio", "QuadrupleCLIPLoader", "ReferenceLatent", "SamplerCustom",
    "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveVideo", "TripleCLIPLoader", "UpscaleModelLoader",
    "VAEDecodeAudio", "Wan22ImageToVideoLatent", "WanFirstLastFrameToVideo", "WanImageToVideo",
})


def object_info_entry(d: NodeDef, resolve: Any) -> dict[str, Any]:
    """The /object_info shape of one node; `resolve` turns Files/InputFiles into today's option list."""
    v3 = d.name in V3_NODES

    def render(spec: tuple[Any, dict[str, Any]]) -> list[Any]:
        kind, opts = spec
        if isinstance(kind, (Files, InputFiles)):
            kind = resolve(kind)
        if v3 and isinstance(kind, list):
            return ["COMBO", {**opts, "multiselect": False, "options": kind}]
        return [kind, opts] if opts or v3 else [kind]

    inputs = {"required": {k: render(v) for k, v in d.required.items()}}
    if d.optional:
        inputs["optional"] = {k: render(v) for k, v in d.optional.items()}
    entry = {
        "input": inputs,
        "input_order": {k: list(v.keys()) for k, v in inputs.items()},
        "output": list(d.outputs),
        "output_is_list": [False] * len(d.outputs),
        "output_name": list(d.output_names),
        "name": d.name,
        "display_name": d.display_name,
        "description": d.description,
        "python_module": d.python_module,
        "category": d.category,
        "output_node": d.output_node,
        "deprecated": False,
        "experimental": False,
    }
    if v3:
        entry.update({"output_tooltips": [None] * len(d.outputs), "output_matchtypes": None, "api_node": False})
    return entry


# =============================================================================== media

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
AUDIO_EXT = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4")
SAMPLE_RATE = 44100
TTS_SECONDS_PER_CHAR = 0.06


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg(args: list[str], data: bytes) -> None:
    proc = subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args],
                          input=data, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("ffmpeg failed: " + proc.stderr.decode("utf-8", "replace")[-500:])


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _frames(width: int, height: int, count: int, text: str) -> np.ndarray:
    """`count` RGB frames tinted by the text's hash, with a band that moves frame to frame."""
    d = _digest(text)
    base = np.array([64 + d[0] % 192, 64 + d[1] % 192, 64 + d[2] % 192], dtype=np.float32)
    ys = np.linspace(0.55, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.75, 1.0, width, dtype=np.float32)[None, :]
    shade = (ys * xs)[:, :, None]
    still = (base[None, None, :] * shade).astype(np.uint8)
    out = np.empty((count, height, width, 3), dtype=np.uint8)
    band = max(2, width // 12)
    for i in range(count):
        frame = still.copy()
        x0 = int((i / max(1, count)) * width + d[3] * width / 255) % width
        frame[:, x0:x0 + band] = 255 - frame[:, x0:x0 + band]
        out[i] = frame
    return out


def _write_png(path: Path, frame: np.ndarray) -> None:
    Image.fromarray(frame, "RGB").save(path, format="PNG", compress_level=1)


def _write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    count, height, width, _ = frames.shape
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
            "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]
    _run_ffmpeg(args, frames.tobytes())


def _tone(seconds: float, freq: float, seed: bytes) -> np.ndarray:
    n = max(1, int(seconds * SAMPLE_RATE))
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    # A voiced-sounding tone: fundamental plus harmonics, with a syllable-rate envelope.
    wave_ = np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(4 * np.pi * freq * t) + 0.25 * np.sin(6 * np.pi * freq * t)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * (3.0 + seed[0] % 3) * t) ** 2
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    return (0.25 * wave_ * envelope * ramp).astype(np.float32)


def _noise(seconds: float, seed: bytes) -> np.ndarray:
    n = max(1, int(seconds * SAMPLE_RATE))
    rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
    white = rng.standard_normal(n).astype(np.float32)
    # A crude low-pass so it sounds like rain or fire rather than hiss.
    kernel = np.ones(8, dtype=np.float32) / 8
    return (0.3 * np.convolve(white, kernel, mode="same")).astype(np.float32)


def _write_audio(path: Path, samples: np.ndarray, fmt: str) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    codec = {"flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame", "-q:a", "0"], "opus": ["-c:a", "libopus", "-b:a", "64k"],
             "wav": ["-c:a", "pcm_s16le"]}[fmt]
    _run_ffmpeg(["-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "-", *codec, str(path)], pcm)


def _wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getnframes() / float(handle.getframerate())
    except (OSError, wave.Error, EOFError):
        return None


# =============================================================================== graph reading

def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)


def _links(node: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(name, str(v[0]), v[1]) for name, v in node.get("inputs", {}).items() if _is_link(v)]


def _upstream(prompt: dict[str, Any], node_id: str) -> list[str]:
    seen: list[str] = []
    queue = [node_id]
    while queue:
        current = queue.pop(0)
        for _, src, _ in _links(prompt[current]):
            if src in prompt and src not in seen:
                seen.append(src)
                queue.append(src)
    return seen


def _order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    """Nodes needed by `outputs`, dependencies first (what ComfyUI would execute)."""
    done: list[str] = []

    def visit(node_id: str, stack: tuple[str, ...]) -> None:
        if node_id in done or node_id in stack or node_id not in prompt:
            return
        for _, src, _ in _links(prompt[node_id]):
            visit(src, stack + (node_id,))
        done.append(node_id)

    for out in sorted(outputs, key=lambda x: (len(x), x)):
        visit(out, ())
    return done


def _text_of(prompt: dict[str, Any], node_id: str) -> str:
    texts = []
    for up in [node_id, *_upstream(prompt, node_id)]:
        for name in ("text", "prompt", "t5xxl", "clip_l", "value"):
            value = prompt[up]["inputs"].get(name)
            if isinstance(value, str):
                texts.append(value)
    return "\n".join(texts)


@dataclass
class Picture:
    width: int = 512
    height: int = 512
    frames: int = 1


def _picture(prompt: dict[str, Any], node_id: str, input_dir: Path) -> Picture:
    """Size and frame count of the image batch reaching `node_id`, read off the nearest source."""
    ups = _upstream(prompt, node_id)
    scale = 1.0
    for up in ups:
        if prompt[up]["class_type"] == "ImageScaleBy":
            try:
                scale *= float(prompt[up]["inputs"].get("scale_by", 1.0))
            except (TypeError, ValueError):
                pass
    for up in ups:
        cls = prompt[up]["class_type"]
        inputs = prompt[up]["inputs"]
        if cls == "LoadImage":
            try:
                with Image.open(input_dir / str(inputs.get("image"))) as img:
                    return Picture(max(1, int(img.width * scale)), max(1, int(img.height * scale)), 1)
            except OSError:
                return Picture()
        width, height = inputs.get("width"), inputs.get("height")
        if isinstance(width, (int, float)) and isinstance(height, (int, float)):
            frames = inputs.get("length", inputs.get("batch_size", 1))
            frames = int(frames) if isinstance(frames, (int, float)) else 1
            return Picture(max(1, int(width * scale)), max(1, int(height * scale)), max(1, frames))
    return Picture()


def _audio(prompt: dict[str, Any], node_id: str, input_dir: Path) -> tuple[np.ndarray, str | None]:
    """The samples reaching an audio output node, and an error message if the TTS node would refuse."""
    text = _text_of(prompt, node_id)
    seed = _digest(text)
    for up in _upstream(prompt, node_id):
        cls = prompt[up]["class_type"]
        inputs = prompt[up]["inputs"]
        if "num_speakers" in inputs:
            return _speech(prompt, up)
        if cls == "EmptyLatentAudio":
            return _noise(float(inputs.get("seconds", 1.0)), seed), None
        if cls == "EmptyAudio":
            return np.zeros(max(1, int(float(inputs.get("duration", 1.0)) * SAMPLE_RATE)), dtype=np.float32), None
        if cls == "LoadAudio":
            seconds = _wav_seconds(input_dir / str(inputs.get("audio"))) or 1.0
            return _tone(seconds, 220.0, seed), None
    return _noise(1.0, seed), None


def _speech(prompt: dict[str, Any], tts_id: str) -> tuple[np.ndarray, str | None]:
    """What the OmniVoice multi-speaker node does with its inputs, minus the model."""
    import re

    inputs = prompt[tts_id]["inputs"]
    try:
        count = int(inputs.get("num_speakers", 0))
    except (TypeError, ValueError):
        count = 0
    missing = [i for i in range(1, count + 1) if not _is_link(inputs.get(f"num_speakers.speaker_{i}_audio"))]
    if missing:
        return np.zeros(1, np.float32), f"Missing reference audio for speakers: {missing}. Please connect audio to each speaker input."
    text = str(inputs.get("text", ""))
    if not text.strip():
        return np.zeros(1, np.float32), "Text cannot be empty."
    turns = []
    for line in text.strip().splitlines():
        match = re.match(r"\[speaker_(\d+)\]:\s*(.*)", line.strip(), re.IGNORECASE)
        if match:
            turns.append((int(match.group(1)), match.group(2)))
        elif turns and line.strip():
            turns[-1] = (turns[-1][0], turns[-1][1] + " " + line.strip())
    if not turns:
        return np.zeros(1, np.float32), "No speaker lines found. Use [Speaker_N]: text format"
    pause = np.zeros(int(float(inputs.get("pause_between_speakers", 0.3)) * SAMPLE_RATE), dtype=np.float32)
    parts = []
    for index, (speaker, line) in enumerate(turns, start=1):
        if speaker < 1 or speaker > count:
            return np.zeros(1, np.float32), f"Line {index} uses speaker index {speaker} but only {count} speakers are connected."
        seconds = max(0.2, TTS_SECONDS_PER_CHAR * len(line))
        parts += [_tone(seconds, 110.0 + 35.0 * speaker, _digest(line)), pause]
    return np.concatenate(parts[:-1] if len(parts) > 1 else parts), None


# =============================================================================== the server

class NodeFailure(Exception):
    def __init__(self, node_id: str, exc_type: str, message: str) -> None:
        super().__init__(message)
        self.node_id, self.exc_type, self.message = node_id, exc_type, message


class Interrupted(Exception):
    def __init__(self, node_id: str | None) -> None:
        super().__init__("interrupted")
        self.node_id = node_id


@dataclass
class Job:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    @property
    def client_id(self) -> str | None:
        return self.extra_data.get("client_id")

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass
class State:
    args: argparse.Namespace
    output_dir: Path
    input_dir: Path
    temp_dir: Path
    models: dict[str, list[str]]
    registry: dict[str, NodeDef]
    number: int = 0
    pending: list[Job] = field(default_factory=list)
    running: Job | None = None
    history: dict[str, Any] = field(default_factory=dict)
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    cache: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    interrupt: bool = False
    jobs_started: int = 0
    prompt_posts: int = 0
    last_node: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    evil_names: dict[str, Path] = field(default_factory=dict)  # --evil-filenames: listed name -> real file


def _record(state: State, event: dict[str, Any]) -> None:
    if not state.args.record:
        return
    line = json.dumps({"time": time.time(), **event}, ensure_ascii=False)
    with open(state.args.record, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


async def _send(state: State, event: str, data: dict[str, Any], sid: str | None = None) -> None:
    """ComfyUI's send_sync: to one socket when `sid` is given, else to every socket."""
    message = json.dumps({"type": event, "data": data})
    targets = list(state.sockets.items()) if sid is None else [(sid, state.sockets.get(sid))]
    for _, ws in targets:
        if ws is None or ws.closed:
            continue
        try:
            await ws.send_str(message)
        except (ConnectionError, RuntimeError):
            pass


def _queue_info(state: State) -> dict[str, Any]:
    return {"exec_info": {"queue_remaining": len(state.pending) + (1 if state.running else 0)}}


async def _status(state: State) -> None:
    await _send(state, "status", {"status": _queue_info(state)})


# ------------------------------------------------------------------------------- validation

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

def _resolve(state: State, kind: Any) -> list[str]:
    if isinstance(kind, Files):
        files = state.models.get(kind.folder, [])
        return [f for f in files if not kind.suffixes or f.endswith(kind.suffixes)]
    if isinstance(kind, InputFiles):
        ext = IMAGE_EXT if kind.kind == "image" else AUDIO_EXT
        if not state.input_dir.is_dir():
            return []
        return sorted(p.name for p in state.input_dir.iterdir() if p.is_file() and p.suffix.lower() in ext)
    return list(kind)


def _type_name(ex: BaseException) -> str:
    """execution.full_type_name: the bare name for builtins, module.name otherwise."""
    cls = type(ex)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _input_config(state: State, spec: tuple[Any, dict[str, Any]] | None) -> list[Any] | None:
    """An input's declaration as ComfyUI puts it in `extra_info.input_config`: [type, options]."""
    if spec is None:
        return None
    kind, opts = spec
    return [_resolve(state, kind) if isinstance(kind, (Files, InputFiles, list)) else kind, dict(opts)]


def _error(kind: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _validate_node(state: State, prompt: dict[str, Any], node_id: str, validated: dict[str, Any]) -> tuple[bool, list, str]:
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    d = state.registry[node["class_type"]]
    inputs = node.get("inputs", {})
    errors: list[dict[str, Any]] = []
    valid = True
    specs = {**d.optional, **d.required}
    names = list(d.required) + [k for k in inputs if k not in d.required]
    for name in names:
        if name not in inputs:
            errors.append(_error("required_input_missing", "Required input is missing", name, input_name=name))
            continue
        value = inputs[name]
        spec = specs.get(name)
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(_error("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                     name, input_name=name, received_value=value))
                continue
            child = str(value[0])
            if child not in prompt:
                # As in ComfyUI: this escapes to the caller, which blames this node for it.
                raise KeyError(child)
            try:
                result = _validate_node(state, prompt, child, validated)
                if result[0] is False:
                    valid = False
            except Exception as ex:  # ComfyUI reports any failure below as an inner-validation exception
                valid = False
                validated[child] = (False, [_error(
                    "exception_during_inner_validation", "Exception when validating inner node", str(ex),
                    input_name=name, input_config=_input_config(state, spec), exception_message=str(ex),
                    exception_type=_type_name(ex), traceback=traceback.format_tb(ex.__traceback__), linked_node=value,
                )], child)
            continue
        if spec is None:
            continue
        kind, opts = spec
        if kind in ("INT", "FLOAT"):
            try:
                number = int(value) if kind == "INT" else float(value)
            except (TypeError, ValueError) as ex:
                errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                                     f"{name}, {value}, {ex}", input_name=name, received_value=value))
                continue
            if "min" in opts and number < opts["min"]:
                errors.append(_error("value_smaller_than_min", f"Value {number} smaller than min of {opts['min']}", name,
                                     input_name=name, received_value=value))
            elif "max" in opts and number > opts["max"]:
                errors.append(_error("value_bigger_than_max", f"Value {number} bigger than max of {opts['max']}", name,
                                     input_name=name, received_value=value))
            continue
        if isinstance(kind, InputFiles):
            # `sub/name.png` (an upload into a subfolder) loads; nothing outside the input folder does.
            if not (state.input_dir / str(value)).is_file() or ".." in str(value) or str(value).startswith("/"):
                label = "image" if kind.kind == "image" else "audio"
                # As the real server: only input_name, no received_value (COMFYUI_API.md).
                errors.append(_error("custom_validation_failed", "Custom validation failed for node",
                                     f"{name} - Invalid {label} file: {value}", input_name=name))
            continue
        if isinstance(kind, (Files, list)):
            options = _resolve(state, kind)
            if value not in options:
                listing = str(options) if len(options) <= 20 else f"(list of length {len(options)})"
                errors.append(_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listing}",
                                     input_name=name, input_config=None if len(options) > 20 else [options, opts],
                                     received_value=value))
    result = (not errors and valid, errors, node_id)
    validated[node_id] = result
    return result


def validate_prompt(state: State, prompt: Any) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    if not isinstance(prompt, dict):
        return False, _error("invalid_prompt", "Cannot execute because the prompt is not an object.", ""), [], {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return False, _error("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                                 f"Node ID '#{node_id}'"), [], {}
        if node["class_type"] not in state.registry:
            return False, _error("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.",
                                 f"Node ID '#{node_id}'"), [], {}
    outputs = [k for k, v in prompt.items() if state.registry[v["class_type"]].output_node]
    if not outputs:
        return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
    good: list[str] = []
    failures: list[tuple[str, list]] = []
    node_errors: dict[str, Any] = {}
    validated: dict[str, Any] = {}
    for out in outputs:
        try:
            ok, reasons, _ = _validate_node(state, prompt, out, validated)
        except Exception as ex:
            ok, reasons = False, [_error("exception_during_validation", "Exception when validating node", str(ex),
                                         exception_type=_type_name(ex), traceback=traceback.format_tb(ex.__traceback__))]
            validated[out] = (False, reasons, out)
        if ok:
            good.append(out)
            continue
        failures.append((out, reasons))
        for node_id, (node_ok, node_reasons, _) in validated.items():
            if node_ok is not True and node_reasons:
                entry = node_errors.setdefault(node_id, {"errors": node_reasons, "dependent_outputs": [],
                                                         "class_type": prompt[node_id]["class_type"]})
                if out not in entry["dependent_outputs"]:
                    entry["dependent_outputs"].append(out)
    if not good:
        details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failures for r in reasons)
        return False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details), [], node_errors
    return True, None, good, node_errors


# ------------------------------------------------------------------------------- execution

def _signature(prompt: dict[str, Any], node_id: str, input_dir: Path, memo: dict[str, str]) -> str:
    """The cache key of a node: its class and inputs, with links replaced by their sources' keys."""
    if node_id in memo:
        return memo[node_id]
    node = prompt[node_id]
    parts: dict[str, Any] = {}
    for name, value in sorted(node.get("inputs", {}).items()):
        parts[name] = (["link", _signature(prompt, str(value[0]), input_dir, memo), value[1]]
                       if _is_link(value) and str(value[0]) in prompt else value)
    if node["class_type"] in ("LoadImage", "LoadAudio"):
        # IS_CHANGED: a re-uploaded file under the same name must run again.
        path = input_dir / str(node["inputs"].get("image", node["inputs"].get("audio", "")))
        parts["__file__"] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    memo[node_id] = hashlib.sha256(json.dumps([node["class_type"], parts], sort_keys=True, default=str).encode()).hexdigest()
    return memo[node_id]


def _save_target(state: State, prefix: str, ext: str, trailing: str = "_") -> tuple[Path, str, str]:
    """ComfyUI's get_save_image_path: `<prefix>_<counter:05>_.<ext>` in the prefix's subfolder."""
    norm = os.path.normpath(prefix) if prefix else ""
    subfolder = os.path.dirname(norm)
    base = os.path.basename(norm) if norm not in ("", ".") else ""
    folder = (state.output_dir / subfolder).resolve()
    if os.path.commonpath([str(state.output_dir.resolve()), str(folder)]) != str(state.output_dir.resolve()):
        raise NodeFailure("", "Exception", "**** ERROR: Saving image outside the output folder is not allowed."
                          f"\n full_output_folder: {folder}\n         output_dir: {state.output_dir}")
    folder.mkdir(parents=True, exist_ok=True)
    counter = 0
    for existing in os.listdir(folder):
        if existing.startswith(base + "_"):
            digits = existing[len(base) + 1:].split("_")[0].split(".")[0]
            if digits.isdigit():
                counter = max(counter, int(digits))
    name = f"{base}_{counter + 1:05}{trailing}.{ext}"
    return folder / name, name, subfolder.replace(os.sep, "/")


def _run_output(state: State, prompt: dict[str, Any], node_id: str) -> dict[str, Any]:
    """Write the real file(s) an output node would, and return its `ui` output for /history."""
    node = prompt[node_id]
    cls, inputs = node["class_type"], node["inputs"]
    text = _text_of(prompt, node_id) + f"\n{inputs.get('seed', '')}"
    for up in _upstream(prompt, node_id):
        for key in ("seed", "noise_seed"):
            if isinstance(prompt[up]["inputs"].get(key), int):
                text += f"|{prompt[up]['inputs'][key]}"
    prefix = str(inputs.get("filename_prefix", "ComfyUI"))
    if cls in ("SaveImage", "PreviewImage"):
        pic = _picture(prompt, node_id, state.input_dir)
        frames = _frames(pic.width, pic.height, pic.frames, text)
        images = []
        for frame in frames:
            if cls == "PreviewImage":
                name = f"ComfyUI_temp_{uuid.uuid4().hex[:5]}_00001_.png"
                state.temp_dir.mkdir(parents=True, exist_ok=True)
                _write_png(state.temp_dir / name, frame)
                images.append({"filename": name, "subfolder": "", "type": "temp"})
            else:
                path, name, sub = _save_target(state, prefix, "png")
                _write_png(path, frame)
                images.append({"filename": name, "subfolder": sub, "type": "output"})
        return {"images": images}
    if cls in ("SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio"):
        samples, problem = _audio(prompt, node_id, state.input_dir)
        if problem:
            tts = next(u for u in _upstream(prompt, node_id) if "num_speakers" in prompt[u]["inputs"])
            raise NodeFailure(tts, "ValueError", problem)
        ext = {"SaveAudio": "flac", "SaveAudioMP3": "mp3", "SaveAudioOpus": "opus", "PreviewAudio": "flac"}[cls]
        if cls == "PreviewAudio":
            state.temp_dir.mkdir(parents=True, exist_ok=True)
            name = f"ComfyUI_temp_{uuid.uuid4().hex[:5]}_00001_.flac"
            _write_audio(state.temp_dir / name, samples, ext)
            return {"audio": [{"filename": name, "subfolder": "", "type": "temp"}]}
        path, name, sub = _save_target(state, prefix, ext)
        _write_audio(path, samples, ext)
        return {"audio": [{"filename": name, "subfolder": sub, "type": "output"}]}
    if cls == "VHS_VideoCombine":
        pic = _picture(prompt, node_id, state.input_dir)
        fps = float(inputs.get("frame_rate", 8))
        path, name, sub = _save_target(state, prefix or "AnimateDiff", "mp4", trailing="")
        frames = _frames(pic.width, pic.height, pic.frames, text)
        _write_png(path.with_suffix(".png"), frames[0])
        _write_video(path, frames, fps)
        return {"gifs": [{"filename": name, "subfolder": sub, "type": "output" if inputs.get("save_output", True) else "temp",
                          "format": str(inputs.get("format", "video/h264-mp4")), "frame_rate": fps,
                          "workflow": path.with_suffix(".png").name, "fullpath": str(path)}]}
    if cls == "SaveVideo":
        source = prompt.get(str(inputs["video"][0])) if _is_link(inputs.get("video")) else None
        fps = float(source["inputs"].get("fps", 30)) if source else 30.0
        pic = _picture(prompt, node_id, state.input_dir)
        path, name, sub = _save_target(state, prefix, "mp4")
        _write_video(path, _frames(pic.width, pic.height, pic.frames, text), fps)
        return {"images": [{"filename": name, "subfolder": sub, "type": "output"}], "animated": [True]}
    return {}


def _evil_names(state: State, ui: dict[str, Any]) -> dict[str, Any]:
    """--evil-filenames: list each output under a name that climbs out of, or lies outside, any
    download folder (`../../x`, an absolute path), as a hostile or broken server might; /view still
    serves the real file for that name, so only the client's own care keeps it inside."""
    climb = state.output_dir.parent / "escaped"
    for value in ui.values():
        for n, item in enumerate(value if isinstance(value, list) else []):
            if not isinstance(item, dict) or "filename" not in item:
                continue
            folder = _dir_for(state, item.get("type")) or state.output_dir
            real = folder / str(item.get("subfolder") or "") / item["filename"]
            evil = f"../../../{item['filename']}" if n % 2 == 0 else str(climb / f"abs_{item['filename']}")
            state.evil_names[evil] = real
            item.update(filename=evil, subfolder="../..")
    return ui


def _is_sampler(cls: str) -> bool:
    """KSampler, KSamplerAdvanced, SamplerCustom(Advanced): the nodes whose step callback sends
    `progress` and lets an interrupt in (KSamplerSelect only picks a sampler by name)."""
    return "Sampler" in cls and cls != "KSamplerSelect"


def _heavy_node(prompt: dict[str, Any], to_run: list[str]) -> str | None:
    """The node that takes the job's --job-seconds: the sampler if any, else the TTS, else the last."""
    for node_id in to_run:
        if _is_sampler(prompt[node_id]["class_type"]):
            return node_id
    for node_id in to_run:
        if "num_speakers" in prompt[node_id]["inputs"]:
            return node_id
    return to_run[-1] if to_run else None


def _node_seconds(state: State, cls: str, heavy: bool) -> float:
    """How long a node works: --node-seconds for its class, else --job-seconds for the heavy node."""
    for entry in state.args.node_seconds:
        name, _, seconds = entry.partition("=")
        if name == cls:
            return float(seconds)
    return state.args.job_seconds if heavy else 0.0


def _exit_now(signum: int, frame: Any) -> None:
    print("\nStopped server", flush=True)
    os._exit(0)


def _freeze(state: State) -> None:
    """--fail-mode stuck: the whole process stops answering, as when a wedged driver call holds
    Python's GIL: no HTTP answer, no socket message (the event loop is blocked on purpose), until
    the --stuck-until file appears, or for good. SIGINT/SIGTERM still end the process."""
    until = Path(state.args.stuck_until) if state.args.stuck_until else None
    _record(state, {"event": "frozen"})
    signals = [signal.SIGINT] + ([signal.SIGTERM] if os.name != "nt" else [])
    previous = {sig: signal.signal(sig, _exit_now) for sig in signals}
    try:
        while until is None or not until.exists():
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _record(state, {"event": "thawed"})


async def _execute(state: State, job: Job) -> None:
    prompt, pid, sid = job.prompt, job.prompt_id, job.client_id
    messages: list[list[Any]] = []
    state.interrupt = False

    async def add_message(event: str, data: dict[str, Any], broadcast: bool = False) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        messages.append([event, data])
        if sid is not None or broadcast:
            await _send(state, event, data, sid)

    await add_message("execution_start", {"prompt_id": pid})
    order = _order(prompt, job.outputs)
    memo: dict[str, str] = {}
    sigs = {n: _signature(prompt, n, state.input_dir, memo) for n in order}
    cached = [n for n in order if sigs[n] in state.cache]
    await add_message("execution_cached", {"nodes": cached, "prompt_id": pid})
    to_run = [n for n in order if n not in cached]
    # What reaches ComfyUI's execute(): the nodes to run, and every output node even when cached
    # (ExecutionList.add_node stops only at cached inputs); a cached output node is not run but
    # still reported with `executed`, its cached ui, and then counted as finished.
    staged = [n for n in order if n not in cached or n in job.outputs]
    heavy = _heavy_node(prompt, to_run)
    fail = state.args.fail_mode if (state.args.fail_mode != "none" and to_run and state.jobs_started < state.args.fail_jobs) else "none"
    state.jobs_started += 1
    outputs_ui: dict[str, Any] = {}
    executed: list[str] = list(cached)
    status, error = "success", None
    current: str | None = None
    progress: dict[str, dict[str, Any]] = {}  # comfy_execution/progress.py's registry: only nodes touched

    async def node_state(node_id: str, phase: str, value: float | None = None, maximum: float | None = None) -> None:
        """ProgressRegistry start/update/finish: update one node, then send every node it knows
        (never a pending one) to the job's client (to every socket when it has none)."""
        entry = progress.setdefault(node_id, {"value": 0, "max": 1, "state": "pending"})
        if phase == "running" and value is None:
            entry.update(value=0.0, max=1.0)
        elif phase == "running":
            entry.update(value=value, max=maximum)
        else:
            entry["value"] = entry["max"]
        entry["state"] = phase
        await _send(state, "progress_state", {"prompt_id": pid, "nodes": {
            n: {**e, "node_id": n, "prompt_id": pid, "display_node_id": n, "parent_node_id": None, "real_node_id": n}
            for n, e in progress.items()}}, sid)

    try:
        for node_id in staged:
            current = node_id
            if node_id in cached:
                ui = state.cache[sigs[node_id]]
                if sid is not None:
                    await _send(state, "executed", {"node": node_id, "display_node": node_id,
                                                    "output": ui or None, "prompt_id": pid}, sid)
                if ui:
                    outputs_ui[node_id] = ui
                await node_state(node_id, "finished")
                continue
            if state.interrupt:
                raise Interrupted(node_id)
            await node_state(node_id, "running")
            if sid is not None:
                state.last_node = node_id
                await _send(state, "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid}, sid)
            cls = prompt[node_id]["class_type"]
            sampler = _is_sampler(cls)
            seconds = _node_seconds(state, cls, node_id == heavy)
            if node_id == heavy:
                hold = Path(state.args.hold) if state.args.hold else None
                while hold is not None and hold.exists():  # --hold: a test keeps the job inside this node
                    if sampler and state.interrupt:
                        raise Interrupted(node_id)
                    await asyncio.sleep(0.02)
            if sampler:
                # Only a sampler's step callback sends `progress`, and only there does an interrupt land mid-node.
                inputs = prompt[node_id]["inputs"]
                steps = inputs.get("steps") if isinstance(inputs.get("steps"), int) else 10
                ticks = max(1, min(int(steps), 20))
                for tick in range(1, ticks + 1):
                    await asyncio.sleep(seconds / ticks)
                    if state.interrupt:
                        raise Interrupted(node_id)
                    await node_state(node_id, "running", tick, ticks)  # the progress hook: state first, then progress
                    await _send(state, "progress", {"value": tick, "max": ticks, "prompt_id": pid, "node": node_id}, sid)
            elif seconds:
                await asyncio.sleep(seconds)  # a silent node (load, decode, save, TTS): no message, no interrupt
            if node_id == heavy:
                if fail == "hang":  # no more progress; a sampler's next step callback still sees an interrupt
                    while not (sampler and state.interrupt):
                        await asyncio.sleep(0.02)
                    raise Interrupted(node_id)
                if fail == "stuck":
                    _freeze(state)
                    if sampler and state.interrupt:
                        raise Interrupted(node_id)
                if fail == "execution_error":
                    raise NodeFailure(node_id, "RuntimeError",
                                      "Fake failure requested with --fail-mode execution_error")
                if fail == "oom":
                    raise NodeFailure(node_id, "torch.OutOfMemoryError",
                                      "Allocation on device \nThis error means you ran out of memory on your GPU.\n\n"
                                      "TIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.")
            if node_id in job.outputs:
                try:
                    ui = await asyncio.to_thread(_run_output, state, prompt, node_id)
                except NodeFailure as failure:
                    failure.node_id = failure.node_id or node_id
                    raise
                if state.args.evil_filenames:
                    ui = _evil_names(state, ui)
                if ui:  # as ComfyUI: an output node with no ui is neither reported nor in the history
                    outputs_ui[node_id] = ui
                    if sid is not None:
                        await _send(state, "executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": pid}, sid)
            await node_state(node_id, "finished")
            executed.append(node_id)
        await add_message("execution_success", {"prompt_id": pid})
    except NodeFailure as failure:
        status = "error"
        node_id = failure.node_id or current or ""
        error = {"prompt_id": pid, "node_id": node_id, "node_type": prompt.get(node_id, {}).get("class_type", ""),
                 "executed": executed, "exception_message": failure.message, "exception_type": failure.exc_type,
                 "traceback": [f'  File "fake_comfyui.py", in {prompt.get(node_id, {}).get("class_type", "node")}\n'],
                 "current_inputs": {}, "current_outputs": {}}
        await add_message("execution_error", error)
    except Interrupted as stop:
        status = "interrupted"
        node_id = stop.node_id or ""
        await add_message("execution_interrupted", {"prompt_id": pid, "node_id": node_id,
                                                    "node_type": prompt.get(node_id, {}).get("class_type", ""),
                                                    "executed": executed}, broadcast=True)
    # Classic caching keeps only what the latest prompt used.
    if status == "success":
        state.cache = {sigs[n]: outputs_ui.get(n) for n in order}
    else:
        state.cache = {sigs[n]: state.cache.get(sigs[n], outputs_ui.get(n)) for n in executed if n in sigs}
    state.last_node = None  # before the history entry, as in execute_async
    await asyncio.sleep(0.02)  # as in ComfyUI, history lands just after execution_success/error
    state.history[pid] = {
        "prompt": job.as_list(),
        "outputs": outputs_ui if status == "success" else {},
        "status": {"status_str": "success" if status == "success" else "error", "completed": status == "success",
                   "messages": messages},
        "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs_ui},
    }
    files = [item.get("filename") for ui in outputs_ui.values() for value in ui.values() if isinstance(value, list)
             for item in value if isinstance(item, dict)]
    _record(state, {"event": "job_done", "prompt_id": pid, "status": status, "cached": not to_run,
                    "outputs": files, "error": error and error["exception_message"]})
    if sid is not None:
        await _send(state, "executing", {"node": None, "prompt_id": pid}, sid)


async def _worker(state: State) -> None:
    while True:
        while not state.pending:
            state.wake.clear()
            await state.wake.wait()
        state.pending.sort(key=lambda j: j.number)
        job = state.pending.pop(0)
        state.running = job
        await _status(state)
        try:
            await _execute(state, job)
        except Exception:  # a bug in the fake: say so loudly but keep serving
            traceback.print_exc()
        state.running = None
        await _status(state)


# ------------------------------------------------------------------------------- routes

async def post_prompt(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    body = await request.json()  # malformed JSON -> aiohttp's plain-text 500, as in ComfyUI
    number = state.number
    if body.get("front"):
        number = -number
    state.number += 1
    if "number" in body:
        number = float(body["number"])
    if "prompt" not in body:
        return web.json_response({"error": _error("no_prompt", "No prompt provided", "No prompt provided"),
                                  "node_errors": {}}, status=400)
    prompt = body["prompt"]
    prompt_id = str(body.get("prompt_id", uuid.uuid4()))  # as ComfyUI: `"prompt_id": null` becomes "None"
    state.prompt_posts += 1
    if state.prompt_posts <= state.args.prompt_500:
        _record(state, {"event": "http_500", "prompt_id": prompt_id})
        return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
    ok, error, outputs, node_errors = validate_prompt(state, prompt)
    if not ok:
        _record(state, {"event": "rejected", "error": error, "node_errors": node_errors})
        return web.json_response({"error": error, "node_errors": node_errors}, status=400)
    extra = body.get("extra_data", {})  # not an object: a 500 below, as in ComfyUI
    if "client_id" in body:
        extra["client_id"] = body["client_id"]
    for key in SENSITIVE_EXTRA_DATA_KEYS:  # kept out of /queue and /history (this fake has no use for them)
        extra.pop(key, None)
    extra["create_time"] = int(time.time() * 1000)
    job = Job(number, prompt_id, prompt, extra, outputs)
    state.pending.append(job)
    _record(state, {"event": "prompt", "prompt_id": prompt_id, "number": number, "client_id": extra.get("client_id"),
                    "prompt": prompt})
    state.wake.set()
    await _status(state)
    if state.prompt_posts <= state.args.prompt_500 + state.args.drop_prompt:
        _record(state, {"event": "dropped_answer", "prompt_id": prompt_id})
        if request.transport is not None:
            request.transport.abort()  # the job is queued; its answer never arrives
    return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})


async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response(_queue_info(request.app["state"]))


async def get_queue(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    return web.json_response({"queue_running": [state.running.as_list()] if state.running else [],
                              "queue_pending": [j.as_list() for j in sorted(state.pending, key=lambda j: j.number)]})


async def post_queue(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    body = await request.json()
    if body.get("clear"):
        state.pending.clear()
    for prompt_id in body.get("delete", []) or []:
        state.pending = [j for j in state.pending if j.prompt_id != prompt_id]
    await _status(state)
    return web.Response(status=200)


async def post_interrupt(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    try:
        body = await request.json()
    except json.JSONDecodeError:
        body = {}
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    # `node`: the node running when the interrupt came (it lands there only in a sampler, else after it).
    _record(state, {"event": "interrupt", "prompt_id": prompt_id, "node": state.last_node if state.running else None})
    if prompt_id and not (state.running and state.running.prompt_id == prompt_id):
        return web.Response(status=200)
    if state.running:
        state.interrupt = True
    return web.Response(status=200)


async def post_free(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    body = await request.json()  # an empty body is a 500, as in ComfyUI
    _record(state, {"event": "free", "unload_models": bool(body.get("unload_models")),
                    "free_memory": bool(body.get("free_memory"))})
    return web.Response(status=200)


async def get_system_stats(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    return web.json_response({
        "system": {"os": os.name, "ram_total": 16 * 2**30, "ram_free": 8 * 2**30,
                   "comfyui_version": state.args.comfyui_version,
                   "required_frontend_version": "1.34.9", "installed_templates_version": "0.7.0",
                   "required_templates_version": "0.7.0", "python_version": sys.version,
                   "pytorch_version": "2.9.1+cpu", "embedded_python": False, "argv": sys.argv},
        "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 16 * 2**30, "vram_free": 8 * 2**30,
                     "torch_vram_total": 16 * 2**30, "torch_vram_free": 8 * 2**30}],
    })


async def get_object_info(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    wanted = request.match_info.get("node_class")

    def resolve(kind: Any) -> list[str]:
        return _resolve(state, kind)

    if wanted is not None:
        d = state.registry.get(wanted)
        return web.json_response({wanted: object_info_entry(d, resolve)} if d else {})
    return web.json_response({name: object_info_entry(d, resolve) for name, d in state.registry.items()})


async def get_history(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    prompt_id = request.match_info.get("prompt_id")
    if prompt_id is not None:
        return web.json_response({prompt_id: state.history[prompt_id]} if prompt_id in state.history else {})
    items = list(state.history.items())
    max_items = request.rel_url.query.get("max_items")
    if max_items and max_items.isdigit():
        items = items[-int(max_items):]
    return web.json_response(dict(items))


async def post_history(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    body = await request.json()
    if body.get("clear"):
        state.history.clear()
    for prompt_id in body.get("delete", []) or []:
        state.history.pop(prompt_id, None)
    return web.Response(status=200)


def _dir_for(state: State, kind: str | None) -> Path | None:
    return {"output": state.output_dir, "input": state.input_dir, "temp": state.temp_dir}.get(kind or "output")


async def get_view(request: web.Request) -> web.StreamResponse:
    state: State = request.app["state"]
    query = request.rel_url.query
    filename = query.get("filename")
    if not filename:
        return web.Response(status=404)
    if filename in state.evil_names:
        return web.FileResponse(state.evil_names[filename])
    if filename[0] == "/" or ".." in filename:
        return web.Response(status=400)
    base = _dir_for(state, query.get("type", "output"))
    if base is None:
        return web.Response(status=400)
    base = base.resolve()
    folder = base
    if "subfolder" in query:
        folder = Path(os.path.abspath(os.path.join(base, query["subfolder"])))
        if os.path.commonpath([str(folder), str(base)]) != str(base):
            return web.Response(status=403)
    path = folder / os.path.basename(filename)
    if not path.is_file():
        return web.Response(status=404)
    return web.FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})


async def post_upload_image(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    post = await request.post()
    image = post.get("image")
    if not isinstance(image, web.FileField) or not image.filename:
        return web.Response(status=400)
    kind = str(post.get("type") or "input")
    base = _dir_for(state, kind)
    if base is None:
        return web.Response(status=400)
    base = base.resolve()
    subfolder = str(post.get("subfolder") or "")
    folder = Path(os.path.abspath(os.path.join(base, os.path.normpath(subfolder)))) if subfolder else base
    filename = image.filename
    target = Path(os.path.abspath(os.path.join(folder, filename)))
    if os.path.commonpath([str(base), str(target)]) != str(base):
        return web.Response(status=400)
    data = image.file.read()
    folder.mkdir(parents=True, exist_ok=True)
    stem, ext = os.path.splitext(filename)
    duplicate = False
    if str(post.get("overwrite") or "").lower() not in ("true", "1"):
        i = 1
        while target.exists():
            if hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest():
                duplicate = True
                break
            filename = f"{stem} ({i}){ext}"
            target = folder / filename
            i += 1
    if not duplicate:
        target.write_bytes(data)
    _record(state, {"event": "upload", "name": filename, "subfolder": subfolder, "type": kind,
                    "sha256": hashlib.sha256(data).hexdigest(), "duplicate": duplicate})
    return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})


async def get_models(request: web.Request) -> web.Response:
    state: State = request.app["state"]
    folder = request.match_info.get("folder")
    if folder is None:
        return web.json_response(sorted(state.models))
    if folder not in state.models:
        return web.Response(status=404)
    return web.json_response(state.models[folder])


async def get_empty_list(request: web.Request) -> web.Response:
    return web.json_response([])


async def websocket(request: web.Request) -> web.StreamResponse:
    state: State = request.app["state"]
    if state.args.ws == "refuse":
        return web.Response(status=404)
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
    state.sockets[sid] = ws
    try:
        await ws.send_str(json.dumps({"type": "status", "data": {"status": _queue_info(state), "sid": sid}}))
        # A reconnect of the running job's client is told the node running now, and only that:
        # ComfyUI 0.8 sends `{"node": id}` with no prompt_id (server.py websocket_handler).
        if state.running and state.running.client_id == sid and state.last_node is not None:
            await ws.send_str(json.dumps({"type": "executing", "data": {"node": state.last_node}}))
        if state.args.ws == "drop":
            await ws.close()
            return ws
        # Previews: a binary frame now and then, which clients must skip.
        await ws.send_bytes(b"\x00\x00\x00\x01" + b"\x89PNG fake preview")
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        if state.sockets.get(sid) is ws:
            del state.sockets[sid]
    return ws


@web.middleware
async def origin_check(request: web.Request, handler: Any) -> web.StreamResponse:
    """ComfyUI refuses cross-origin browser requests to a loopback server; no Origin header is fine."""
    origin = request.headers.get("Origin")
    if origin:
        host = request.headers.get("Host", "").split(":")[0]
        origin_host = origin.split("://", 1)[-1].split("/")[0].split(":")[0]
        if host in ("127.0.0.1", "localhost", "[::1]") and origin_host != host:
            return web.Response(status=403)
    return await handler(request)


def build_app(state: State) -> web.Application:
    app = web.Application(middlewares=[origin_check], client_max_size=200 * 2**20)
    app["state"] = state
    routes = [
        ("POST", "/prompt", post_prompt), ("GET", "/prompt", get_prompt),
        ("GET", "/queue", get_queue), ("POST", "/queue", post_queue),
        ("POST", "/interrupt", post_interrupt), ("POST", "/free", post_free),
        ("GET", "/system_stats", get_system_stats),
        ("GET", "/object_info", get_object_info), ("GET", "/object_info/{node_class}", get_object_info),
        ("GET", "/history", get_history), ("GET", "/history/{prompt_id}", get_history), ("POST", "/history", post_history),
        ("GET", "/view", get_view), ("POST", "/upload/image", post_upload_image),
        ("GET", "/models", get_models), ("GET", "/models/{folder}", get_models),
        ("GET", "/embeddings", get_empty_list), ("GET", "/extensions", get_empty_list),
        ("GET", "/ws", websocket),
    ]
    for method, path, handler in routes:
        for prefix in ("", "/api"):
            app.router.add_route(method, prefix + path, handler)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A fake ComfyUI server for tests.")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188, help="0 picks a free port (printed in the GUI line)")
    parser.add_argument("--job-seconds", type=float, default=0.2, help="how long each job's sampler runs")
    parser.add_argument("--record", help="append one JSON line per event to this file")
    parser.add_argument("--node-seconds", nargs="*", default=[], metavar="CLASS=SECONDS",
                        help="how long nodes of CLASS work: silently, unless a sampler (then with progress)")
    parser.add_argument("--fail-mode", choices=["none", "execution_error", "oom", "hang", "stuck"], default="none",
                        help="hang: the heavy node never ends (a sampler ends when interrupted); "
                             "stuck: the whole process stops answering after it (see --stuck-until)")
    parser.add_argument("--stuck-until", metavar="FILE", help="stuck: answer again once this file exists")
    parser.add_argument("--fail-jobs", type=int, default=10**9, help="fail only the first N jobs this process runs")
    parser.add_argument("--missing-node", nargs="*", default=[], metavar="CLASS", help="node classes to leave out")
    parser.add_argument("--missing-model", nargs="*", default=[], metavar="FILE", help="model files to leave out")
    parser.add_argument("--extra-model", nargs="*", default=[], metavar="FOLDER/FILE", help="model files to add")
    # The oldest ComfyUI that runs every shipped workflow (the speech node needs 0.8.1, ComfyUI/README.md);
    # the answers themselves are 0.8.0's, which differ in nothing a client reads.
    parser.add_argument("--comfyui-version", default="0.8.1", help="what /system_stats says comfyui_version is")
    parser.add_argument("--output-dir", "--output-directory", dest="output_dir")
    parser.add_argument("--input-dir", "--input-directory", dest="input_dir")
    parser.add_argument("--temp-dir", "--temp-directory", dest="temp_dir")
    parser.add_argument("--ws", choices=["normal", "refuse", "drop"], default="normal",
                        help="refuse: /ws answers 404; drop: it closes right after the first status message")
    parser.add_argument("--evil-filenames", action="store_true",
                        help="list outputs as ../../name or an absolute path (the client must keep them inside)")
    parser.add_argument("--hold", metavar="FILE",
                        help="each job's sampler (or TTS) node waits while FILE exists, so a test can act mid-job")
    parser.add_argument("--startup-delay", type=float, default=float(os.environ.get("FAKE_COMFYUI_STARTUP_DELAY") or 0),
                        help="seconds of loading before it listens, as a real server loads its nodes first "
                             "(default: $FAKE_COMFYUI_STARTUP_DELAY, which leaves the command line as ComfyUI's)")
    parser.add_argument("--prompt-500", type=int, default=0, metavar="N",
                        help="the first N POST /prompt answer 500 without queueing anything")
    parser.add_argument("--drop-prompt", type=int, default=0, metavar="N",
                        help="the first N POST /prompt queue the job but close the connection without an answer")
    _real_flags(parser)
    # ComfyUI parses its command line strictly (comfy/cli_args.py: parse_args): an unknown flag in
    # COMFYUI_EXTRA_ARGS ends it at once with argparse's usage error and exit code 2. So does this fake.
    return parser.parse_args(argv)


def _real_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of the real ComfyUI 0.8.0 (comfy/cli_args.py) a user may put in COMFYUI_EXTRA_ARGS: taken
    with the same shapes and ignored. A real flag a test needs that is not here: add it here."""
    vram = parser.add_mutually_exclusive_group()  # ComfyUI takes one of these at most, as here
    for flag in ("--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram", "--cpu"):
        vram.add_argument(flag, action="store_true")
    for flag in ("--disable-smart-memory", "--disable-auto-launch", "--auto-launch", "--dont-print-server",
                 "--disable-metadata", "--disable-all-custom-nodes", "--cpu-vae", "--disable-xformers",
                 "--windows-standalone-build", "--log-stdout", "--multi-user", "--deterministic"):
        parser.add_argument(flag, action="store_true")
    for flag, kind in (("--base-directory", str), ("--cuda-device", int), ("--default-device", int),
                       ("--reserve-vram", float), ("--preview-size", int), ("--max-upload-size", float)):
        parser.add_argument(flag, type=kind)
    parser.add_argument("--extra-model-paths-config", nargs="+", action="append")
    parser.add_argument("--preview-method", choices=["none", "auto", "latent2rgb", "taesd"])
    parser.add_argument("--verbose", nargs="?", const="DEBUG",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])


def make_state(args: argparse.Namespace) -> State:
    base = None
    if not (args.output_dir and args.input_dir and args.temp_dir):
        base = Path(tempfile.mkdtemp(prefix="fake_comfyui_"))
        args.scratch = base  # removed again when the server stops
    output_dir = Path(args.output_dir or base / "output").resolve()
    input_dir = Path(args.input_dir or base / "input").resolve()
    temp_dir = Path(args.temp_dir or base / "temp").resolve()
    for folder in (output_dir, input_dir, temp_dir):
        folder.mkdir(parents=True, exist_ok=True)
    models = {k: [f for f in v if f not in args.missing_model] for k, v in DEFAULT_MODELS.items()}
    for extra in args.extra_model:
        folder, _, name = extra.partition("/")
        models.setdefault(folder, []).append(name)
    registry = {k: v for k, v in REGISTRY.items() if k not in set(args.missing_node)}
    return State(args, output_dir, input_dir, temp_dir, models, registry)


async def serve(args: argparse.Namespace) -> None:
    if args.startup_delay:
        print(f"fake ComfyUI: loading nodes for {args.startup_delay:g} s before it listens", flush=True)
        await asyncio.sleep(args.startup_delay)
    state = make_state(args)
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.listen, args.port)
    await site.start()
    port = runner.addresses[0][1]
    worker = asyncio.create_task(_worker(state))
    print("Starting server\n", flush=True)
    print(f"To see the GUI go to: http://{args.listen}:{port}", flush=True)
    stop = asyncio.Event()
    if os.name != "nt":
        # SIGTERM stops at once, as ComfyUI does; only our scratch folder is tidied first.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        worker.cancel()
        await runner.cleanup()
        if getattr(args, "scratch", None):
            shutil.rmtree(args.scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        print("\nStopped server", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
