"""How a fake server process runs its aiohttp app: listen on 127.0.0.1, say where, and stop cleanly
on SIGTERM or SIGINT (what tests.fakes.stop_process sends), so a test never leaves one behind."""
from __future__ import annotations

import asyncio
import os

from aiohttp import web


async def serve_until_stopped(app: web.Application, host: str, port: int, ready: str) -> None:
    """Serve `app` until a stop signal; `ready` is printed with `{port}` filled in once it listens."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(ready.format(port=runner.addresses[0][1]), flush=True)
    stop = asyncio.Event()
    if os.name != "nt":
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
