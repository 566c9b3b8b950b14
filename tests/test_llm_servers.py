"""The LLM client against servers as rude as the real ones (issue 20), and the fake's rude modes themselves.

Each numbered point of the issue has its test against fake_llm.py in the matching mode:
1. a refused response format (500 llama-cpp-python, 422 FastAPI, 400 OpenAI-style) moves down
   json_schema -> json_object -> plain instructions at once, remembered and said once;
3. a context overflow is one sentence with its numbers and what to lower, not retried;
4. every question sends a max_tokens budget, a retry's echo stays within it, a cut-off is told right;
5. a named model is checked before the first question, and an answer from another model is one sentence;
6. a full context mid-answer (a deterministic 500) is not retried; transient pauses grow and are bounded.
"""
from __future__ import annotations

import json

import requests
import jsonschema
import pytest

import common.services.llm as llm
from common.run.errors import ConfigError, JobError
from common.services.llm import LLMClient
from common.services.llm_limits import context_overflow, echo, json_budget
from tests.fakes.llm_helpers import start_fake_llm

pytestmark = pytest.mark.timeout(60)

CHAPTER = {
    "type": "object",
    "properties": {"title": {"type": "string", "minLength": 2, "maxLength": 60},
                   "summary": {"type": "string", "minLength": 10, "maxLength": 400}},
    "required": ["title", "summary"],
    "additionalProperties": False,
}
GOOD_CHAPTER = {"title": "The Lamp Goes Out", "summary": "The keeper climbs the tower and finds the lamp dark."}
THINKING = 100


def client_for(fake, model: str = "fake-model", **kw) -> LLMClient:
    kw.setdefault("timeout", 10.0)
    kw.setdefault("transport_retries", 0)
    kw.setdefault("thinking_tokens", THINKING)
    return LLMClient(fake.base_url, model, **kw)


def fresh(path):
    path.mkdir()
    return path


def post(fake, payload: dict | bytes) -> requests.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return requests.post(f"{fake.base_url}/chat/completions", data=body, timeout=10,
                      headers={"content-type": "application/json"})


def ask(content: str, **extra) -> dict:
    return {"model": "fake-model", "messages": [{"role": "user", "content": content}], **extra}


# ---------------------------------------------------------------- 1. refused response formats

@pytest.mark.parametrize("status", ["500", "422", "400"])
def test_refused_json_schema_falls_back_at_once_and_is_remembered(tmp_path, status):
    lines: list[str] = []
    answers = [{"contains": "chapter", "answer": GOOD_CHAPTER}]
    with start_fake_llm(tmp_path, reject_json_schema=status, answers=answers) as fake:
        client = client_for(fake, transport_retries=2, retry_pauses=[0], log=lines.append)
        assert client.complete_json("Title this chapter one", CHAPTER) == GOOD_CHAPTER
        assert client.complete_json("Title this chapter two", CHAPTER) == GOOD_CHAPTER
        requests = fake.chat_requests()
    # No transport retry of the refusal, even as a 500; the second question starts at what worked.
    assert [(r["response_format"], r["status"]) for r in requests] == [
        ("json_schema", int(status)), ("json_object", 200), ("json_object", 200)]
    assert len(lines) == 1 and "asking again" not in lines[0], lines
    assert f"refused response_format json_schema ({status}: " in lines[0]
    assert lines[0].endswith("structured answers use json_object from now on")


def test_both_formats_refused_fall_to_plain_instructions(tmp_path):
    lines: list[str] = []
    answers = [{"contains": "chapter", "answer": "Here you go:\n```json\n" + json.dumps(GOOD_CHAPTER) + "\n```"}]
    with start_fake_llm(tmp_path, reject_json_schema="500", reject_json_object="422", answers=answers) as fake:
        client = client_for(fake, transport_retries=2, retry_pauses=[0], log=lines.append)
        assert client.complete_json("Title this chapter", CHAPTER) == GOOD_CHAPTER
        assert client.complete_json("Title the next chapter", CHAPTER) == GOOD_CHAPTER
        formats = [r["response_format"] for r in fake.chat_requests()]
    assert formats == ["json_schema", "json_object", "text", "text"]
    assert len(lines) == 2 and lines[1].endswith("use plain instructions (the schema in the prompt) from now on")


def test_fake_refuses_formats_in_each_servers_words(tmp_path):
    schema_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    with start_fake_llm(fresh(tmp_path / "500"), reject_json_schema="500") as fake:
        answer = post(fake, ask("hi", response_format=schema_format))
        assert answer.status_code == 500
        error = answer.json()["error"]
        assert error["type"] == "internal_server_error" and error["code"] is None
        assert "'response_format', 'type')" in error["message"] and "'text' or 'json_object'" in error["message"]
    with start_fake_llm(fresh(tmp_path / "422"), reject_json_schema="422") as fake:
        answer = post(fake, ask("hi", response_format=schema_format))
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "response_format", "type"]


# ---------------------------------------------------------------- 3. context overflow

