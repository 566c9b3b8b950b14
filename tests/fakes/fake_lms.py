#!/usr/bin/env python3
"""A fake of LM Studio's `lms` CLI, for tests of the code that starts, loads, unloads and stops it.

Point LM_STUDIO_CMD at `python tests/fakes/fake_lms.py` and set FAKE_LMS_STATE to a directory;
everything the fake knows lives there:
  server.json      {"pid": N | null, "port": P}   the detached fake_llm.py and the last used port
  loaded.json      [{"identifier", "path"}]        what `load` loaded (fake_llm lists these)
  downloaded.json  ["model/key", ...]              optional; else FAKE_LMS_MODELS (comma list)
                                                   else a small default catalogue
  server_args.json ["--think", ...]                optional extra fake_llm.py flags for `server start`
  calls.jsonl      one line per invocation         so tests can assert what was run
  server.log       the fake server's output

Commands, flags and messages mirror the real CLI. Confirmed against lmstudio.ai/docs/cli
(server-start, server-stop, load, ls, ps) and the lmstudio-ai/lms sources
(src/subcommands/server.ts, load.ts, unload.ts, list.ts):
- `lms server start [--port|-p P] [--cors]`: port defaults to the last used one, else 1234;
  success prints "Success! Server is now running on port P"; failure prints "Failed to verify
  the server is running. Please try to use another port." and exits 1. The real CLI verifies
  readiness by polling `GET /lmstudio-greeting` for `{"lmstudio": true}`; so does this fake.
- `lms server stop`: "Stopped the server on port P." or "The server is not running." (exit 1).
- `lms server status [--json]`: "The server is running on port P." / "The server is not
  running."; `--json` also writes `{"running": bool, "port": P|null}` to stdout.
- `lms load [path] [--gpu off|max|0..1] [-c|--context-length N] [--ttl S] [--identifier X]
  [--exact] [-y|--yes] [--estimate-only]`: the path is matched against downloaded model keys
  (exactly with --exact, else fuzzily; -y takes the first of several matches); prints
  "Model loaded successfully in ..." then 'To use the model in the API/SDK, use the identifier
  "X".' Loading does not need the HTTP server (the real CLI talks to the app, not the server).
- `lms unload [identifier] [-a|--all]`: "No models to unload.", 'Unloading "X"...',
  "Unloaded N models." / "Unloaded 1 model.", 'Model "X" unloaded.'
- `lms ls [--json] [--llm] [--embedding]`, `lms ps [--json]`: tables with the real columns
  (LLM/EMBEDDING, PARAMS, ARCH, SIZE; IDENTIFIER, MODEL, STATUS, SIZE, CONTEXT, TTL);
  `ps` with nothing loaded prints "No models are currently loaded" and exits 0, as the real one;
  `ps --json` prints a list of the SDK's instance infos (modelKey, path, identifier, ...; list.ts).
Not confirmed: whether the real CLI's log lines go to stdout or stderr; this fake writes log lines
to stderr and data (tables, --json) to stdout. Interactive prompts are not faked: where the real
CLI would ask, this one fails with a message saying to pass the model or -y.
A second load of an already loaded identifier gets ":2" appended, as LM Studio does.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_PORT = 1234
DEFAULT_CATALOGUE = ("qwen/qwen3-14b", "google/gemma-3-12b", "text-embedding-nomic-embed-text-v1.5")


# ---------------------------------------------------------------- state

def state_dir() -> Path:
    raw = os.environ.get("FAKE_LMS_STATE")
    if not raw:
        print("fake_lms: set FAKE_LMS_STATE to a directory for its state", file=sys.stderr)
        raise SystemExit(2)
    path = Path(raw)
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_json(name: str, default: Any) -> Any:
    try:
        return json.loads((state_dir() / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def write_json(name: str, value: Any) -> None:
    # fake_llm reads loaded.json on every request: replace it whole, never leave it half written.
    target = state_dir() / name
    tmp = target.with_suffix(target.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1), encoding="utf-8")
    os.replace(tmp, target)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def downloaded() -> list[str]:
    listed = read_json("downloaded.json", None)
    if isinstance(listed, list):
        return [str(m) for m in listed]
    env = os.environ.get("FAKE_LMS_MODELS")
    if env:
        return [m.strip() for m in env.split(",") if m.strip()]
    return list(DEFAULT_CATALOGUE)


def model_type(key: str) -> str:
    return "embedding" if "embed" in key.lower() else "llm"


def model_size(key: str) -> int:
    return 1_000_000_000 + (sum(key.encode()) % 9) * 500_000_000


def fmt_size(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


# ---------------------------------------------------------------- server

def greeting_ok(port: int, timeout: float = 0.5) -> bool:
    """The real CLI's readiness probe: GET /lmstudio-greeting answers {"lmstudio": true}."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/lmstudio-greeting", timeout=timeout) as resp:
            return resp.status == 200 and json.loads(resp.read().decode("utf-8")).get("lmstudio") is True
    except (OSError, ValueError, urllib.error.URLError):
        return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # An exited server whose parent (us, gone) was never replaced by a reaping init stays a
    # zombie and still answers kill(0): look at its state too.
    try:
        import psutil  # noqa: PLC0415

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except ImportError:
        return True
    except Exception:  # psutil.NoSuchProcess and friends: gone
        return False


