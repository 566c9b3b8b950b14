"""A world for `generate.py --setup` tests: a fake Hub process, local git repositories standing in for
ComfyUI and a node pack, and a manifest pointing at them under the shipped workflows' file names.

Everything lives in the test's tmp_path: the fake Hub's files and config in `hub/` (it holds the
test token, so a scan for the token skips that folder), the project copy in `project/`, ComfyUI in
`project/ComfyUI`, the user's Hugging Face login folder in `hf_home/`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes import stop_process
from tests.support.project import copy_pipeline, env_for

FAKE_HUB = Path(__file__).resolve().parents[1] / "fakes" / "fake_hub.py"
TOKEN = "hf_TESTtokenNEVERinLOGS0123456789"
_URL_LINE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


@dataclass
class FakeHub:
    proc: subprocess.Popen[str]
    url: str
    record: Path

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        rows = [json.loads(line) for line in self.record.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [r for r in rows if method is None or r["method"] == method]

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "FakeHub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_fake_hub(config: Path, stall_after: int | None = None) -> FakeHub:
    """Start fake_hub.py on a free port; returns once it said where it listens."""
    cmd = [sys.executable, str(FAKE_HUB), "--config", str(config)]
    if stall_after is not None:
        cmd += ["--stall-after", str(stall_after)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the first line it prints; a crash ends the stream instead
    match = _URL_LINE.search(line)
    if not match:
        stop_process(proc)
        raise RuntimeError(f"fake hub did not start: {line}{proc.stdout.read()}")
    return FakeHub(proc, match.group(1), Path(json.loads(config.read_text())["record"]))


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> str:
    """A local git repository with `files` committed; returns the commit."""
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "init", cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


# The pack's install.py writes down which Python ran it: ComfyUI's own must.
PACK_INSTALL = "import pathlib, sys\npathlib.Path('installed_with.txt').write_text(sys.executable)\n"


@dataclass
class World:
    root: Path
    pipeline: Path
    comfy: Path
    hub_dir: Path
    files: dict[str, bytes] = field(default_factory=dict)  # repo path -> content
    pack_commit: str = ""

    def env(self, hub_url: str, **extra: str) -> dict[str, str]:
        env = env_for(COMFYUI_DIR=str(self.comfy), COMFYUI_PYTHON=sys.executable, HF_ENDPOINT=hub_url,
                      HF_HOME=str(self.root / "hf_home"), SETUP_MANIFEST=str(self.hub_dir / "manifest.toml"),
                      HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="30")
        env.pop("HF_TOKEN", None)
        env.update(extra)
        return env

    def model(self, folder: str, name: str) -> Path:
        return self.comfy / "models" / folder / name


def make_world(tmp_path: Path, *, gated_tokens: tuple[str, ...] = (TOKEN,), t5_size: int = 200_000,
               stable_audio_size: int = 50_000, hub: dict[str, Any] | None = None,
               manifest_extra: str = "", sha_override: str | None = None) -> World:
    """gen.audio copied, an empty ComfyUI folder (main.py only), a fake Hub config with sfx.json's two
    models (stable-audio in a gated repo) and a git node pack; `hub` overrides file entries."""
    root = tmp_path
    pipeline = copy_pipeline(root / "project", "gen.audio")
    comfy = root / "project" / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("# a ComfyUI stands here\n", encoding="utf-8")
    (comfy / "comfyui_version.py").write_text('__version__ = "0.8.1"\n', encoding="utf-8")
    hub_dir = root / "hub"
    hub_dir.mkdir()
    world = World(root, pipeline, comfy, hub_dir)
    contents = {"t5-base.safetensors": os.urandom(t5_size), "stable-audio-open-1.0.safetensors": os.urandom(stable_audio_size)}
    entries: dict[str, dict[str, Any]] = {}
    for name, data in contents.items():
        (hub_dir / name).write_bytes(data)
        world.files[name] = data
        entries[name] = {"file": str(hub_dir / name), "lfs": True}
    for name, extra in (hub or {}).items():
        entries[name].update(extra)
    config = {
        "commit": "c0ffee0000000000000000000000000000000001",
        "repos": {
            "test-org/t5-base": {"files": {"t5-base.safetensors": entries["t5-base.safetensors"]}},
            "test-org/stable-audio": {"gated": True, "tokens": list(gated_tokens),
                                      "files": {"stable-audio-open-1.0.safetensors": entries["stable-audio-open-1.0.safetensors"]}},
        },
        "record": str(hub_dir / "requests.jsonl"),
    }
    (hub_dir / "hub.json").write_text(json.dumps(config), encoding="utf-8")
    world.pack_commit = make_repo(root / "repos" / "ComfyUI-OmniVoice-TTS",
                                  {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "install.py": PACK_INSTALL})
    sha = sha_override or hashlib.sha256(contents["t5-base.safetensors"]).hexdigest()
    (hub_dir / "manifest.toml").write_text(f'''
[comfyui]
git = "{(root / 'repos' / 'ComfyUI').as_posix()}"
min_version = "0.8.1"
torch = []

[[pack]]
name = "ComfyUI-OmniVoice-TTS"
git = "{(root / 'repos' / 'ComfyUI-OmniVoice-TTS').as_posix()}"
commit = "{world.pack_commit}"
nodes = ["OmniVoiceMultiSpeakerTTS"]
install = "script"

[[model]]
name = "OmniVoice (auto download)"
folder = "omnivoice"
fetched_by = "pack"
repo = "test-org/omnivoice"

[[model]]
name = "t5-base.safetensors"
folder = "text_encoders"
repo = "test-org/t5-base"
path = "t5-base.safetensors"
sha256 = "{sha}"

[[model]]
name = "stable-audio-open-1.0.safetensors"
folder = "checkpoints"
repo = "test-org/stable-audio"
path = "stable-audio-open-1.0.safetensors"
{manifest_extra}
''', encoding="utf-8")
    return world


def hub_config(world: World) -> Path:
    return world.hub_dir / "hub.json"


def run_setup(world: World, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "generate.py", "--setup", *args], cwd=world.pipeline, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
