"""The node classes the fake ComfyUI knows, and their /object_info entries.

Declared in the shape /object_info gives them: enough for the six seed workflows and the graphs
the pipelines build. Model-file combos (`Files`) are resolved per request from the fake's model
folders; LoadImage/LoadAudio (`InputFiles`) list the input folder live, as ComfyUI does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


MAX_RES = 16384


@dataclass(frozen=True)
class Files:
    """A combo whose options are the model files of one ComfyUI/models folder."""

    folder: str
    suffixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputFiles:
    """A combo listing the files in the input folder (LoadImage, LoadAudio, LoadLatent), validated by content."""

    kind: str  # "image" | "audio" | "latent"


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
    experimental: bool = False
    hidden: dict[str, str] = field(default_factory=dict)


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
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors",
    ],
    "vae": ["flux_kontext_vae.safetensors", "LTX2_video_vae_bf16.safetensors", "wan_2.1_vae.safetensors",
            "qwen_image_vae.safetensors"],
    "unet": ["flux1-kontext-dev-Q8_0.gguf", "LTXV-13B-0.9.8-distilled-Q8_0.gguf"],
    "diffusion_models": [
        "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors",
        "qwen_image_fp8_e4m3fn.safetensors", "qwen_image_edit_2509_fp8_e4m3fn.safetensors",
        "wan2.2_s2v_14B_fp8_scaled.safetensors",
    ],
    "loras": ["ghibli_style.safetensors", "detail_tweaker.safetensors"],
    "clip_vision": ["clip_vision_h.safetensors"],
    "upscale_models": [],
    "audio_encoders": ["wav2vec2_large_english_fp16.safetensors"],
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
         display_name: str | None = "", description: str = "", experimental: bool = False,
         hidden: dict[str, str] | None = None) -> None:
    REGISTRY[name] = NodeDef(
        name, required, optional or {}, outputs, names or outputs, output_node, category,
        name if display_name == "" else display_name, module, description, experimental, hidden or {},
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
# Qwen-Image / Qwen-Image-Edit (core; shared/fixtures/comfyui-0.8.0-object_info.json)
node("ModelSamplingAuraFlow", {"model": T("MODEL"),
                               "shift": ("FLOAT", {"default": 1.73, "min": 0.0, "max": 100.0, "step": 0.01})},
     ("MODEL",), category="advanced/model", module="comfy_extras.nodes_model_advanced")
node("CFGNorm", {"model": T("MODEL"), "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})},
     ("MODEL",), names=("patched_model",), category="advanced/guidance", module="comfy_extras.nodes_cfg",
     display_name=None, experimental=True)

# --- conditioning
node("CLIPTextEncode", {"text": STRING(True), "clip": T("CLIP")}, ("CONDITIONING",), category="conditioning")
node("ConditioningZeroOut", {"conditioning": T("CONDITIONING")}, ("CONDITIONING",), category="advanced/conditioning")
node("FluxGuidance", {"conditioning": T("CONDITIONING"), "guidance": FLOAT(3.5, 0, 100)}, ("CONDITIONING",), category="advanced/conditioning/flux")
node("ReferenceLatent", {"conditioning": T("CONDITIONING")}, ("CONDITIONING",), optional={"latent": T("LATENT")},
     category="advanced/conditioning/edit_models")
node("FluxKontextImageScale", {"image": T("IMAGE")}, ("IMAGE",), category="advanced/conditioning/flux")
node("TextEncodeQwenImageEdit", {"clip": T("CLIP"), "prompt": ("STRING", {"multiline": True, "dynamicPrompts": True})},
     ("CONDITIONING",), optional={"vae": T("VAE"), "image": T("IMAGE")}, category="advanced/conditioning",
     module="comfy_extras.nodes_qwen", display_name=None)
node("TextEncodeQwenImageEditPlus", {"clip": T("CLIP"), "prompt": ("STRING", {"multiline": True, "dynamicPrompts": True})},
     ("CONDITIONING",), optional={"vae": T("VAE"), "image1": T("IMAGE"), "image2": T("IMAGE"), "image3": T("IMAGE")},
     category="advanced/conditioning", module="comfy_extras.nodes_qwen", display_name=None)

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
node("ImageScaleToTotalPixels", {"image": T("IMAGE"), "upscale_method": COMBO(["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]),
                                 "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}),
                                 "resolution_steps": ("INT", {"default": 1, "min": 1, "max": 256})},
     ("IMAGE",), category="image/upscaling", module="comfy_extras.nodes_post_processing", display_name=None)
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
node("LoadAudio", {"audio": COMBO(InputFiles("audio"), audio_upload=True)}, ("AUDIO",), category="audio",
     module="comfy_extras.nodes_audio", display_name="Load Audio")
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


# --- Wan 2.2 S2V (speaking shots) and latent files: entries as the real 0.8.0's, step included
# (the step is a UI hint only: the server never checks `length` against it).
def _step_int(default: int, lo: int, step: int) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": default, "min": lo, "max": MAX_RES, "step": step})


_s2v_out = dict(outputs=("CONDITIONING", "CONDITIONING", "LATENT"), names=("positive", "negative", "latent"),
                category="conditioning/video_models", module="comfy_extras.nodes_wan", display_name=None)
_s2v_cond = {"positive": T("CONDITIONING"), "negative": T("CONDITIONING"), "vae": T("VAE")}
node("WanSoundImageToVideo", {**_s2v_cond, "width": _step_int(832, 16, 16), "height": _step_int(480, 16, 16),
                              "length": _step_int(77, 1, 4), "batch_size": INT(1, 1, 4096)},
     optional={"audio_encoder_output": T("AUDIO_ENCODER_OUTPUT"), "ref_image": T("IMAGE"), "control_video": T("IMAGE"),
               "ref_motion": T("IMAGE")}, **_s2v_out)
node("WanSoundImageToVideoExtend", {**_s2v_cond, "length": _step_int(77, 1, 4), "video_latent": T("LATENT")},
     optional={"audio_encoder_output": T("AUDIO_ENCODER_OUTPUT"), "ref_image": T("IMAGE"), "control_video": T("IMAGE")},
     **_s2v_out)
node("AudioEncoderEncode", {"audio_encoder": T("AUDIO_ENCODER"), "audio": T("AUDIO")}, ("AUDIO_ENCODER_OUTPUT",),
     category="conditioning", module="comfy_extras.nodes_audio_encoder", display_name=None)
node("EmptyHunyuanLatentVideo", {"width": _step_int(848, 16, 16), "height": _step_int(480, 16, 16),
                                 "length": _step_int(25, 1, 4), "batch_size": INT(1, 1, 4096)}, ("LATENT",),
     category="latent/video", module="comfy_extras.nodes_hunyuan", display_name="Empty HunyuanVideo 1.0 Latent")
node("LatentConcat", {"samples1": T("LATENT"), "samples2": T("LATENT"), "dim": COMBO(["x", "-x", "y", "-y", "t", "-t"])},
     ("LATENT",), category="latent/advanced", module="comfy_extras.nodes_latent", display_name=None)
node("SaveLatent", {"samples": ("LATENT", {}), "filename_prefix": ("STRING", {"default": "latents/ComfyUI"})},
     output_node=True, category="_for_testing", hidden={"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"})
node("LoadLatent", {"latent": COMBO(InputFiles("latent"))}, ("LATENT",), category="_for_testing")
V3_S2V = frozenset({"WanSoundImageToVideo", "WanSoundImageToVideoExtend", "AudioEncoderEncode", "EmptyHunyuanLatentVideo",
                    "LatentConcat"})

# Classes the real 0.8.0 server defines with its newer node API (comfy_api v3): /object_info gives every
# combo of theirs as ["COMBO", {"multiselect": false, "options": [...]}], every other input as
# [type, {...}] even when empty, and three more keys (shared/fixtures/comfyui-0.8.0-object_info.json).
V3_NODES = frozenset({
    "AudioEncoderLoader", "CreateVideo", "EmptyAudio", "EmptyLTXVLatentVideo", "EmptyLatentAudio",
    "EmptySD3LatentImage", "FluxGuidance", "FluxKontextImageScale", "HypernetworkLoader", "ImageStitch",
    "KSamplerSelect", "LTXVAddGuide", "TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus", "CFGNorm",
    "ImageScaleToTotalPixels", "LTXVConditioning", "LTXVCropGuides", "LTXVImgToVideo", "LTXVPreprocess",
    "LTXVScheduler", "LoadAudio", "PreviewAudio", "QuadrupleCLIPLoader", "ReferenceLatent", "SamplerCustom",
    "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveVideo", "TripleCLIPLoader", "UpscaleModelLoader",
    "VAEDecodeAudio", "Wan22ImageToVideoLatent", "WanFirstLastFrameToVideo", "WanImageToVideo",
})


def object_info_entry(d: NodeDef, resolve: Any) -> dict[str, Any]:
    """The /object_info shape of one node; `resolve` turns Files/InputFiles into today's option list."""
    v3 = d.name in V3_NODES or d.name in V3_S2V

    def render(spec: tuple[Any, dict[str, Any]]) -> list[Any]:
        kind, opts = spec
        if isinstance(kind, (Files, InputFiles)):
            kind = resolve(kind)
        if v3 and isinstance(kind, list):
            return ["COMBO", {**opts, "multiselect": False, "options": kind}]
        return [kind, opts] if opts or v3 else [kind]

    inputs: dict[str, Any] = {"required": {k: render(v) for k, v in d.required.items()}}
    if d.optional:
        inputs["optional"] = {k: render(v) for k, v in d.optional.items()}
    if d.hidden:
        inputs["hidden"] = dict(d.hidden)
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
    }
    if v3:  # the classic node API lists neither `deprecated` nor `experimental`
        entry.update({"deprecated": False, "experimental": d.experimental, "output_tooltips": [None] * len(d.outputs),
                      "output_matchtypes": None, "api_node": False})
    return entry