def server_start(args: argparse.Namespace) -> int:
    info = read_json("server.json", {})
    port = args.port if args.port is not None else int(info.get("port") or DEFAULT_PORT)
    if args.cors:
        log("W CORS is enabled. This means any website you visit can use the LM Studio server.")
    log("Starting server...")
    if pid_alive(info.get("pid")) and greeting_ok(int(info.get("port") or 0)):
        if int(info["port"]) == port:
            log(f"Success! Server is now running on port {port}")
            return 0
        stop_process(int(info["pid"]))
    if greeting_ok(port):  # another server (not ours) already answers there
        log("Failed to verify the server is running. Please try to use another port.")
        return 1
    extra = read_json("server_args.json", [])
    log_path = state_dir() / "server.log"
    with open(log_path, "ab") as log_handle:
        # Detached: own session, no inherited pipes, so a caller capturing our output is not
        # kept waiting by the server that outlives us.
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "fake_llm.py"), "--port", str(port), "--lmstudio", *[str(a) for a in extra]],
            stdin=subprocess.DEVNULL, stdout=log_handle, stderr=log_handle,
            start_new_session=True, close_fds=True, env=dict(os.environ),
        )
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if greeting_ok(port):
            write_json("server.json", {"pid": proc.pid, "port": port})
            log(f"Success! Server is now running on port {port}")
            return 0
        time.sleep(0.05)
    if proc.poll() is None:
        stop_process(proc.pid)
    write_json("server.json", {"pid": None, "port": port})
    log("Failed to verify the server is running. Please try to use another port.")
    return 1


