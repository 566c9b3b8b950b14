"""common.services.llm against a real fake OpenAI-compatible server process, and the fake `lms` CLI."""
from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import pytest

from common.run.errors import ConfigError, InputError, JobError, ServiceError
from common.services.llm import LLMClient, normalize_base_url
from common.services.llm_answers import Reply, answer_text, json_candidates, strip_think
from common.services.llm_limits import json_budget
from tests.fakes.llm_helpers import free_port, run_fake_lms, start_fake_llm, stop_fake_lms_server

pytestmark = pytest.mark.timeout(60)

SCENES = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3, "maxLength": 80},
        "mood": {"enum": ["calm", "tense", "eerie"]},
        "scenes": {
            "type": "array", "minItems": 3,
            "items": {
                "type": "object",
                "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 99},
                               "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                               "text": {"type": "string"}},
                "required": ["id", "weight", "text"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["title", "mood", "scenes"],
    "additionalProperties": False,
}


def client_for(fake, model: str = "fake-model", **kw) -> LLMClient:
    kw.setdefault("timeout", 10.0)
    kw.setdefault("transport_retries", 0)
    return LLMClient(fake.base_url, model, **kw)


def tiny_png(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"\x00\xff\x00\x00"  # one red pixel, filter byte first
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path.write_bytes(png)
    return path


# ---------------------------------------------------------------- pure helpers

@pytest.mark.parametrize("raw, expected", [
    ("<think>plan</think>\n\nHello", "Hello"),
    ("<THINK>a</THINK>Hi <think>b</think>there", "Hi there"),
    ("reasoning without an opening tag</think>Answer", "Answer"),
    ("<think>cut off while thinking", ""),
    ("Answer first <think>and then a stray unclosed block", "Answer first"),
    ("<|channel|>analysis<|message|>hmm<|end|><|start|>assistant<|channel|>final<|message|>Done", "Done"),
    ("plain", "plain"),
])
def test_strip_think(raw, expected):
    assert strip_think(raw) == expected


def test_answer_text_reasoning_rule():
    assert answer_text(Reply("Final", "ignored reasoning", "stop")) == "Final"
    assert answer_text(Reply("", "thinking...</think>\nThe answer", "stop")) == "The answer"
    assert answer_text(Reply("", "I think.\n\nThe last paragraph", "stop")) == "The last paragraph"
    assert answer_text(Reply("", "I was thinking and got cut", "length")) == ""
    assert answer_text(Reply("", "", "stop")) == ""


def test_json_candidates_from_fences_and_prose():
    assert list(json_candidates('Sure!\n```json\n{"a": 1}\n```\nBye')) == [{"a": 1}]
    assert list(json_candidates('Here it is: {"a": [1, 2]} hope that helps')) == [{"a": [1, 2]}]
    assert list(json_candidates('Scene 1 is calm.')) == []
    assert list(json_candidates('{"a": 1, "b": ')) == []
    assert list(json_candidates('{"a": 1} then {"b": 2}', last_first=True))[0] == {"b": 2}


def test_normalize_base_url():
    assert normalize_base_url("http://127.0.0.1:1234") == "http://127.0.0.1:1234/v1"
    assert normalize_base_url("localhost:11434/v1/") == "http://localhost:11434/v1"
    assert normalize_base_url(None) == "http://127.0.0.1:1234/v1"


# ---------------------------------------------------------------- against the fake server

def test_models_is_up_and_auto_model(tmp_path):
    with start_fake_llm(tmp_path, model=["text-embedding-nomic", "qwen/qwen3-8b", "gemma"]) as fake:
        client = client_for(fake, "auto")
        assert client.models() == ["text-embedding-nomic", "qwen/qwen3-8b", "gemma"]
        assert client.is_up()
        assert client.model == "qwen/qwen3-8b"  # first chat model; embeddings cannot chat
        assert client.chat([{"role": "user", "content": "hello there"}])
        assert fake.chat_requests()[-1]["model"] == "qwen/qwen3-8b"
        assert client_for(fake, "").model == "qwen/qwen3-8b"


def test_plain_chat_is_deterministic(tmp_path):
    with start_fake_llm(tmp_path) as fake:
        client = client_for(fake)
        first = client.chat([{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Name the detective"}])
        again = client.chat([{"role": "user", "content": "Name the detective"}])
        other = client.chat([{"role": "user", "content": "Name the villain"}])
        assert first == again and first != other
        assert first.startswith("Name the detective:")
        requests = fake.chat_requests()
        assert [r["messages"] for r in requests] == [2, 1, 1]
        assert requests[0]["temperature"] == 0.7


def test_think_blocks_are_stripped(tmp_path):
    with start_fake_llm(tmp_path, think=True) as fake:
        client = client_for(fake)
        text = client.complete_text("Summarize the story")
        assert "<think>" not in text and "The user asks" not in text
        assert text.startswith("Summarize the story:")
        value = client.complete_json("List the scenes", SCENES)
        assert len(value["scenes"]) >= 3


def test_reasoning_content_is_ignored_when_content_has_the_answer(tmp_path):
    with start_fake_llm(tmp_path, reasoning_content=True) as fake:
        text = client_for(fake).complete_text("Write a title")
        assert text.startswith("Write a title:")
        assert "The user asks" not in text


def test_answer_only_in_reasoning_is_recovered(tmp_path):
    with start_fake_llm(tmp_path, answer_in_reasoning=True) as fake:
        client = client_for(fake, max_retries=0)
        assert client.complete_text("Write a title").startswith("Write a title:")
        value = client.complete_json("List the scenes", SCENES)
        assert value["mood"] in ("calm", "tense", "eerie")
        assert fake.chat_count() == 2


def test_json_schema_answer_is_requested_and_validated(tmp_path):
    with start_fake_llm(tmp_path) as fake:
        value = client_for(fake).complete_json("List the scenes of chapter one", SCENES, system="You are terse.",
                                               name="scene list!")
        assert len(value["scenes"]) >= 3
        assert all(0 < s["weight"] <= 1 and 1 <= s["id"] <= 99 for s in value["scenes"])
        request = fake.chat_requests()[0]
        assert request["response_format"] == "json_schema"
        assert request["messages"] == 2
        assert request["temperature"] == 0.2


def test_garbage_then_valid_is_retried(tmp_path):
    with start_fake_llm(tmp_path, garbage_first=2) as fake:
        value = client_for(fake, max_retries=3).complete_json("List the scenes", SCENES)
        assert len(value["scenes"]) >= 3
        requests = fake.chat_requests()
        assert [r["mode"] for r in requests] == ["garbage", "garbage", "auto"]
        # The retry tells the model what was wrong, after showing it its bad answer.
        assert requests[1]["messages"] == 4
        assert "prose, not JSON" in requests[1]["last_user"]


def test_garbage_always_gives_job_error_after_max_retries(tmp_path):
    with start_fake_llm(tmp_path, garbage_first=100) as fake:
        with pytest.raises(JobError) as caught:
            client_for(fake, max_retries=2).complete_json("List the scenes", SCENES)
        message = str(caught.value)
        assert "fake-model" in message and "3 tries" in message and "prose, not JSON" in message
        assert message.count(". ") == 0 and "\n" not in message  # one sentence
        assert fake.chat_count() == 3


def test_truncated_json_is_retried_with_reason(tmp_path):
    with start_fake_llm(tmp_path, truncate_first=1) as fake:
        value = client_for(fake).complete_json("List the scenes", SCENES)
        assert len(value["scenes"]) >= 3
        requests = fake.chat_requests()
        assert [r["mode"] for r in requests] == ["truncated", "auto"]
        assert "cut off at the token limit" in requests[1]["last_user"]


def test_empty_content_is_retried(tmp_path):
    with start_fake_llm(tmp_path, empty_first=1) as fake:
        text = client_for(fake).complete_text("Write a title")
        assert text.startswith("Write a title:")
        requests = fake.chat_requests()
        assert [r["mode"] for r in requests] == ["empty", "auto"]
        assert "the answer was empty" in requests[1]["last_user"]


def test_fenced_and_schema_invalid_answers_and_extra_validator(tmp_path):
    good = {"title": "The Hound", "mood": "eerie", "scenes": [{"id": i, "weight": 0.5, "text": "x"} for i in (1, 2, 3)]}
    wrong = dict(good, mood="cheerful")
    answers = [{"contains": "the hound", "answers": [json.dumps(wrong), "Sure:\n```json\n" + json.dumps(good) + "\n```"]}]
    with start_fake_llm(tmp_path, answers=answers) as fake:
        value = client_for(fake).complete_json("Describe the hound", SCENES)
        assert value == good
        assert "mood" in fake.chat_requests()[1]["last_user"]

    def no_eerie(obj):
        if obj["mood"] == "eerie":
            raise ValueError("the mood must not be eerie here")

    second = tmp_path / "second"
    second.mkdir()
    with start_fake_llm(second, answers=answers) as fake:
        with pytest.raises(JobError, match="the mood must not be eerie here"):
            client_for(fake, max_retries=1).complete_json("Describe the hound", SCENES, validate=no_eerie)


def test_complete_text_validator(tmp_path):
    answers = [{"contains": "title", "answers": ["A title that is far too long for us", "Short"]}]
    with start_fake_llm(tmp_path, answers=answers) as fake:
        def short(text):
            if len(text) > 10:
                raise ValueError(f"the title has {len(text)} characters, at most 10 are allowed")

        assert client_for(fake).complete_text("Give a title", validate=short) == "Short"
        assert "at most 10" in fake.chat_requests()[1]["last_user"]


def test_server_without_json_schema_gets_json_object(tmp_path):
    with start_fake_llm(tmp_path, reject_json_schema=True) as fake:
        client = client_for(fake)
        value = client.complete_json("Give an answer", {"type": "object", "properties": {"answer": {"type": "string"}},
                                                        "required": ["answer"]})
        assert isinstance(value["answer"], str)
        client.complete_json("Again", {"type": "object"})
        formats = [r["response_format"] for r in fake.chat_requests()]
        assert formats == ["json_schema", "json_object", "json_object"]  # the refusal is remembered


def test_hang_times_out_as_service_error(tmp_path):
    with start_fake_llm(tmp_path, hang=True) as fake:
        client = client_for(fake, timeout=1.0, transport_retries=0)
        with pytest.raises(ServiceError) as caught:
            client.complete_text("Anything")
        assert "is not answering at " + fake.base_url in str(caught.value)
        assert "1 s" in str(caught.value)



def test_hang_is_retried_with_a_log_line_then_answers(tmp_path):
    lines: list[str] = []
    with start_fake_llm(tmp_path, hang_first=1) as fake:
        client = client_for(fake, timeout=1.0, transport_retries=1, log=lines.append)
        assert client.complete_text("Name the lighthouse").startswith("Name the lighthouse:")
        assert [r["mode"] for r in fake.chat_requests()] == ["hang", "auto"]
    assert lines == ["LLM server did not answer within 1 s; asking again (2 of 2)"]


@pytest.mark.parametrize("flag, problem, final", [
    ("error_first", "LLM server failed (500: Internal server error: the model crashed while answering (fake_llm fault injection))",
     "failed 3 times in a row (500: "),
    ("drop_first", "LLM server closed the connection without answering", "closed the connection without answering (3 tries)"),
])
def test_server_failures_are_retried_bounded_and_logged(tmp_path, flag, problem, final):
    lines: list[str] = []
    with start_fake_llm(tmp_path, **{flag: 100}) as fake:
        client = client_for(fake, transport_retries=2, retry_pauses=[0], log=lines.append, max_retries=3)
        with pytest.raises(ServiceError) as caught:
            client.complete_json("List the scenes", SCENES)
        assert fake.chat_count() == 3  # transport tries only: a broken server is not asked for a better answer
    assert lines == [f"{problem}; asking again (2 of 3)", f"{problem}; asking again (3 of 3)"]
    message = str(caught.value)
    assert final in message and fake.base_url in message and "\n" not in message


def test_transient_server_failure_recovers(tmp_path):
    lines: list[str] = []
    with start_fake_llm(tmp_path, error_first=1, drop_first=1) as fake:
        client = client_for(fake, transport_retries=2, retry_pauses=[0], log=lines.append)
        assert client.complete_text("Write a title").startswith("Write a title:")
        assert [r["mode"] for r in fake.chat_requests()] == ["error", "drop", "auto"]
    assert [line.rsplit("(", 1)[1] for line in lines] == ["2 of 3)", "3 of 3)"]


def test_faults_after_answers_the_first_requests_well(tmp_path):
    with start_fake_llm(tmp_path, faults_after=2, garbage_first=1, reasoning_only_first=1) as fake:
        client = client_for(fake, max_retries=0)
        assert client.complete_text("first").startswith("first:")
        assert client.complete_json("List the scenes", SCENES)["scenes"]
        with pytest.raises(JobError, match="prose, not JSON"):
            client.complete_json("List the scenes", SCENES)
        with pytest.raises(JobError, match=r"only reasoning"):
            client.complete_text("second")
        assert client.complete_text("third").startswith("third:")
        assert [r["mode"] for r in fake.chat_requests()] == ["auto", "auto", "garbage", "reasoning-only", "auto"]


def test_answer_retries_are_logged_and_truncated_text_is_refused(tmp_path):
    lines: list[str] = []
    with start_fake_llm(tmp_path, truncate_first=1) as fake:
        text = client_for(fake, log=lines.append).complete_text("Summarise the night at the lighthouse")
        assert text.startswith("Summarise the night")
        requests = fake.chat_requests()
        assert [r["mode"] for r in requests] == ["truncated", "auto"]
        assert "cut off at the token limit" in requests[1]["last_user"]
    assert lines == ["LLM answer could not be used (the answer was cut off at the token limit before it was complete); "
                     "asking again (2 of 4)"]

def test_server_down_is_service_error(tmp_path):
    port = free_port()  # nothing listens there
    client = LLMClient(f"http://127.0.0.1:{port}/v1", "fake-model", timeout=5.0, transport_retries=0)
    assert not client.is_up()
    expected = (f"The LLM server is not answering at http://127.0.0.1:{port}/v1: start LM Studio's server "
                f"(lms server start) or set LM_STUDIO_BASE_URL, then run again.")
    with pytest.raises(ServiceError) as caught:
        client.complete_json("x", {"type": "object"})
    assert str(caught.value) == expected
    with pytest.raises(ServiceError):
        LLMClient(f"http://127.0.0.1:{port}", "auto", transport_retries=0).models()


def test_unknown_model_is_config_error(tmp_path):
    with start_fake_llm(tmp_path, model=["qwen/qwen3-8b", "gemma"]) as fake:
        with pytest.raises(ConfigError) as caught:
            client_for(fake, "llama-70b").complete_text("hi")
        message = str(caught.value)
        assert "'llama-70b'" in message and "qwen/qwen3-8b, gemma" in message and "LM_STUDIO_MODEL" in message
        assert fake.chat_count() == 0  # a named model is checked against GET /models before the first question


def test_image_part_is_sent(tmp_path):
    image = tiny_png(tmp_path / "scene_1.1.png")
    with start_fake_llm(tmp_path) as fake:
        text = client_for(fake).describe_image("Describe the motion in this scene", image, system="Be vivid.")
        assert text.startswith("Describe the motion")
        request = fake.chat_requests()[0]
        assert request["images"] == 1 and request["messages"] == 2
    with pytest.raises(InputError):
        LLMClient("http://127.0.0.1:9/v1", "m").describe_image("x", tmp_path / "missing.png")


def test_json_question_about_several_images_keeps_the_format_fallback_and_the_budget(tmp_path):
    """The identity judge's question: one JSON answer about a picture and its reference sheets."""
    pictures = [tiny_png(tmp_path / f"{name}.png") for name in ("candidate", "sheet_a", "sheet_b")]
    schema = {"type": "object", "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1},
                                               "reason": {"type": "string", "maxLength": 60}},
              "required": ["score", "reason"], "additionalProperties": False}
    answers = [{"contains": "Judge", "answers": [{"score": 7, "reason": "out of range"},
                                                  {"score": 0.25, "reason": "the coat is red, the sheet's is blue"}]}]
    with start_fake_llm(tmp_path, reject_json_schema=True, answers=answers) as fake:
        client = client_for(fake)
        answer = client.complete_json("Judge the first picture against the sheets", schema, images=pictures)
        assert answer == {"score": 0.25, "reason": "the coat is red, the sheet's is blue"}
        refused, bad, answered = fake.chat_requests()
        assert refused["response_format"] == "json_schema" and answered["response_format"] == "json_object"
        assert bad["images"] == answered["images"] == 3  # a retry shows the pictures again
        assert answered["max_tokens"] == json_budget(schema) + client.thinking_tokens
        assert client.complete_json("Judge again, no pictures this time", schema)["score"] == 0.25
        assert fake.chat_requests()[-1]["images"] == 0 and fake.chat_requests()[-1]["response_format"] == "json_object"
    with pytest.raises(InputError, match="missing.png"):
        LLMClient("http://127.0.0.1:9/v1", "m").complete_json("x", schema, images=[tmp_path / "missing.png"])


def test_image_data_url_shape(tmp_path):
    from common.services.llm import image_data_url

    url = image_data_url(tiny_png(tmp_path / "a.png"))
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\x89PNG")


# ---------------------------------------------------------------- fake lms

def test_fake_lms_lifecycle(tmp_path):
    state = tmp_path / "lms"
    port = free_port()
    try:
        status = run_fake_lms(state, "server", "status", "--json")
        assert json.loads(status.stdout) == {"running": False, "port": None}
        assert "The server is not running." in status.stderr

        started = run_fake_lms(state, "server", "start", "--port", str(port))
        assert started.returncode == 0, started.stderr
        assert f"Success! Server is now running on port {port}" in started.stderr
        status = run_fake_lms(state, "server", "status", "--json")
        assert json.loads(status.stdout) == {"running": True, "port": port}

        client = LLMClient(f"http://127.0.0.1:{port}", "auto", timeout=10, transport_retries=0)
        assert client.models() == []
        with pytest.raises(ConfigError, match="offers no model"):
            client.complete_text("hi")

        loaded = run_fake_lms(state, "load", "qwen3", "--gpu", "max", "-y", "--identifier", "writer")
        assert loaded.returncode == 0, loaded.stderr
        assert 'use the identifier "writer"' in loaded.stderr
        ps = run_fake_lms(state, "ps")
        assert "IDENTIFIER" in ps.stdout and "writer" in ps.stdout and "qwen/qwen3-14b" in ps.stdout
        assert [m["identifier"] for m in json.loads(run_fake_lms(state, "ps", "--json").stdout)] == ["writer"]

        client = LLMClient(f"http://127.0.0.1:{port}/v1", "auto", timeout=10, transport_retries=0)
        assert client.models() == ["writer"]
        assert client.complete_text("Name the detective").startswith("Name the detective:")

        unloaded = run_fake_lms(state, "unload", "--all")
        assert unloaded.returncode == 0 and "Unloaded 1 model." in unloaded.stderr
        assert client.models() == []
        assert "No models are currently loaded" in run_fake_lms(state, "ps").stderr

        stopped = run_fake_lms(state, "server", "stop")
        assert stopped.returncode == 0 and f"Stopped the server on port {port}." in stopped.stderr
        assert not client.is_up()
        with pytest.raises(ServiceError):
            client.models()
        again = run_fake_lms(state, "server", "stop")
        assert again.returncode == 1 and "The server is not running." in again.stderr

        calls = [json.loads(line)["argv"] for line in (state / "calls.jsonl").read_text().splitlines()]
        assert ["load", "qwen3", "--gpu", "max", "-y", "--identifier", "writer"] in calls
    finally:
        stop_fake_lms_server(state)


def test_fake_lms_load_and_ls_errors(tmp_path):
    state = tmp_path / "lms"
    state.mkdir()
    (state / "downloaded.json").write_text(json.dumps(["qwen/qwen3-8b", "qwen/qwen3-14b"]))
    missing = run_fake_lms(state, "load", "llama-405b", "-y")
    assert missing.returncode == 1 and "Model not found" in missing.stderr
    ambiguous = run_fake_lms(state, "load", "qwen")
    assert ambiguous.returncode == 1
    assert run_fake_lms(state, "load", "qwen", "-y").returncode == 0
    assert run_fake_lms(state, "load", "qwen/qwen3-8b", "--exact").returncode == 0
    ids = [m["identifier"] for m in json.loads(run_fake_lms(state, "ps", "--json").stdout)]
    assert ids == ["qwen/qwen3-8b", "qwen/qwen3-8b:2"]
    listing = run_fake_lms(state, "ls")
    assert "You have 2 models" in listing.stdout and "✓ LOADED (2)" in listing.stdout
    assert run_fake_lms(state, "load", "qwen", "-y", "--gpu", "2").returncode == 1
    assert run_fake_lms(state, "unload", "qwen/qwen3-8b:2").returncode == 0
    assert [m["identifier"] for m in json.loads(run_fake_lms(state, "ps", "--json").stdout)] == ["qwen/qwen3-8b"]


def test_fake_lms_start_fails_on_a_port_taken_by_another_server(tmp_path):
    state = tmp_path / "lms"
    with start_fake_llm(tmp_path) as other:  # an Ollama-like server: no LM Studio greeting
        try:
            started = run_fake_lms(state, "server", "start", "--port", str(other.port))
            assert started.returncode == 1
            assert "Please try to use another port." in started.stderr
            assert json.loads(run_fake_lms(state, "server", "status", "--json").stdout)["running"] is False
            assert LLMClient(other.base_url, "auto", transport_retries=0).models() == ["fake-model"]
        finally:
            stop_fake_lms_server(state)
