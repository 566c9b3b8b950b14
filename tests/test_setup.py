"""`generate.py --setup` against a fake Hugging Face Hub (a real process on 127.0.0.1) and local git
repositories standing in for ComfyUI and a node pack: nothing here reaches the internet."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.setup_world import (TOKEN, hub_config, make_repo, make_world, run_setup, start_fake_hub)

CDN_BLOB = "/cdn/"


def _screen(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _parts(world_dir: Path) -> list[Path]:
    return sorted(world_dir.rglob("*.part"))


def _token_anywhere(root: Path) -> list[Path]:
    """Files under `root` whose bytes hold the test token."""
    return [p for p in root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def test_fresh_install_dry_run_then_install_then_nothing_to_do(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    (world.comfy / "main.py").unlink()  # no ComfyUI yet: only the project's own files in its folder
    (world.comfy / "comfyui_version.py").unlink()
    (world.comfy / "README.md").write_text("our README\n", encoding="utf-8")
    make_repo(tmp_path / "repos" / "ComfyUI", {"main.py": "print('ComfyUI')\n", "README.md": "ComfyUI's README\n",
                                               "comfyui_version.py": '__version__ = "0.8.1"\n', "requirements.txt": ""})
    with start_fake_hub(hub_config(world)) as hub:
        env = world.env(hub.url, HF_TOKEN=TOKEN, COMFYUI_PYTHON="")
        dry = run_setup(world, env, "--from", "2", "--until", "7", "--dry-run")
        assert dry.returncode == 0, _screen(dry)
        assert "ComfyUI   to install" in dry.stdout and "node pack ComfyUI-OmniVoice-TTS: to install" in dry.stdout
        assert "t5-base.safetensors: to fetch, 0.2 MB" in dry.stdout and "into models/text_encoders" in dry.stdout
        assert "stable-audio-open-1.0.safetensors: to fetch, 0.1 MB" in dry.stdout
        assert not (world.comfy / "main.py").exists() and not (world.comfy / "models").exists()
        assert hub.requests("GET") == []  # a dry run only asks the sizes

        first = run_setup(world, env, "--from", "2", "--until", "7")
        assert first.returncode == 0, _screen(first)
        assert first.stdout.strip().splitlines()[-1].startswith("setup: installed 4 thing(s); ComfyUI, 1 node pack(s)")
        assert (world.comfy / "README.md").read_text(encoding="utf-8") == "our README\n"  # ours, not ComfyUI's
        assert (world.comfy / "main.py").is_file() and not (world.comfy / ".setup" / "ComfyUI.src").exists()
        python = world.comfy / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        assert python.is_file()
        pack = world.comfy / "custom_nodes" / "ComfyUI-OmniVoice-TTS"
        assert (pack / "installed_with.txt").read_text() == str(python)  # its install.py ran in ComfyUI's Python
        assert not list((world.comfy / "custom_nodes").glob("*.disabled"))
        for folder, name in (("text_encoders", "t5-base.safetensors"), ("checkpoints", "stable-audio-open-1.0.safetensors")):
            assert world.model(folder, name).read_bytes() == world.files[name]
        assert _parts(world.comfy) == []
        record = json.loads((world.comfy / ".setup" / "models.json").read_text())
        assert record["text_encoders/t5-base.safetensors"]["sha256"] == hashlib.sha256(world.files["t5-base.safetensors"]).hexdigest()
        assert all(not r["token"] for r in hub.requests() if r["path"].startswith(CDN_BLOB))  # never to the CDN
        asked = len(hub.requests())

        again = run_setup(world, env, "--from", "2", "--until", "7")
        assert again.returncode == 0, _screen(again)
        assert "setup: nothing to do" in again.stdout and "$ " not in again.stdout
        assert len(hub.requests()) == asked  # not even a HEAD
    assert TOKEN not in _screen(dry) + _screen(first) + _screen(again)
    assert _token_anywhere(world.root / "project") == []


def test_download_killed_mid_file_resumes_where_it_stopped(tmp_path: Path) -> None:
    # huggingface_hub writes 10 MiB at a time: the fake sends 11 MiB at full speed, then trickles.
    size = 12 * 1024 * 1024
    world = make_world(tmp_path, t5_size=size)
    part_glob = "t5-base.safetensors.*.part"
    folder = world.comfy / "models" / "text_encoders"
    with start_fake_hub(hub_config(world), stall_after=11 * 1024 * 1024) as hub:
        env = world.env(hub.url, HF_TOKEN=TOKEN)
        proc = subprocess.Popen([sys.executable, "generate.py", "--setup", "--only", "7"], cwd=world.pipeline, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            grown = 0
            while time.monotonic() < deadline and proc.poll() is None:
                parts = list(folder.glob(part_glob)) if folder.is_dir() else []
                grown = parts[0].stat().st_size if parts else 0
                if grown >= 10 * 1024 * 1024:
                    break
                time.sleep(0.05)
            assert proc.poll() is None and grown >= 10 * 1024 * 1024, "the download never got past its first 10 MiB"
        finally:
            proc.kill()  # SIGKILL: no handler, no cleanup
            proc.wait(timeout=30)
    assert not world.model("text_encoders", "t5-base.safetensors").exists()  # never a truncated file under its name
    (part,) = folder.glob(part_glob)
    kept = part.stat().st_size
    assert 10 * 1024 * 1024 <= kept < size

    with start_fake_hub(hub_config(world)) as hub:  # the network is back, at full speed
        before = len(hub.requests())
        result = run_setup(world, world.env(hub.url, HF_TOKEN=TOKEN), "--only", "7")
        assert result.returncode == 0, _screen(result)
        gets = [r for r in hub.requests()[before:] if r["method"] == "GET" and r["path"].startswith(CDN_BLOB)]
        t5_sha = hashlib.sha256(world.files["t5-base.safetensors"]).hexdigest()
        assert [r["range"] for r in gets if r["path"].endswith(t5_sha)] == [f"bytes={kept}-"]
    assert "resuming at" in result.stdout
    assert world.model("text_encoders", "t5-base.safetensors").read_bytes() == world.files["t5-base.safetensors"]
    assert list(folder.glob(part_glob)) == []


def test_corrupt_download_is_refused_in_one_sentence_and_the_rest_installed(tmp_path: Path) -> None:
    world = make_world(tmp_path, hub={"t5-base.safetensors": {"corrupt": True}})
    with start_fake_hub(hub_config(world)) as hub:
        result = run_setup(world, world.env(hub.url, HF_TOKEN=TOKEN), "--only", "7")
    assert result.returncode != 0, _screen(result)
    fails = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert len(fails) == 1 and "t5-base.safetensors" in fails[0] and "sha256" in fails[0]
    assert fails[0].count(". ") == 0 and fails[0].rstrip().endswith(".")  # one sentence
    assert "refused and deleted" in fails[0]
    assert not world.model("text_encoders", "t5-base.safetensors").exists() and _parts(world.comfy) == []
    assert world.model("checkpoints", "stable-audio-open-1.0.safetensors").read_bytes() == world.files[
        "stable-audio-open-1.0.safetensors"]
    assert result.stdout.strip().splitlines()[-1].startswith("setup: 1 problem(s)")


def test_not_enough_disk_stops_before_any_download(tmp_path: Path) -> None:
    world = make_world(tmp_path, hub={"t5-base.safetensors": {"announce_size": 10 ** 15}})  # a petabyte file
    with start_fake_hub(hub_config(world)) as hub:
        result = run_setup(world, world.env(hub.url, HF_TOKEN=TOKEN), "--only", "7", "--yes")
        assert hub.requests("GET") == []
    assert result.returncode == 8, _screen(result)
    last = result.stdout.strip().splitlines()[-1]
    assert "need about 1,000,000" in last and "free" in last and "nothing was downloaded" in last
    assert not (world.comfy / "models").exists()


def test_a_large_download_is_asked_for_and_refused_without_a_terminal(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    with start_fake_hub(hub_config(world)) as hub:
        env = world.env(hub.url, HF_TOKEN=TOKEN, SETUP_MAX_DOWNLOAD_GB="0.0001")  # 100 kB
        refused = run_setup(world, env, "--only", "7")
        assert refused.returncode == 4, _screen(refused)
        assert "--yes" in refused.stdout and "SETUP_MAX_DOWNLOAD_GB" in refused.stdout
        assert hub.requests("GET") == []
        agreed = run_setup(world, env, "--only", "7", "--yes")
        assert agreed.returncode == 0, _screen(agreed)


def test_gated_file_without_access_is_one_sentence_and_the_token_is_never_shown(tmp_path: Path) -> None:
    world = make_world(tmp_path, gated_tokens=("hf_someone_else",))
    with start_fake_hub(hub_config(world)) as hub:
        anonymous = run_setup(world, world.env(hub.url), "--only", "7")
        with_token = run_setup(world, world.env(hub.url, HF_TOKEN=TOKEN), "--only", "7")
        assert any(r["token"] for r in hub.requests("HEAD"))  # the token was sent to the Hub...
        assert all(not r["token"] for r in hub.requests() if r["path"].startswith(CDN_BLOB))  # ...never elsewhere
    for result, why in ((anonymous, "no Hugging Face token was found"), (with_token, "your Hugging Face token has no access")):
        assert result.returncode == 4, _screen(result)  # the licence is the only problem: a settings-kind exit
        (fail,) = [line for line in result.stdout.splitlines() if "FAIL" in line]
        assert "test-org/stable-audio" in fail and why in fail and "accept its licence" in fail and "hf auth login" in fail
        assert fail.count(". ") == 0
        assert TOKEN not in _screen(result)
    assert world.model("text_encoders", "t5-base.safetensors").is_file()  # the ungated file came anyway
    assert not world.model("checkpoints", "stable-audio-open-1.0.safetensors").exists()
    assert _token_anywhere(world.root / "project") == []


def test_a_plain_url_source_is_checked_by_the_manifest_sha256_and_never_gets_the_token(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    config = hub_config(world)
    data = json.loads(config.read_text())
    data["plain"] = {"t5-base.safetensors": str(world.hub_dir / "t5-base.safetensors")}
    config.write_text(json.dumps(data))
    with start_fake_hub(config) as hub:
        manifest = world.hub_dir / "manifest.toml"
        text = manifest.read_text().replace('repo = "test-org/t5-base"\npath = "t5-base.safetensors"',
                                            f'url = "{hub.url}/plain/t5-base.safetensors"')
        manifest.write_text(text)
        result = run_setup(world, world.env(hub.url, HF_TOKEN=TOKEN), "--only", "7")
        plain = [r for r in hub.requests() if r["path"].startswith("/plain/")]
    assert result.returncode == 0, _screen(result)
    assert world.model("text_encoders", "t5-base.safetensors").read_bytes() == world.files["t5-base.safetensors"]
    assert {r["method"] for r in plain} == {"HEAD", "GET"} and not any(r["token"] for r in plain)