def stop_process(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def server_running() -> tuple[bool, int | None]:
    info = read_json("server.json", {})
    port = info.get("port")
    running = bool(port) and pid_alive(info.get("pid")) and greeting_ok(int(port))
    return running, (int(port) if port else None)


def server_stop(args: argparse.Namespace) -> int:
    info = read_json("server.json", {})
    running, port = server_running()
    if not running:
        log("The server is not running.")
        return 1
    stop_process(int(info["pid"]))
    write_json("server.json", {"pid": None, "port": port})
    log(f"Stopped the server on port {port}.")
    return 0


def server_status(args: argparse.Namespace) -> int:
    running, port = server_running()
    log(f"The server is running on port {port}." if running else "The server is not running.")
    if args.json:
        print(json.dumps({"running": running, "port": port}), flush=True)
    return 0


def status(args: argparse.Namespace) -> int:
    running, port = server_running()
    loaded = read_json("loaded.json", [])
    print(f"Server: {'ON (port: ' + str(port) + ')' if running else 'OFF'}")
    print(f"Loaded models: {len(loaded)}")
    return 0


# ---------------------------------------------------------------- models

def match_models(path: str | None, exact: bool) -> list[str]:
    keys = [k for k in downloaded()]
    if path is None:
        return keys
    if exact:
        return [k for k in keys if k == path]
    needle = path.lower()
    exact_hits = [k for k in keys if k.lower() == needle]
    if exact_hits:
        return exact_hits

    def fuzzy(key: str) -> bool:  # characters in order, like the `fuzzy` npm package
        pos = 0
        hay = key.lower()
        for ch in needle:
            pos = hay.find(ch, pos)
            if pos < 0:
                return False
            pos += 1
        return True

    return [k for k in keys if fuzzy(k)]


def load(args: argparse.Namespace) -> int:
    matches = match_models(args.path, args.exact)
    if args.exact and args.path is None:
        log("Path not provided: the parameter [path] is required when using the --exact flag.")
        return 1
    if not matches:
        if args.exact:
            log(f'Model not found: No model found with path being exactly "{args.path}".')
        else:
            log(f'Model not found: No model found that matches path "{args.path}". To see a list of all downloaded models, run: lms ls')
        return 1
    if len(matches) > 1:
        if not args.yes:
            log(f"! Multiple models match the provided path. fake_lms cannot prompt: pass the exact model or -y ({', '.join(matches)}).")
            return 1
        log(f"W {len(matches)} models match the provided path. Loading the first one.")
    key = matches[0]
    if args.estimate_only:
        log(f"Model: {key}")
        log(f"Estimated GPU Memory:   {fmt_size(model_size(key))}")
        log(f"Estimated Total Memory: {fmt_size(model_size(key))}")
        return 0
    loaded = read_json("loaded.json", [])
    identifier = args.identifier or key
    taken = {entry["identifier"] for entry in loaded}
    if identifier in taken:
        n = 2
        while f"{identifier}:{n}" in taken:
            n += 1
        identifier = f"{identifier}:{n}"
    loaded.append({"identifier": identifier, "path": key, "modelKey": key, "type": model_type(key),
                   "contextLength": args.context_length or 4096, "gpu": args.gpu, "ttl": args.ttl})
    write_json("loaded.json", loaded)
    log(f"Model loaded successfully in 0.01s. ({fmt_size(model_size(key))})")
    log(f'To use the model in the API/SDK, use the identifier "{identifier}".')
    return 0


def unload(args: argparse.Namespace) -> int:
    loaded = read_json("loaded.json", [])
    if args.all and args.identifier is not None:
        log("Invalid Usage: You cannot provide [path] when the flag --all is set.")
        return 0
    if args.all:
        if not loaded:
            log("No models to unload.")
            return 0
        for entry in loaded:
            log(f'Unloading "{entry["identifier"]}"...')
        write_json("loaded.json", [])
        log(f"Unloaded {len(loaded)} models." if len(loaded) > 1 else "Unloaded 1 model.")
        return 0
    if args.identifier is not None:
        keep = [e for e in loaded if e["identifier"] != args.identifier]
        if len(keep) == len(loaded):
            log(f'Model Not Found: Cannot find a model with the identifier "{args.identifier}". To see a list of loaded models, run: lms ps')
            return 0
        write_json("loaded.json", keep)
        log(f'Model "{args.identifier}" unloaded.')
        return 0
    if not loaded:
        log('You don\'t have any models loaded. Use "lms load" to load a model.')
        return 1
    if len(loaded) == 1:
        write_json("loaded.json", [])
        log(f'Model "{loaded[0]["identifier"]}" unloaded.')
        return 0
    log("! To unload all models, use the --all flag. fake_lms cannot prompt: pass the identifier.")
    return 1


def table(rows: list[dict[str, str]], columns: list[tuple[str, str]]) -> str:
    widths = {key: max([len(title)] + [len(str(r.get(key, ""))) for r in rows]) for key, title in columns}
    lines = ["    ".join(title.ljust(widths[key]) for key, title in columns).rstrip()]
    for row in rows:
        lines.append("    ".join(str(row.get(key, "")).ljust(widths[key]) for key, _ in columns).rstrip())
    return "\n".join(lines)


def ls(args: argparse.Namespace) -> int:
    keys = downloaded()
    loaded_paths = [e["path"] for e in read_json("loaded.json", [])]
    infos = [{"type": model_type(k), "modelKey": k, "path": k, "displayName": k.split("/")[-1],
              "sizeBytes": model_size(k), "architecture": "nomic-bert" if model_type(k) == "embedding" else ("qwen3" if "qwen" in k else "gemma3")} for k in keys]
    wanted = {t for t, flag in (("llm", args.llm), ("embedding", args.embedding)) if flag}
    shown = [i for i in infos if not wanted or i["type"] in wanted]
    if args.json:
        print(json.dumps(shown))
        return 0
    if not shown:
        print("You have not downloaded any models yet." if not infos
              else f"You have {len(infos)} models, but none of them match the filter.")
        return 0
    total = sum(i["sizeBytes"] for i in shown)
    print()
    print(f"You have {len(shown)} models, taking up {fmt_size(total)} of disk space.")
    print()
    for kind, title in (("llm", "LLM"), ("embedding", "EMBEDDING")):
        rows = []
        for info in sorted((i for i in shown if i["type"] == kind), key=lambda i: i["modelKey"]):
            count = loaded_paths.count(info["path"])
            rows.append({"path": info["modelKey"], "params": "", "arch": info["architecture"],
                         "size": fmt_size(info["sizeBytes"]),
                         "loaded": "" if not count else ("✓ LOADED" if count == 1 else f"✓ LOADED ({count})")})
        if rows:
            print(table(rows, [("path", title), ("params", "PARAMS"), ("arch", "ARCH"), ("size", "SIZE"), ("loaded", "")]))
            print()
    return 0


def instance_info(entry: dict[str, Any]) -> dict[str, Any]:
    """One loaded model as `lms ps --json` shows it: the model's info (key, path...) plus the instance's."""
    key = entry["modelKey"]
    return {"type": entry.get("type", model_type(key)), "modelKey": key, "format": "gguf",
            "displayName": key.split("/")[-1], "path": entry["path"], "sizeBytes": model_size(key),
            "architecture": "nomic-bert" if model_type(key) == "embedding" else ("qwen3" if "qwen" in key else "gemma3"),
            "identifier": entry["identifier"], "ttlMs": entry["ttl"] * 1000 if entry.get("ttl") else None,
            "lastUsedTime": None, "contextLength": entry.get("contextLength", 4096)}


def ps(args: argparse.Namespace) -> int:
    loaded = read_json("loaded.json", [])
    if args.json:  # the real one prints each instance's info (the SDK's ModelInstanceInfo) but its instanceReference
        print(json.dumps([instance_info(e) for e in loaded]))
        return 0
    if not loaded:
        log("No models are currently loaded\n\nTo load a model, run:\n\n    lms load\n")
        return 0
    rows = [{"identifier": e["identifier"], "path": e["path"], "status": "IDLE",
             "size": fmt_size(model_size(e["path"])), "context": str(e.get("contextLength", "")),
             "ttl": ""} for e in sorted(loaded, key=lambda e: e["identifier"])]
    print()
    print(table(rows, [("identifier", "IDENTIFIER"), ("path", "MODEL"), ("status", "STATUS"),
                       ("size", "SIZE"), ("context", "CONTEXT"), ("ttl", "TTL")]))
    print()
    return 0


# ---------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lms", description="fake LM Studio CLI for tests")
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="Commands for managing the local server")
    server_sub = server.add_subparsers(dest="server_command", required=True)
    start = server_sub.add_parser("start")
    start.add_argument("-p", "--port", type=int)
    start.add_argument("--cors", action="store_true")
    start.set_defaults(func=server_start)
    server_sub.add_parser("stop").set_defaults(func=server_stop)
    st = server_sub.add_parser("status")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=server_status)

    sub.add_parser("status").set_defaults(func=status)

    ld = sub.add_parser("load")
    ld.add_argument("path", nargs="?")
    ld.add_argument("--gpu")
    ld.add_argument("-c", "--context-length", type=int)
    ld.add_argument("--ttl", type=int)
    ld.add_argument("--exact", action="store_true")
    ld.add_argument("--identifier")
    ld.add_argument("--estimate-only", action="store_true")
    ld.add_argument("-y", "--yes", action="store_true")
    ld.set_defaults(func=load)

    ul = sub.add_parser("unload")
    ul.add_argument("identifier", nargs="?")
    ul.add_argument("-a", "--all", action="store_true")
    ul.set_defaults(func=unload)

    lsp = sub.add_parser("ls")
    lsp.add_argument("--json", action="store_true")
    lsp.add_argument("--llm", action="store_true")
    lsp.add_argument("--embedding", action="store_true")
    lsp.set_defaults(func=ls)

    psp = sub.add_parser("ps")
    psp.add_argument("--json", action="store_true")
    psp.set_defaults(func=ps)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    calls = state_dir() / "calls.jsonl"
    with open(calls, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"argv": argv, "t": time.time()}) + "\n")
    if args.command == "load" and args.gpu is not None:
        gpu = args.gpu.strip().lower()
        if gpu not in ("off", "max"):
            try:
                ratio = float(gpu)
            except ValueError:
                log("error: option '--gpu <offload-ratio>' argument is invalid. Not a number")
                return 1
            if not 0 <= ratio <= 1:
                log("error: option '--gpu <offload-ratio>' argument is invalid. Number out of range, must be between 0 and 1")
                return 1
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
