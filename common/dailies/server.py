"""`generate.py --serve`: the dailies page as a local aiohttp application.

Why aiohttp: it is an asyncio web server and framework in one package (no separate ASGI server to
pin), maintained by aio-libs with regular releases, the framework ComfyUI itself and our fake
servers already use; its FileResponse answers Range requests, so a clip or the final video seeks
in the browser's player; and a middleware is one function, which is where the token lives.
The server reads checkpoints in a worker thread and writes nothing but the request files of
common.dailies.edits, so a running pipeline is neither slowed nor blocked by it.

Security, all of it here: bound to 127.0.0.1 unless told otherwise; every request carries the
random token printed at start (the first visit's `?token=` becomes an HttpOnly, SameSite=Strict
cookie); a write is a POST that also carries the token in a header, which another site's page
cannot set; the Host header must name this server (no DNS rebinding); routes are fixed, an item
is named by kind and key and must be one the checkpoints list, and only the file its checkpoint
names is ever served; the page renders story text with textContent under a strict CSP.
"""
from __future__ import annotations

import asyncio
import hmac
import html
import ipaddress
import secrets
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from aiohttp import web

from common.run.errors import PipelineError
from common.run.steps import Step
from common.dailies import edits
from common.dailies.workspace import Workspace

COOKIE = "dailies_token"
HEADER = "X-Dailies-Token"
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
REFUSED = ("this page needs the token that generate.py --serve printed when it started: open the address it "
           "printed (ending in ?token=...)")
WORKSPACE = web.AppKey("workspace", Workspace)
TOKEN = web.AppKey("token", str)
HOSTS = web.AppKey("hosts", frozenset)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def _secure(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _refuse(status: int, sentence: str) -> web.Response:
    return _secure(web.json_response({"error": sentence}, status=status))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Host, token and method checks before any handler; the first visit's token becomes a cookie."""
    token = request.app[TOKEN]
    hosts = request.app[HOSTS]
    if hosts and request.host not in hosts:
        return _refuse(403, f"this server answers only as {sorted(hosts)[0]}; open the address it printed.")
    from_query = request.query.get("token")
    if request.method == "POST":
        if not _same(request.headers.get(HEADER), token):
            return _refuse(403, REFUSED + "; a change is sent by the page itself, with the token")
    elif not (_same(from_query, token) or _same(request.cookies.get(COOKIE), token)):
        return _refuse(403, REFUSED)
    if request.method == "GET" and from_query is not None and request.path == "/":
        response: web.StreamResponse = web.HTTPSeeOther("/")  # the token leaves the address bar
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    if from_query is not None:
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return _secure(response)


# ---------------------------------------------------------------- pages and data


async def index(request: web.Request) -> web.Response:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{TOKEN}}", html.escape(request.app[TOKEN], quote=True))
    page = page.replace("{{PIPELINE}}", html.escape(request.app[WORKSPACE].pipeline_dir.name))
    return web.Response(text=page, content_type="text/html")


async def _no_icon() -> web.Response:
    return web.Response(status=204)


def _static(name: str) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / name).read_bytes(), content_type=STATIC_FILES[name])
    return handler


def _data(read: Callable[[Workspace], Any]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        value = await asyncio.to_thread(read, request.app[WORKSPACE])
        return web.json_response(value)
    return handler


async def item_media(request: web.Request) -> web.StreamResponse:
    workspace = request.app[WORKSPACE]
    item = await asyncio.to_thread(workspace.item, request.match_info["kind"], request.match_info["key"])
    if item is None or item.file is None or not item.file.is_file():
        return _refuse(404, "no such picture or clip in the checkpoints.")
    return web.FileResponse(item.file)


async def output_media(request: web.Request) -> web.StreamResponse:
    path = await asyncio.to_thread(request.app[WORKSPACE].output_file, request.match_info["name"])
    if path is None:
        return _refuse(404, "no such output yet.")
    return web.FileResponse(path)


# ---------------------------------------------------------------- writes


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "send the change as JSON."}', content_type="application/json")
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "send the change as a JSON object."}', content_type="application/json")
    return body


