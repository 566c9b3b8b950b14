"""POST /prompt's validation, answering with ComfyUI 0.8's error shapes (shared/COMFYUI_API.md)."""
from __future__ import annotations

import traceback
from typing import Any

from .media import AUDIO_EXT, IMAGE_EXT
from .nodes import Files, InputFiles
from .state import State


def _resolve(state: State, kind: Any) -> list[str]:
    if isinstance(kind, Files):
        files = state.models.get(kind.folder, [])
        return [f for f in files if not kind.suffixes or f.endswith(kind.suffixes)]
    if isinstance(kind, InputFiles):
        if not state.input_dir.is_dir():
            return []
        if kind.kind == "latent":  # LoadLatent: the input folder's own *.latent files, case and all
            return sorted(p.name for p in state.input_dir.iterdir() if p.is_file() and p.name.endswith(".latent"))
        ext = IMAGE_EXT if kind.kind == "image" else AUDIO_EXT
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
                # As the real server: only input_name, no received_value (COMFYUI_API.md).
                errors.append(_error("custom_validation_failed", "Custom validation failed for node",
                                     f"{name} - Invalid {kind.kind} file: {value}", input_name=name))
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
