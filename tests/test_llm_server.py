"""The LLM server as every part of the pipeline reaches it: one URL, one name per model (issue 20).

Real processes: fake_lms.py (LM Studio's `lms`) starting fake_llm.py, and the code under test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes" / "orch"))
import orch_support as S  # noqa: E402

from common.engines.choice import choose_engines, engines_from_env  # noqa: E402
from common.run.errors import ConfigError  # noqa: E402
from common.services.lifecycle import ServiceManager  # noqa: E402
from common.services.llm import LLMClient  # noqa: E402
from common.services.llm_endpoint import choose_auto_model, models_url, normalize_base_url  # noqa: E402
from common.services.llm_server import LLMService, _ps_table_names  # noqa: E402
from tests.fakes.llm_helpers import start_fake_llm  # noqa: E402

pytestmark = pytest.mark.timeout(60)

# How users write the address of a server whose API is at /v1 (LM Studio, Ollama, llama.cpp, vLLM).
URL_FORMS = ("http://127.0.0.1:{port}", "http://127.0.0.1:{port}/", "http://127.0.0.1:{port}/v1/")


def lms(state: Path, *args: str) -> subprocess.CompletedProcess:
    """The fake `lms`, run as the user would run the real one."""
    return subprocess.run([sys.executable, str(S.FAKE_LMS), *args], env={**os.environ, "FAKE_LMS_STATE": str(state)},
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def lm_studio_running(state: Path) -> int:
    """LM Studio's server started by the user (not by us) on a free port; its port."""
    port = S.free_port()
    started = lms(state, "server", "start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    return port


def server_starts(state: Path) -> list[list[str]]:
    return [c for c in S.lms_calls(state) if c[:2] == ["server", "start"]]


# --------------------------------------------------------------------------- one URL


def test_the_api_root_is_written_one_way() -> None:
    for form in URL_FORMS:
        assert normalize_base_url(form.format(port=1234)) == "http://127.0.0.1:1234/v1"
    assert normalize_base_url("localhost:11434") == "http://localhost:11434/v1"
    assert normalize_base_url("  ") == normalize_base_url(None) == "http://127.0.0.1:1234/v1"
    assert normalize_base_url("http://gpu-box:8000/openai/v1/") == "http://gpu-box:8000/openai/v1"  # the user's path
    assert models_url("http://127.0.0.1:1234/") == "http://127.0.0.1:1234/v1/models"


@pytest.mark.parametrize("form", URL_FORMS)
def test_a_running_server_is_seen_whatever_the_url_form(tmp_path: Path, lms_state: Path, form: str) -> None:
    """Without /v1 the engine choice and the service check used to probe /models, get 404 and go
    offline ("not answering"), or start LM Studio on a port it already held."""
    port = lm_studio_running(lms_state)
    url = form.format(port=port)
    settings = SimpleNamespace(PIPELINE_ENGINE="auto", PIPELINE_TEXT_ENGINE="auto",
                               COMFYUI_BASE_URL=f"http://127.0.0.1:{S.free_port()}", COMFYUI_DIR=str(tmp_path / "none"),
                               LM_STUDIO_BASE_URL=url, LM_STUDIO_CMD=S.lms_command())
    choice = choose_engines(settings)
    assert choice.text == "llm" and f"LLM answering at http://127.0.0.1:{port}/v1" in choice.reason
    alone = engines_from_env(settings, environ={})  # a script run alone: reachability only
    assert alone.text == "llm" and not alone.text_stop

    lines: list[str] = []
    service = LLMService(url, S.lms_command(), "qwen/qwen3-14b", start_timeout=30, say=lines.append)
    assert service.base_url == f"http://127.0.0.1:{port}/v1" and service.answers()
    with ServiceManager(None, service, say=lines.append) as manager:
        manager.prepare_for(needs_comfyui=False, needs_llm=True)
        assert service.adopted and not service.started_by_us
        client = LLMClient(url, "qwen/qwen3-14b", timeout=10, transport_retries=0)
        assert client.complete_text("Say hello.")
    assert server_starts(lms_state) == [["server", "start", "--port", str(port)]]  # the user's, above
    assert any(f"adopted the LLM server already running at http://127.0.0.1:{port}/v1 (LM Studio)" in line
               for line in lines)


# --------------------------------------------------------------------------- one name per model


def test_a_model_is_loaded_under_the_name_the_questions_ask_for(tmp_path: Path, lms_state: Path) -> None:
    """`lms load qwen3-4b -y` picks a file by fuzzy match and names it by that file's key, so the API
    would know only qwen/qwen3-4b-2507: --identifier makes it answer to LM_STUDIO_MODEL."""
    (lms_state / "downloaded.json").write_text(json.dumps(["qwen/qwen3-4b-2507"]))
    port = lm_studio_running(lms_state)
    service = LLMService(f"http://127.0.0.1:{port}/v1", S.lms_command(), "qwen3-4b", say=lambda _: None)
    try:
        service.ensure_running()
        loads = [c for c in S.lms_calls(lms_state) if c[0] == "load"]
        assert loads == [["load", "qwen3-4b", "--identifier", "qwen3-4b", "-y"]]
        [loaded] = json.loads(lms(lms_state, "ps", "--json").stdout)
        assert (loaded["identifier"], loaded["modelKey"]) == ("qwen3-4b", "qwen/qwen3-4b-2507")
        client = LLMClient(service.base_url, "qwen3-4b", timeout=10, transport_retries=0)
        assert "qwen3-4b" in client.models() and client.complete_text("Say hello.")
        service.ensure_running()  # loaded already, under that very name: not a second copy
        assert len([c for c in S.lms_calls(lms_state) if c[0] == "load"]) == 1
    finally:
        service.release()


def test_a_longer_model_name_does_not_count_as_loaded(tmp_path: Path, lms_state: Path) -> None:
    (lms_state / "downloaded.json").write_text(json.dumps(["qwen/qwen3-4b-2507", "qwen/qwen3-4b"]))
    assert lms(lms_state, "load", "qwen/qwen3-4b-2507", "-y").returncode == 0
    port = lm_studio_running(lms_state)
    service = LLMService(f"http://127.0.0.1:{port}/v1", S.lms_command(), "qwen/qwen3-4b", say=lambda _: None)
    try:
        service.ensure_running()
        assert [c for c in S.lms_calls(lms_state) if c[0] == "load"][-1] == [
            "load", "qwen/qwen3-4b", "--identifier", "qwen/qwen3-4b", "-y"]
        identifiers = [m["identifier"] for m in json.loads(lms(lms_state, "ps", "--json").stdout)]
        assert identifiers == ["qwen/qwen3-4b-2507", "qwen/qwen3-4b"]
    finally:
        service.release()


def test_the_ps_table_is_read_cell_by_cell(tmp_path: Path, lms_state: Path) -> None:
    """An lms without `ps --json`: its table, or the older `Identifier:` lines, never a substring."""
    (lms_state / "downloaded.json").write_text(json.dumps(["qwen/qwen3-4b-2507", "google/gemma-3-12b"]))
    assert lms(lms_state, "load", "qwen/qwen3-4b-2507", "-y").returncode == 0
    assert lms(lms_state, "load", "google/gemma-3-12b", "--identifier", "vision", "-y").returncode == 0
    table = lms(lms_state, "ps").stdout
    assert "IDENTIFIER" in table and "qwen/qwen3-4b-2507" in table
    names = _ps_table_names(table)
    assert names == {"qwen/qwen3-4b-2507", "vision", "google/gemma-3-12b"}
    assert "qwen/qwen3-4b" not in names and "idle" not in names
    older = ("   LOADED MODELS\n\nIdentifier: unsloth/deepseek-r1-distill-qwen-1.5b\n  • Type:  LLM\n"
             "  • Path: unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF/DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf\n"
             "  • Size: 1.12 GB\n")
    assert _ps_table_names(older) == {"unsloth/deepseek-r1-distill-qwen-1.5b"}
    assert _ps_table_names("") == set()


def test_auto_is_the_first_chat_model_for_everyone(tmp_path: Path) -> None:
    """The preflight names choose_auto_model's pick (tests/test_preflight.py); the client asks it."""
    offered = ["text-embedding-nomic-embed-text-v1.5", "qwen/qwen3-8b", "gemma"]
    assert choose_auto_model(offered) == "qwen/qwen3-8b"
    assert choose_auto_model([]) is None
    with start_fake_llm(tmp_path, model=offered) as fake:
        client = LLMClient(fake.base_url, "auto", timeout=10, transport_retries=0)
        assert client.model == "qwen/qwen3-8b" and client.complete_text("Say hello.")
        assert {r.get("model") for r in fake.chat_requests()} == {"qwen/qwen3-8b"}
    (tmp_path / "embedding-only").mkdir()
    with start_fake_llm(tmp_path / "embedding-only", model=offered[:1]) as fake:
        with pytest.raises(ConfigError, match=r"offers no chat model \(only embedding models: text-embedding"):
            LLMClient(fake.base_url, "auto", timeout=10, transport_retries=0).complete_text("Say hello.")
        assert fake.chat_count() == 0