def _item_write(change: Callable[[Workspace, Any, Any], str]) -> Handler:
    """A POST naming an item by kind and key: refused unless the checkpoints list that item."""
    async def handler(request: web.Request) -> web.Response:
        body = await _body(request)
        workspace = request.app[WORKSPACE]

        def run() -> tuple[int, dict[str, Any]]:
            item = workspace.item(body.get("kind"), body.get("key"))
            if item is None:
                return 404, {"error": "no such item in the checkpoints; reload the page."}
            try:
                return 200, {"message": change(workspace, item, body.get("text"))}
            except PipelineError as exc:
                return 400, {"error": str(exc)}

        status, answer = await asyncio.to_thread(run)
        return web.json_response(answer, status=status)
    return handler


async def approve_upload(request: web.Request) -> web.Response:
    workspace = request.app[WORKSPACE]

    def run() -> tuple[int, dict[str, Any]]:
        try:
            approval = edits.approve_video(workspace)
        except PipelineError as exc:
            return 400, {"error": str(exc)}
        return 200, {"message": f"{Path(approval.video).name} approved for publishing as it is now ({approval.size} "
                                "bytes); step 12 may upload it (a video made again needs a new approval)."}

    status, answer = await asyncio.to_thread(run)
    return web.json_response(answer, status=status)


def make_app(workspace: Workspace, token: str, hosts: Sequence[str] = ()) -> web.Application:
    """The application; `hosts` are the Host headers it answers to (empty: any, when bound elsewhere)."""
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[WORKSPACE] = workspace
    app[TOKEN] = token
    app[HOSTS] = frozenset(hosts)
    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", lambda _r: _no_icon())
    for name in STATIC_FILES:
        app.router.add_get(f"/static/{name}", _static(name))
    app.router.add_get("/api/tonight", _data(Workspace.tonight))
    app.router.add_get("/api/dailies", _data(Workspace.dailies))
    app.router.add_get("/api/morning", _data(Workspace.morning))
    app.router.add_get("/api/publishing", _data(Workspace.publishing))
    app.router.add_get("/media/item/{kind}/{key}", item_media)
    app.router.add_get("/media/output/{name}", output_media)
    app.router.add_post("/api/retake", _item_write(lambda w, i, _t: edits.ask_retake(w, i)))
    app.router.add_post("/api/approve", _item_write(lambda w, i, _t: edits.approve_item(w, i)))
    app.router.add_post("/api/description", _item_write(edits.edit_description))
    app.router.add_post("/api/scene-line", _item_write(edits.edit_scene_line))
    app.router.add_post("/api/publish/approve", approve_upload)
    return app


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _serve(app: web.Application, sock: socket.socket, url: str, say: Callable[[str], None]) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    say(f"dailies at {url}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound first so the port (a free one for 0) is known before the app is made."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def serve(pipeline_dir: Path, steps: Sequence[Step], *, host: str = "127.0.0.1", port: int = 0,
          say: Callable[[str], None] = print) -> int:
    """Serve the page until Ctrl+C; prints `dailies at http://127.0.0.1:PORT/?token=...` first."""
    workspace = Workspace(pipeline_dir, steps)
    token = secrets.token_urlsafe(24)
    if not _loopback(host):
        say(f"warning: the dailies page listens on {host}, not only on this machine: anyone who can reach it and has "
            "the token can retake, edit and approve the upload; use it only on a network you trust.")
    try:
        sock = _listen(host, port)
    except OSError as exc:
        say(f"error: the dailies page could not listen on {host}:{port} ({exc.strerror or exc}); choose another "
            "--port, or stop what uses it.")
        return 5
    bound = sock.getsockname()[1]
    hosts = [f"127.0.0.1:{bound}", f"localhost:{bound}", f"[::1]:{bound}"] if _loopback(host) else []
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    try:
        asyncio.run(_serve(make_app(workspace, token, hosts), sock, f"http://{shown}:{bound}/?token={token}", say))
    except KeyboardInterrupt:
        say("dailies stopped.")
    return 0
