"""Reading a prompt graph: links, what a node depends on, execution order, its text, its cache key."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


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


def _signature(prompt: dict[str, Any], node_id: str, input_dir: Path, memo: dict[str, str]) -> str:
    """The cache key of a node: its class and inputs, with links replaced by their sources' keys."""
    if node_id in memo:
        return memo[node_id]
    node = prompt[node_id]
    parts: dict[str, Any] = {}
    for name, value in sorted(node.get("inputs", {}).items()):
        parts[name] = (["link", _signature(prompt, str(value[0]), input_dir, memo), value[1]]
                       if _is_link(value) and str(value[0]) in prompt else value)
    loaded = {"LoadImage": "image", "LoadAudio": "audio", "LoadLatent": "latent"}.get(node["class_type"])
    if loaded:
        # IS_CHANGED: a re-uploaded file under the same name must run again.
        path = input_dir / str(node["inputs"].get(loaded, ""))
        parts["__file__"] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    memo[node_id] = hashlib.sha256(json.dumps([node["class_type"], parts], sort_keys=True, default=str).encode()).hexdigest()
    return memo[node_id]
