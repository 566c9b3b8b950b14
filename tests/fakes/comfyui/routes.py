"""The HTTP routes and the WebSocket, each also under /api, as ComfyUI 0.8 serves them."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from .nodes import object_info_entry
from .state import Job, State, _dir_for, _queue_info, _record, _status
from .validation import _error, _resolve, validate_prompt

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


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