def test_context_overflow_is_one_sentence_with_its_numbers(tmp_path):
    passage = " ".join(f"line{n} of the story." for n in range(120))
    with start_fake_llm(tmp_path, context=200) as fake:
        client = client_for(fake, transport_retries=2, retry_pauses=[0], max_retries=3)
        with pytest.raises(JobError) as caught:
            client.complete_json(f"List the sounds.\n\n{passage}", CHAPTER,
                                 shrink=["lower SFX_BATCH_SIZE (segments per question)"])
        requests = fake.chat_requests()
        listings = [r for r in fake.requests() if r["path"] == "/v1/models"]
    message = str(caught.value)
    assert len(requests) == 1 and requests[0]["status"] == 400  # deterministic: neither retried nor re-asked
    assert f"the prompt was {requests[0]['prompt_tokens']} tokens, the model's context is 200" in message
    assert "larger context" in message and "or lower SFX_BATCH_SIZE (segments per question), then run again." in message
    assert "read images" not in message and "\n" not in message
    assert len(listings) == 1  # the named-model check before the question; not the unknown-model path


@pytest.mark.parametrize("text, prompt, context", [
    ('{"error": {"message": "This model\'s maximum context length is 4096 tokens. However, you requested 5314 '
     'tokens (5314 in the messages, None in the completion).", "code": "context_length_exceeded"}}', 5314, 4096),
    ('{"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it", '
     '"type": "exceed_context_size_error", "n_prompt_tokens": 5314, "n_ctx": 4096}}', 5314, 4096),
    ("Trying to keep the first 5314 tokens when context the overflows. However, the model is loaded with context "
     "length of only 4096 tokens, which is not enough.", 5314, 4096),
    ('{"error": {"code": 500, "message": "Context size has been exceeded.", "type": "server_error"}}', None, None),
    ("decode: failed to find a memory slot for batch of size 512", None, None),
    # llama-cpp-python 0.3.36's server with a 1024-token context, answering a long chapter question:
    ('{"error": {"message": "llama_decode returned 1", "type": "internal_server_error", "param": null, "code": null}}',
     None, None),
])
def test_context_overflow_in_every_servers_words(text, prompt, context):
    body = json.loads(text)["error"] if text.startswith("{") else None
    overflow = context_overflow(text.lower(), body)
    assert overflow is not None and (overflow.prompt, overflow.context) == (prompt, context)
    sentence = overflow.sentence("m", [])
    assert sentence.startswith("The question did not fit the context of model m: ") and sentence.count(". ") == 0
    assert context_overflow("internal server error: the model crashed") is None


# ---------------------------------------------------------------- 4. token budgets

def test_every_question_sends_a_budget_that_fits_its_answer(tmp_path):
    with start_fake_llm(tmp_path) as fake:
        client = client_for(fake)
        client.complete_text("Write a title", max_tokens=60)
        client.complete_text("Write a paragraph")
        client.complete_json("Title this chapter", CHAPTER)
        client.chat([{"role": "user", "content": "hello"}])
        budgets = [r["max_tokens"] for r in fake.chat_requests()]
    assert budgets == [60 + THINKING, 400 + THINKING, json_budget(CHAPTER) + THINKING, 400 + THINKING]
    assert 128 <= json_budget(CHAPTER) < 600  # a title and a paragraph, not a page
    many = {"type": "array", "minItems": 40, "maxItems": 40, "items": CHAPTER}
    assert json_budget(many) > 20 * json_budget(CHAPTER)


def test_a_rambling_answer_is_cut_at_the_budget_and_told_as_such(tmp_path):
    with start_fake_llm(tmp_path, ramble=True) as fake:
        client = client_for(fake, max_retries=1)
        with pytest.raises(JobError) as caught:
            client.complete_text("Summarise the night", max_tokens=50)
        requests = fake.chat_requests()
    message = str(caught.value)
    assert [r["finish"] for r in requests] == ["length", "length"]
    assert "cut off at the token limit" in message and "JSON" not in message
    assert "limit of 150 tokens (50 for the answer, 100 for reasoning)" in message and "LLM_THINKING_TOKENS" in message
    # The bad answer goes back to the model cut to fit the answer's budget, not whole.
    assert 0 < requests[1]["echoed"] <= 200


def test_echo_keeps_head_and_tail_within_the_budget():
    long = "start " + "blah " * 2000 + "end"
    cut = echo(long, 100)
    assert len(cut) <= 300 and cut.startswith("start") and cut.endswith("end") and "[...]" in cut
    assert echo("short answer", 100) == "short answer"


def test_fake_honours_max_tokens_and_without_it_fills_the_context(tmp_path):
    with start_fake_llm(tmp_path, ramble=True, context=300) as fake:
        limited = post(fake, ask("Tell the story", max_tokens=12)).json()
        unlimited = post(fake, ask("Tell the story")).json()
        records = fake.chat_requests()
    assert limited["choices"][0]["finish_reason"] == "length" and limited["usage"]["completion_tokens"] == 12
    assert unlimited["choices"][0]["finish_reason"] == "length"
    assert unlimited["usage"]["completion_tokens"] == 300 - records[1]["prompt_tokens"]


# ---------------------------------------------------------------- 5. the model that answers

