"""What an output node writes: real files under ComfyUI's names, and its `ui` for /history."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .graph import _is_link, _text_of, _upstream
from .latents import decoded, latent_of, write_latent
from .media import (_audio, _frames, _picture, _write_audio, _write_png, _write_video, edit_frame, edit_pictures, load_audio,
                    mouth_frames)
from .state import NodeFailure, State, _dir_for


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


def _s2v_audio(prompt: dict[str, Any], s2v_id: str, input_dir: Path) -> tuple[np.ndarray, int] | None:
    """The samples of the LoadAudio an S2V node hears through its audio encoder, if it has one."""
    value = prompt[s2v_id]["inputs"].get("audio_encoder_output")
    seen: set[str] = set()
    while _is_link(value) and str(value[0]) in prompt and str(value[0]) not in seen:
        seen.add(str(value[0]))
        node = prompt[str(value[0])]
        if node["class_type"] == "LoadAudio":
            return load_audio(input_dir / str(node["inputs"].get("audio")))
        value = node["inputs"].get("audio")
    return None


def _moving_frames(state: State, prompt: dict[str, Any], node_id: str, text: str) -> np.ndarray:
    """The frames reaching an output node. A latent the fake follows (latents.py: S2V, LoadLatent,
    LatentConcat) sets their count and size, and an S2V one moves its mouth with the audio (media.py);
    otherwise they are sized off the nearest source upstream, as ever."""
    for up in _upstream(prompt, node_id):
        if prompt[up]["class_type"] in ("VAEDecode", "VAEDecodeTiled"):
            found = decoded(prompt, prompt[up]["inputs"].get("samples"), state.input_dir)
            if found is not None:
                width, height, count, latent = found
                if latent.sound is None:
                    return _frames(width, height, count, text)
                return mouth_frames(width, height, count, text, _s2v_audio(prompt, latent.sound, state.input_dir))
            break
    pic = _picture(prompt, node_id, state.input_dir)
    return _frames(pic.width, pic.height, pic.frames, text)


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
        edited = edit_pictures(prompt, node_id, state.input_dir)
        frames = [edit_frame(edited, pic.width, pic.height)] if edited else _moving_frames(state, prompt, node_id, text)
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
        samples, rate, problem = _audio(prompt, node_id, state.input_dir)
        if problem:
            tts = next(u for u in _upstream(prompt, node_id) if "num_speakers" in prompt[u]["inputs"])
            raise NodeFailure(tts, "ValueError", problem)
        ext = {"SaveAudio": "flac", "SaveAudioMP3": "mp3", "SaveAudioOpus": "opus", "PreviewAudio": "flac"}[cls]
        if cls == "PreviewAudio":
            state.temp_dir.mkdir(parents=True, exist_ok=True)
            name = f"ComfyUI_temp_{uuid.uuid4().hex[:5]}_00001_.flac"
            _write_audio(state.temp_dir / name, samples, ext, rate)
            return {"audio": [{"filename": name, "subfolder": "", "type": "temp"}]}
        path, name, sub = _save_target(state, prefix, ext)
        _write_audio(path, samples, ext, rate)
        return {"audio": [{"filename": name, "subfolder": sub, "type": "output"}]}
    if cls == "VHS_VideoCombine":
        fps = float(inputs.get("frame_rate", 8))
        path, name, sub = _save_target(state, prefix or "AnimateDiff", "mp4", trailing="")
        frames = _moving_frames(state, prompt, node_id, text)
        _write_png(path.with_suffix(".png"), frames[0])
        _write_video(path, frames, fps)
        return {"gifs": [{"filename": name, "subfolder": sub, "type": "output" if inputs.get("save_output", True) else "temp",
                          "format": str(inputs.get("format", "video/h264-mp4")), "frame_rate": fps,
                          "workflow": path.with_suffix(".png").name, "fullpath": str(path)}]}
    if cls == "SaveVideo":
        source = prompt.get(str(inputs["video"][0])) if _is_link(inputs.get("video")) else None
        fps = float(source["inputs"].get("fps", 30)) if source else 30.0
        path, name, sub = _save_target(state, prefix, "mp4")
        _write_video(path, _moving_frames(state, prompt, node_id, text), fps)
        return {"images": [{"filename": name, "subfolder": sub, "type": "output"}], "animated": [True]}
    if cls == "SaveLatent":
        latent = latent_of(prompt, inputs.get("samples"), state.input_dir)
        if latent is None:  # a latent the fake does not follow: one picture's worth, sized off the graph
            pic = _picture(prompt, node_id, state.input_dir)
            shape: tuple[int, ...] = (1, 4, max(1, pic.height // 8), max(1, pic.width // 8))
        else:
            shape = latent.shape
        path, name, sub = _save_target(state, prefix, "latent")
        write_latent(path, shape, None if state.args.disable_metadata else {"prompt": json.dumps(prompt)})
        return {"latents": [{"filename": name, "subfolder": sub, "type": "output"}]}
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
