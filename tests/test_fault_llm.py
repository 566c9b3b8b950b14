"""Fault injection, LLM half: a real numbered script against a fake LLM server that breaks.

gen.audio `1.character.py --mode text` asks the LLM six questions, one checkpointed item each:
two summary sentences, a title, then three chapters (JSON). The fake answers the first three
well and then breaks in one way (bad answers or a bad server), so each case proves, through
the real script, real HTTP and the real `openai` client:
- the failure is bounded (requests counted from the fake's record) and every retry is logged;
- stderr ends with ONE sentence starting "error:", no traceback; exit 6 for bad answers
  (JobError), 5 for server trouble (ServiceError);
- the three items finished before the fault are checkpointed, and a re-run against a healthy
  server asks only for the three not done, then exits 0.
Whether the runner stops at the first failed item or marks it failed and goes on with the
others, these hold: the bounds below allow both.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.llm_helpers import FakeLLM, start_fake_llm
from tests.support.project import copy_pipeline, env_for, run_script

pytestmark = pytest.mark.timeout(120)

SCRIPT = "1.character.py"
ITEMS = ["summary_001", "summary_002", "title", "chapter_01", "chapter_02", "chapter_03"]
GOOD_FIRST = 3  # the fake answers summary_001, summary_002 and title well, then breaks
MAX_RETRIES = 1  # LLM_MAX_RETRIES: two answers per question
TRANSPORT_TRIES = 3  # LLMClient's default transport_retries=2, plus the first try
ALWAYS = 1000


@dataclass(frozen=True)
class Fault:
    flag: str  # start_fake_llm option
    exit_code: int
    per_item: int  # requests one failing item may cost
    sign: str  # what stderr must say about it (a retry line or the final sentence)
    timeout: str = "30"  # LLM_TIMEOUT: short only where waiting is the fault, so a loaded machine never trips it


ANSWER = MAX_RETRIES + 1
FAULTS = {
    "garbage": Fault("garbage_first", 6, ANSWER, "the answer is prose, not JSON"),
    "empty": Fault("empty_first", 6, ANSWER, "the answer was empty"),
    "reasoning-only": Fault("reasoning_only_first", 6, ANSWER, "before any answer (only reasoning)"),
    "truncated": Fault("truncate_first", 6, ANSWER, "the JSON was cut off at the token limit"),
    "hang": Fault("hang_first", 5, TRANSPORT_TRIES, "did not answer within 2 s", timeout="2"),
    "error": Fault("error_first", 5, TRANSPORT_TRIES, "failed (500"),
    "drop": Fault("drop_first", 5, TRANSPORT_TRIES, "closed the connection without answering"),
}


def llm_env(fake: FakeLLM, timeout: str) -> dict[str, str]:
    return env_for(PIPELINE_ENGINE="offline", PIPELINE_TEXT_ENGINE="llm", LM_STUDIO_BASE_URL=fake.base_url,
                   LM_STUDIO_MODEL="fake-model", LLM_TIMEOUT=timeout, LLM_MAX_RETRIES=str(MAX_RETRIES))


def run_text_step(pipeline: Path, fake: FakeLLM, timeout: str = "30"):
    return run_script(pipeline, SCRIPT, "--mode", "text", env=llm_env(fake, timeout), timeout=90)


def statuses(pipeline: Path) -> dict[str, str]:
    state = pipeline / "output" / "tracking" / "1.character.state.json"
    if not state.is_file():
        return {}
    return {key: entry.get("status", "done") for key, entry in json.loads(state.read_text(encoding="utf-8"))["items"].items()}


def assert_one_error_sentence(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr
    return last


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """One well-behaved server for every re-run; requests are counted as a difference."""
    with start_fake_llm(tmp_path_factory.mktemp("healthy_llm")) as fake:
        yield fake


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_bounded_logged_and_resumable(tmp_path, healthy, name):
    fault = FAULTS[name]
    pipeline = copy_pipeline(tmp_path)
    with start_fake_llm(tmp_path, faults_after=GOOD_FIRST, **{fault.flag: ALWAYS}) as broken:
        failed = run_text_step(pipeline, broken, fault.timeout)
        requests = broken.chat_requests()

    assert failed.returncode == fault.exit_code, failed.stdout + failed.stderr
    last = assert_one_error_sentence(failed.stderr)
    assert fault.sign in failed.stderr, failed.stderr
    # Bounded: at least one item went through every try, and no item more than its tries.
    count = len(requests)
    assert GOOD_FIRST + fault.per_item <= count <= GOOD_FIRST + 3 * fault.per_item, [r.get("mode") for r in requests]
    assert all(r.get("mode") not in FAULTS for r in requests[:GOOD_FIRST])
    assert all(r.get("mode") == name for r in requests[GOOD_FIRST:])
    # Every retry is logged: one "asking again" line per request beyond the first of each failed item.
    retries = [line for line in failed.stderr.splitlines() if "; asking again (" in line]
    failed_items = count - GOOD_FIRST
    assert len(retries) == failed_items - failed_items // fault.per_item, failed.stderr
    if fault.exit_code == 5:
        assert "LLM server" in last and "then run again" in last

    # Nothing completed is lost: the three answers before the fault are checkpointed.
    before = statuses(pipeline)
    assert all(before.get(key) == "done" for key in ITEMS[:GOOD_FIRST]), before
    assert not any(before.get(key) == "done" for key in ITEMS[GOOD_FIRST:]), before
    assert (pipeline / "input" / "10.title.txt").read_text(encoding="utf-8").strip()

    # A healthy server again: only the three items not done are asked for.
    asked_before = healthy.chat_count()
    again = run_text_step(pipeline, healthy)
    assert again.returncode == 0, again.stdout + again.stderr
    assert healthy.chat_count() - asked_before == len(ITEMS) - GOOD_FIRST
    assert statuses(pipeline) == {key: "done" for key in ITEMS}
    assert (pipeline / "input" / "12.chapters.txt").read_text(encoding="utf-8").count("SHORT_SUMMARY") == 3


def test_transient_faults_recover_within_the_bounds(tmp_path):
    """An empty answer, a 500 and a dropped connection, then good answers: the run succeeds, and says why it was slow."""
    pipeline = copy_pipeline(tmp_path)
    with start_fake_llm(tmp_path, empty_first=1, error_first=1, drop_first=1) as flaky:
        result = run_text_step(pipeline, flaky)
        modes = [r.get("mode") for r in flaky.chat_requests()]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not any(line.startswith("error:") for line in result.stderr.splitlines()), result.stderr
    # The first question: empty (answer retry 2 of 2), whose retry hit a 500 (transport 2 of 3),
    # then a dropped connection (3 of 3), then a good answer; the other five questions one request each.
    assert modes == ["empty", "error", "drop"] + ["auto"] * len(ITEMS)
    assert "LLM answer could not be used (the answer was empty); asking again (2 of 2)" in result.stderr
    assert "LLM server failed (500: " in result.stderr and "asking again (2 of 3)" in result.stderr
    assert "LLM server closed the connection without answering; asking again (3 of 3)" in result.stderr
    assert statuses(pipeline) == {key: "done" for key in ITEMS}



@pytest.mark.parametrize("refusals", [{"reject_json_schema": "500"},
                                      {"reject_json_schema": "422", "reject_json_object": "500"}])
def test_a_server_refusing_structured_formats_still_gets_its_chapters(tmp_path, refusals):
    """llama.cpp's server refuses json_schema with a 500: the first chapter question falls back at
    once (no transport retry, no exit 5), the later ones start at the format that worked, and the
    log says so once. The fake's answers to the chapter question follow the schema in the prompt,
    as a model that reads its instructions does."""
    chapter = {"title": "The Lamp Goes Out", "summary": "The keeper climbs the tower and finds the lamp dark."}
    answers = [{"contains": "This is one chapter of a narrated story", "answer": chapter}]
    pipeline = copy_pipeline(tmp_path)
    with start_fake_llm(tmp_path, answers=answers, **refusals) as fake:
        result = run_text_step(pipeline, fake)
        chapters = fake.chat_requests()[GOOD_FIRST:]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "asking again" not in result.stderr, result.stderr
    told = [line for line in result.stderr.splitlines() if "refused response_format" in line]
    assert len(told) == len(refusals), result.stderr
    last = "json_object" if len(refusals) == 1 else "text"
    tried = ["json_schema", "json_object"][: len(refusals)]
    assert [r["response_format"] for r in chapters] == tried + [last] * (len(ITEMS) - GOOD_FIRST)
    assert statuses(pipeline) == {key: "done" for key in ITEMS}
    assert "The Lamp Goes Out" in (pipeline / "input" / "12.chapters.txt").read_text(encoding="utf-8")