@pytest.mark.parametrize("mode", ["default", "404"])
def test_a_named_model_is_checked_before_the_first_question(tmp_path, mode):
    with start_fake_llm(tmp_path, model=["qwen3-4b-2507", "gemma"], unknown_model=mode) as fake:
        with pytest.raises(ConfigError) as caught:
            client_for(fake, "qwen3-4b").complete_text("hi")
        assert fake.chat_count() == 0
        if mode == "default":  # what the check guards against: llama.cpp answers any name, from its default model
            answer = post(fake, dict(ask("hi"), model="qwen3-4b"))
            assert answer.status_code == 200 and answer.json()["model"] == "qwen3-4b"
    message = str(caught.value)
    assert "'qwen3-4b'" in message and "qwen3-4b-2507, gemma" in message and "LM_STUDIO_MODEL" in message


def test_an_answer_from_another_model_is_one_sentence(tmp_path):
    with start_fake_llm(tmp_path, answer_model="llama-3.2-1b") as fake:
        with pytest.raises(ConfigError) as caught:
            client_for(fake, max_retries=3).complete_text("hi")
        assert fake.chat_count() == 1
    message = str(caught.value)
    assert "answered with the model 'llama-3.2-1b' when asked for 'fake-model'" in message
    assert message.endswith("then run again.") and "\n" not in message


def test_dated_or_tagged_answers_are_the_same_model():
    assert llm._same_model("gpt-4o", "gpt-4o-2024-08-06") and llm._same_model("llama3", "llama3:latest")
    assert llm._same_model("Qwen/Qwen3-8B", "qwen/qwen3-8b")
    assert not llm._same_model("qwen3-4b", "qwen3-4b-2507") and not llm._same_model("a", "b")


# ---------------------------------------------------------------- 6. deterministic 500s, transient pauses

def test_a_context_full_mid_answer_500_is_not_retried(tmp_path):
    lines: list[str] = []
    with start_fake_llm(tmp_path, ramble=True, context=300, full_context="500") as fake:
        client = client_for(fake, transport_retries=3, retry_pauses=[0], max_retries=3, log=lines.append,
                            thinking_tokens=2048)
        with pytest.raises(JobError) as caught:
            client.complete_text("Summarise the night")
        requests = fake.chat_requests()
    assert [(r["status"], r["mode"]) for r in requests] == [(500, "context-full")]
    assert lines == []
    message = str(caught.value)
    assert "context of model fake-model: the model's context filled up" in message and "larger context" in message


def test_transient_failures_back_off_to_tens_of_seconds_within_a_bound(tmp_path):
    assert llm.RETRY_PAUSES[0] >= 2 and max(llm.RETRY_PAUSES) >= 20 and sum(llm.RETRY_PAUSES) <= llm.MAX_RETRY_WAIT
    slept: list[float] = []
    with start_fake_llm(tmp_path, error_first=4) as fake:
        # The pauses are recorded, not waited.
        client = client_for(fake, transport_retries=4, retry_pauses=[30, 50], sleep=slept.append)
        assert client.complete_text("Name the lighthouse").startswith("Name the lighthouse")
        assert fake.chat_count() == 5
    assert slept == [30, 50, 40, 0]  # the last one repeats until all pauses reach MAX_RETRY_WAIT (120 s)


# ---------------------------------------------------------------- the fake's other rude answers

def test_json_object_is_any_object_not_the_schema(tmp_path):
    with start_fake_llm(tmp_path) as fake:
        answer = post(fake, dict(ask("Title this chapter"), response_format={"type": "json_object"})).json()
    value = json.loads(answer["choices"][0]["message"]["content"])
    assert isinstance(value, dict)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, CHAPTER)


def test_malformed_bodies_and_unknown_paths_are_answered_as_fastapi_does(tmp_path):
    with start_fake_llm(tmp_path) as fake:
        broken = post(fake, b'{"model": "fake-model", "messages": [')
        assert (broken.status_code, broken.text) == (500, "Internal Server Error")
        assert broken.headers["content-type"].startswith("text/plain")
        missing = requests.get(fake.base_url.rsplit("/v1", 1)[0] + "/nowhere", timeout=10)
        assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
        with pytest.raises(ConfigError, match="no OpenAI-compatible API there"):
            LLMClient(fake.base_url.rsplit("/v1", 1)[0] + "/api", "auto", transport_retries=0).models()


def test_control_characters_are_removed_from_answers(tmp_path):
    with start_fake_llm(fresh(tmp_path / "clean")) as fake:
        clean_text = client_for(fake).complete_text("Write a title")
    with start_fake_llm(fresh(tmp_path / "rude"), control_chars=True) as fake:
        raw = post(fake, ask("Write a title")).json()["choices"][0]["message"]["content"]
        text = client_for(fake).complete_text("Write a title")
        value = client_for(fake).complete_json("Title this chapter", CHAPTER)
    assert "\x1b" in raw and "\x07" in raw and "\x00" in raw
    assert text == clean_text
    assert all(ord(c) >= 32 for c in value["title"] + value["summary"])
