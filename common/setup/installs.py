"""ComfyUI and its node packs, installed with plain git and pip in ComfyUI's own Python.

Why git + pip and not comfy-cli: comfy-cli is one more tool to install into some Python, asks
questions, and installs torch its own way; git and pip are already needed, and this way every
step is a command the user could type, printed as it runs. Each install happens beside its final
place and moves there last (a pack's folder ends in `.disabled`, which ComfyUI skips; ComfyUI's
`main.py` moves in last), so an install killed halfway is simply done again by the next run and
never looks finished: a folder under its final name is a finished install.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

from common.run.errors import PreflightError
from common.services.comfyui.interpreter import VENVS
from common.setup.manifest import ComfyCore, Pack

SETUP_DIR = ".setup"  # inside COMFYUI_DIR: the ComfyUI clone in progress


class InstallError(PreflightError):
    """git or pip failed; the sentence carries their last line."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # a wrong or private URL fails instead of waiting for a password
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(cmd: Sequence[str], what: str, fix: str, say: Callable[[str], None], cwd: Path | None = None) -> None:
    """Run a command, its output shown indented as it comes; a failure is one sentence with its last line."""
    say(f"    $ {' '.join(str(c) for c in cmd)}")
    tail: deque[str] = deque(maxlen=20)
    try:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace")
    except OSError as exc:
        raise InstallError(f"{what} could not start ({exc}); {fix}") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            tail.append(line)
            say(f"      {line}")
    code = proc.wait()
    if code != 0:
        last = next((t for t in reversed(tail) if "error" in t.lower()), tail[-1] if tail else "no output")
        raise InstallError(f"{what} failed (exit {code}: {last.strip()}); {fix}")


def git_exe() -> str:
    exe = shutil.which("git")
    if exe is None:
        raise InstallError("setup needs git to fetch ComfyUI and its node packs, and there is none on the PATH: "
                           "install git (git-scm.com) and run --setup again.")
    return exe


def remove_tree(path: Path) -> None:
    """Delete a folder, git's read-only object files included (Windows refuses those otherwise)."""
    def writable(func: Callable[..., object], target: str, _exc: object) -> None:
        os.chmod(target, stat.S_IWRITE)
        func(target)

    if path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=writable)
        else:
            shutil.rmtree(path, onerror=writable)


def comfyui_version(comfy_dir: Path) -> str | None:
    """The version ComfyUI writes into comfyui_version.py (None when it cannot be read)."""
    try:
        text = (comfy_dir / "comfyui_version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return match.group(1) if match else None


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def existing_venv(comfy_dir: Path) -> Path | None:
    for name in VENVS:
        python = venv_python(comfy_dir / name)
        if python.is_file():
            return python
    return None


def imports_torch(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import torch"], capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def torch_command(python: str, core: ComfyCore, nvidia: bool) -> list[str]:
    """pip install of torch as ComfyUI's README says: CUDA wheels with an NVIDIA GPU, CPU wheels without."""
    cmd = [python, "-m", "pip", "install", *core.torch]
    if sys.platform == "darwin":
        return cmd  # PyPI's own wheels carry Apple's Metal backend
    if nvidia and core.torch_index.get("nvidia"):
        return [*cmd, "--extra-index-url", core.torch_index["nvidia"]]
    if not nvidia and core.torch_index.get("cpu"):
        return [*cmd, "--index-url", core.torch_index["cpu"]]
    return cmd


def install_comfyui(core: ComfyCore, comfy_dir: Path, python: str | None, nvidia: bool,
                    say: Callable[[str], None]) -> str:
    """Clone ComfyUI, make its venv (unless COMFYUI_PYTHON names one), install torch and its requirements,
    then move it into `comfy_dir` (files already there, such as our README.md, are kept); returns its Python."""
    git = git_exe()
    stage = comfy_dir / SETUP_DIR / "ComfyUI.src"
    remove_tree(stage)
    stage.parent.mkdir(parents=True, exist_ok=True)
    branch = ["--branch", core.ref] if core.ref else []
    run([git, "clone", "--depth", "1", *branch, core.git, str(stage)], f"cloning ComfyUI from {core.git}",
        "check the network and the [comfyui] git/ref of the setup manifest, then run --setup again.", say)
    if python is None:
        found = existing_venv(comfy_dir)
        if found is None:
            venv = comfy_dir / VENVS[0]
            run([sys.executable, "-m", "venv", str(venv)], f"creating ComfyUI's venv in {venv}",
                "make sure this Python has its venv module (Debian: apt install python3-venv).", say)
            found = venv_python(venv)
        python = str(found)
    if core.torch and not imports_torch(python):
        run(torch_command(python, core, nvidia), "installing torch into ComfyUI's Python",
            "install torch for your GPU yourself (pytorch.org) into that Python, then run --setup again.", say)
    requirements = stage / "requirements.txt"
    if requirements.is_file():
        run([python, "-m", "pip", "install", "-r", str(requirements)], "installing ComfyUI's requirements",
            "read pip's message above, fix it, then run --setup again.", say)
    entries = sorted(stage.iterdir(), key=lambda p: p.name == "main.py")  # main.py last: it marks the install done
    for entry in entries:
        target = comfy_dir / entry.name
        if not target.exists():
            os.replace(entry, target)
    remove_tree(stage)
    return python


def pack_commit(folder: Path) -> str | None:
    if not (folder / ".git").exists() or shutil.which("git") is None:
        return None
    out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def install_pack(pack: Pack, custom_nodes: Path, python: str, say: Callable[[str], None]) -> None:
    """Clone `pack` at its commit beside custom_nodes/<name>, install its requirements, then move it in."""
    git = git_exe()
    stage = custom_nodes / f"{pack.name}.setup.disabled"  # ComfyUI skips folders ending in .disabled
    remove_tree(stage)
    custom_nodes.mkdir(parents=True, exist_ok=True)
    fix = f"check the network and the git URL / commit of {pack.name} in the setup manifest, then run --setup again."
    run([git, "clone", "--quiet", pack.git, str(stage)], f"cloning {pack.name} from {pack.git}", fix, say)
    if pack.commit:
        run([git, "-C", str(stage), "checkout", "--quiet", "--detach", pack.commit],
            f"checking out {pack.name} at {pack.commit[:12]}", fix, say)
    pip_fix = f"read the message above, fix it (or install {pack.name}'s requirements by hand), then run --setup again."
    if pack.install == "requirements" and (stage / "requirements.txt").is_file():
        run([python, "-m", "pip", "install", "-r", "requirements.txt"], f"installing {pack.name}'s requirements",
            pip_fix, say, cwd=stage)
    elif pack.install == "script":
        run([python, "install.py"], f"running {pack.name}'s install.py", pip_fix, say, cwd=stage)
    if pack.pip:
        run([python, "-m", "pip", "install", "--upgrade", *pack.pip], f"installing {', '.join(pack.pip)} for {pack.name}",
            pip_fix, say)
    os.replace(stage, custom_nodes / pack.name)
