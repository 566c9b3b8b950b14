"""The contract lane for text: our LLM client and gen.audio's three text steps against a real
OpenAI-compatible server.

fake_llm.py answers as LM Studio, Ollama and llama.cpp's server were observed to answer; this lane
checks our side against a real one. It needs no downloaded weights: llama.cpp's server (through
llama-cpp-python[server]) serving the tiny random-weight model tests/contract/tiny_gguf.py writes.
Such a model says gibberish, so the lane does not judge what it says. It checks what a user would
meet: every question ends in bounded time with an answer or one clear sentence, a refused
structured format falls back to one the server has, a prompt beyond the context is told as such,
and a grammar-constrained format gets at least one kind of question answered and checkpointed.

Run it (README, "Checking against a real OpenAI-compatible server"):
    LLM_CONTRACT_URL=http://127.0.0.1:8080/v1 python -m pytest tests/contract/test_real_llm.py -n 0
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

HOW = ("the LLM contract lane needs a real OpenAI-compatible server: set LLM_CONTRACT_URL (README, "
       "'Checking against a real OpenAI-compatible server')")
if not os.environ.get("LLM_CONTRACT_URL"):
    pytest.skip(HOW, allow_module_level=True)

from common.run.errors import ConfigError, JobError, PipelineError  # noqa: E402  (after the skip)
from common.services.llm import LLMClient  # noqa: E402
from tests.support.project import copy_pipeline, env_for, run_script  # noqa: E402

URL = os.environ["LLM_CONTRACT_URL"]
MODEL = os.environ.get("LLM_CONTRACT_MODEL", "auto")
pytestmark = pytest.mark.timeout(900)  # a CPU server; each question is bounded by LLM_TIMEOUT and the retries


def _client(log: list[str] | None = None, model: str = MODEL, **kw: Any) -> LLMClient:
    return LLMClient(URL, model, timeout=120, max_retries=1, log=(log.append if log is not None else None), **kw)


def _one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


def test_the_server_lists_a_model_and_auto_picks_it() -> None:
    client = _client(model="auto")
    assert client.is_up()
    models = client.models()
    assert models and client.model in models


def test_a_plain_question_is_answered_or_told_in_one_sentence() -> None:
    client = _client()
    try:
        answer = client.complete_text("Name one colour.", max_tokens=24)
    except JobError as exc:  # gibberish can fail the answer checks: that must be one sentence
        _one_sentence(exc)
    else:
        assert isinstance(answer, str) and answer.strip()


def test_a_structured_question_falls_back_to_a_format_the_server_has() -> None:
    log: list[str] = []
    client = _client(log)
    answer = client.complete_json("Describe a colour as a JSON object.", {"type": "object"}, max_tokens=64)
    assert isinstance(answer, dict)  # a grammar-constrained json_object answer is always an object
    client.complete_json("Describe a shape as a JSON object.", {"type": "object"}, max_tokens=64)
    fallbacks = [line for line in log if "json_schema" in line]
    assert len(fallbacks) <= 1, log  # said once, remembered for the rest of the run


def test_a_prompt_beyond_the_context_is_told_as_such() -> None:
    client = _client()
    with pytest.raises(PipelineError) as caught:
        client.complete_text("word " * 20000, max_tokens=8)
    said = _one_sentence(caught.value)
    assert "context" in said and "token" in said, said


def test_a_model_the_server_does_not_have_is_one_sentence() -> None:
    client = _client(model="no-such-model-anywhere")
    with pytest.raises((ConfigError, JobError)) as caught:
        client.complete_text("Name one colour.", max_tokens=8)
    assert "no-such-model-anywhere" in _one_sentence(caught.value)


# ---------------------------------------------------------------- gen.audio's text steps, as a user runs them
STORY = """[narrator] The lighthouse keeper climbed the stairs at dusk, lantern in hand.
[female_keeper_ada] Uncle, the lamp is out again and a ship is close.
[male_keeper_silas] Then we light it by hand, as we did before the engine.
[narrator] Together they carried the oil up the spiral stairs.
[female_keeper_ada] I can see her lights. She is turning away from the rocks.
[narrator] By morning the ship was safe in the harbour, and the keepers slept.
"""


def _step(pipeline: Path, script: str, *args: str) -> tuple[int, str]:
    env = env_for(PIPELINE_ENGINE="offline", PIPELINE_TEXT_ENGINE="llm", LM_STUDIO_BASE_URL=URL,
                  LM_STUDIO_MODEL=MODEL, LLM_TIMEOUT="120", LLM_MAX_RETRIES="1")
    done = run_script(pipeline, script, *args, env=env, timeout=900)
    return done.returncode, done.stdout + done.stderr


def _ended_well(code: int, out: str) -> None:
    """Exit 0, or a bad-answer exit with one `error:` sentence and no traceback."""
    assert "Traceback" not in out, out[-3000:]
    if code:
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert code == 6 and len(errors) == 1, out[-3000:]


def _checkpointed(pipeline: Path) -> dict[str, list[str]]:
    tracking = pipeline / "output" / "tracking"
    done: dict[str, list[str]] = {}
    for state in sorted(tracking.glob("*.state.json")) if tracking.is_dir() else []:
        items = json.loads(state.read_text(encoding="utf-8")).get("items", {})
        done[state.name] = sorted(k for k, v in items.items() if v.get("status", "done") == "done")
    return done


def test_gen_audio_text_steps_end_cleanly_and_keep_what_was_answered(tmp_path: Path) -> None:
    """1.character, 5.timeline, 6.timing and 9.media each asked of the real server, their inputs
    made by the offline engine first (so one step's gibberish does not starve the next)."""
    pipeline = copy_pipeline(tmp_path, "gen.audio", story=STORY)
    offline = env_for(PIPELINE_ENGINE="offline")
    for script in ("1.character.py", "2.story.py", "3.transcribe.py", "4.quality.py", "5.timeline.py",
                   "6.timing.py", "7.sfx.py", "8.combine.py", "9.media.py"):
        result = run_script(pipeline, script, env=offline, timeout=600)
        assert result.returncode == 0, script + result.stderr[-2000:]
    outcomes = {}
    for script in ("1.character.py", "5.timeline.py", "6.timing.py", "9.media.py"):
        code, out = _step(pipeline, script, "--force-start")
        _ended_well(code, out)
        outcomes[script] = code
    answered = {name: keys for name, keys in _checkpointed(pipeline).items()
                if keys and name.split(".state")[0] + ".py" in outcomes}
    print(f"\nLLM contract steps: exits {outcomes}; answered and checkpointed: {answered}")
    assert answered, f"no text question was answered and checkpointed: {_checkpointed(pipeline)}"
