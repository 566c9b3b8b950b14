"""The fake's command line (its own switches and the real ComfyUI flags it takes), and serving."""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

from aiohttp import web

from .execution import _worker
from .nodes import DEFAULT_MODELS, REGISTRY
from .routes import build_app
from .state import State


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
