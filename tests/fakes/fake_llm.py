#!/usr/bin/env python3
"""A fake OpenAI-compatible chat server (the shapes LM Studio, Ollama, llama.cpp and vLLM speak).

Tests run it as a real process on 127.0.0.1 so the client code under test goes through the real
`openai` package, real HTTP and real failure modes (refused connections, hangs, bad answers),
not through mocks of our own code.

    python tests/fakes/fake_llm.py --port 0 [--model NAME ...] [--record FILE] [--think]
        [--reasoning-content] [--answer-in-reasoning] [--garbage-first N] [--empty-first N]
        [--truncate-first N] [--reasoning-only-first N] [--error-first N] [--drop-first N]
        [--hang-first N] [--faults-after N] [--delay S] [--hang] [--answers FILE]
        [--reject-json-schema [400|422|500]] [--reject-json-object [400|422|500]] [--context N]
        [--ramble] [--full-context length|500] [--unknown-model 404|default] [--answer-model NAME]
        [--control-chars] [--lmstudio]

Endpoints: `GET /v1/models`, `POST /v1/chat/completions`, and with `--lmstudio` (fake_lms passes
it) `GET /lmstudio-greeting`, the probe the real `lms` CLI uses to tell an LM Studio server from
anything else on the port. Like the real servers, it is rude, and no more helpful than they are:
- an unknown path is FastAPI's 404 `{"detail": "Not Found"}` (405 for a wrong method); a body that
  is not JSON is llama-cpp-python's plain-text 500 "Internal Server Error";
- `--reject-json-schema [STATUS]` refuses json_schema: 400 naming `response_format` (OpenAI
  style, the default), 422 with FastAPI's `detail` listing the allowed types, or 500 whose
  message is that validation error's text (llama-cpp-python); `--reject-json-object` likewise;
- `max_tokens` is honoured: an answer longer than it is cut there with finish_reason "length";
  without it a model writes until the context (`--context N` tokens, default 32768) is full;
  `--ramble` makes answers that never end on their own. `--full-context 500` answers a context
  that fills up mid-answer with llama-server's 500 "Context size has been exceeded." instead;
- a prompt of `--context` tokens or more is llama-cpp-python's 400 `context_length_exceeded`
  ("This model's maximum context length is M tokens. However, you requested N tokens (P in the
  messages, C in the completion)...", C being "None" when no max_tokens was sent);
- `--unknown-model default` answers an unknown model 200 from the default (first) model, the
  request's name echoed (llama.cpp's servers), instead of the 404 of LM Studio and Ollama;
  `--answer-model NAME` names NAME as the answering model whatever was asked;
- `--control-chars`: answers carry a terminal escape, a bell (inside a JSON string too, which
  strict JSON refuses) and a NUL, as a broken or random-weight model writes them.
The fake's tokens are words and punctuation marks (`count_tokens`).

Answers are deterministic functions of the request, so tests can assert on them:
- `--answers FILE`: a JSON list of `{"contains": "...", "answer": "..."}` (or `"answers": [...]`,
  served in turn, the last one repeated); the first entry whose `contains` occurs anywhere in the
  conversation wins, and its answer is sent as is (a non-string answer is sent as JSON). This is
  how a test feeds JSON that is well-formed but wrong for the schema.
- `response_format` json_schema: a document generated from the schema (objects with all their
  properties, arrays with minItems, enums, bounded numbers, strings derived from the prompt).
  json_object: `{"answer": <text>}`, any JSON object, not one that fits the schema the prompt
  describes (a grammar for "an object" is all a server enforces). Otherwise a short text derived from the prompt. "The prompt"
  is the first user message, so a retry (bad answer + correction appended) answers the same
  question; the record's `last_user` shows the correction the client sent.
- Failure injection, counted over chat requests (well-formed ones) in this order: the first
  `--garbage-first N` answers are prose instead of JSON, the next `--empty-first N` are empty,
  the next `--truncate-first N` are the JSON cut in half (finish_reason "length"), the next
  `--reasoning-only-first N` hold only an unfinished thought in `reasoning_content` and no answer
  at all (finish_reason "length": a reasoning model that ran out of tokens), the next
  `--error-first N` are HTTP 500s, the next `--drop-first N` close the connection without
  answering, the next `--hang-first N` never answer. So with `--garbage-first 1 --empty-first 1`
  the first answer is prose, the second empty, the third good; a large N (1000) means "always".
  `--faults-after N` answers the first N chat requests well and starts that sequence (and
  `--hang`) only after them: earlier items complete, later ones fail, as when a server breaks
  down in the middle of a night. Faulted requests are recorded with `"mode"` garbage, empty,
  truncated, reasoning-only, error, drop or hang (a hang and a drop are recorded when they start,
  with `"status": null`).
- `--think` wraps answers as `<think>...</think>answer`; `--reasoning-content` puts the reasoning
  in `message.reasoning_content` (LM Studio's and DeepSeek's field); `--answer-in-reasoning` leaves
  `content` empty and ends the reasoning with the answer (a template that never closed its think
  block); `--delay S` waits before answering; `--hang` never answers (after `--faults-after`).

Models: the `--model` names, else, when FAKE_LMS_STATE names a fake_lms state directory, the
identifiers `fake_lms.py load` recorded there (read on every request, so loads and unloads after
start show), else `fake-model`. An unknown model is a 404 like OpenAI's `model_not_found`.

`--record FILE` appends one JSON line per request (flushed) so tests can count calls and see what
was sent (message count, image parts, response_format type, last user text, the length of the last
assistant message (`echoed`), max_tokens, prompt_tokens, finish, when it arrived).
A readiness line `fake_llm ready on http://127.0.0.1:PORT/v1` is printed once listening.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported: its sibling by name
from schema_faker import SchemaFaker, derived_text  # noqa: E402
from serving import serve_until_stopped  # noqa: E402

DEFAULT_MODEL = "fake-model"

# ---------------------------------------------------------------- the server

def _error(status: int, message: str, kind: str, param: str | None = None, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The fake's tokenizer: a word or one punctuation mark is a token (close enough for limits)."""
    return len(_TOKEN.findall(text))


def first_tokens(text: str, count: int) -> str:
    """`text` up to the end of its `count`-th token: what a model stopped at a token limit wrote."""
    for number, match in enumerate(_TOKEN.finditer(text), start=1):
        if number == count:
            return text[: match.end()]
    return text


def _format_refusal(status: int, refused: str, allowed: list[str]) -> web.Response:
    """How servers refuse a response_format type: OpenAI-style 400, FastAPI's 422, llama-cpp-python's 500.

    llama-cpp-python validates the request with pydantic inside a route handler that turns any
    exception into a 500 whose message is the validation error's text.
    """
    expected = " or ".join(f"'{t}'" for t in allowed)
    problem = {"type": "literal_error", "loc": ["body", "response_format", "type"],
               "msg": f"Input should be {expected}", "input": refused, "ctx": {"expected": expected}}
    if status == 422:
        return web.json_response({"detail": [problem]}, status=422)
    if status >= 500:  # str() of FastAPI's RequestValidationError
        problem["loc"] = tuple(problem["loc"])
        return _error(status, f"1 validation error:\n  {problem}\n  Endpoint: /v1/chat/completions",
                      "internal_server_error")
    return _error(status, f"'response_format.type' {refused} is not supported by this server.",
                  "invalid_request_error", "response_format")


@web.middleware
async def fastapi_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown paths and methods answered as FastAPI does (llama-cpp-python, vLLM): JSON `detail`."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.json_response({"detail": "Not Found"}, status=404)
    except web.HTTPMethodNotAllowed:
        return web.json_response({"detail": "Method Not Allowed"}, status=405)


def _text_of(content: Any) -> tuple[str, int]:
    """(text, image count) of one message's content: a string or a list of typed parts."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts, images = [], 0
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if not isinstance(url, str) or not url:
                raise ValueError("image_url part without a url")
            images += 1
    return "\n".join(texts), images


class FakeLLM:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.chat_index = 0  # well-formed chat requests seen, the clock of fault injection
        self.answer_hits: dict[int, int] = {}
        self.answers: list[dict[str, Any]] = []
        if args.answers:
            self.answers = json.loads(Path(args.answers).read_text(encoding="utf-8"))
            if not isinstance(self.answers, list):
                raise SystemExit("--answers must hold a JSON list")
        self.record_handle = open(args.record, "a", encoding="utf-8") if args.record else None

    # ---- state

    def model_ids(self) -> list[str]:
        if self.args.model:
            return list(self.args.model)
        state = os.environ.get("FAKE_LMS_STATE")
        if state:
            loaded = Path(state) / "loaded.json"
            try:
                entries = json.loads(loaded.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                entries = []
            return [entry["identifier"] for entry in entries]
        return [DEFAULT_MODEL]

    def record(self, entry: dict[str, Any]) -> None:
        if self.record_handle is None:
            return
        entry["t"] = time.time()
        self.record_handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.record_handle.flush()

    # ---- handlers

    async def greeting(self, request: web.Request) -> web.Response:
        return web.json_response({"lmstudio": True})

    async def models(self, request: web.Request) -> web.Response:
        self.record({"path": "/v1/models"})
        data = [{"id": mid, "object": "model", "owned_by": "organization_owner"} for mid in self.model_ids()]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.time()  # a request of a run killed meanwhile is recorded late: this says when it came
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            # llama-cpp-python: its error handler parses the body again, fails, and Starlette answers plain text.
            self.record({"path": "/v1/chat/completions", "status": 500})
            return web.Response(status=500, text="Internal Server Error", content_type="text/plain")
        entry: dict[str, Any] = {"path": "/v1/chat/completions", "arrived": arrived,
                                 "model": body.get("model") if isinstance(body, dict) else None}
        response = await self._chat(body, entry)
        if response == "drop":
            entry["status"] = None
            self.record(entry)
            # Close the socket with the request read and nothing written: the client sees the
            # server disconnect without a response, as when a model server crashes mid-request.
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError
        if response == "hang":
            entry["status"] = None
            self.record(entry)
            await asyncio.sleep(10 ** 6)
            raise asyncio.CancelledError
        assert isinstance(response, web.StreamResponse)
        entry["status"] = response.status
        self.record(entry)
        return response

    def _fault(self, index: int) -> str | None:
        """The fault injected into the `index`-th (0-based) chat request, by the order of the module docstring."""
        args = self.args
        position = index - args.faults_after
        if position < 0:
            return None
        for mode, count in (("garbage", args.garbage_first), ("empty", args.empty_first),
                            ("truncated", args.truncate_first), ("reasoning-only", args.reasoning_only_first),
                            ("error", args.error_first), ("drop", args.drop_first), ("hang", args.hang_first)):
            if position < count:
                return mode
            position -= count
        return "hang" if args.hang else None

    async def _chat(self, body: Any, entry: dict[str, Any]) -> web.StreamResponse | str:
        """The response to one chat request, or "drop" / "hang" for the caller to act out."""
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array.", "invalid_request_error", "messages")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", "invalid_request_error", "model")
        offered = self.model_ids()
        if model not in offered and not (self.args.unknown_model == "default" and offered):
            message = (f"The model `{model}` does not exist or you do not have access to it."
                       if offered else "No models loaded. Please load a model with `lms load`.")
            return _error(404, message, "invalid_request_error", "model", "model_not_found")
        # --unknown-model default: served by the default model, the request's name echoed (llama-cpp-python).
        texts, images, first_user, last_user, last_assistant = [], 0, None, "", ""
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "developer", "tool"):
                return _error(400, f"Invalid message at messages[{index}]: needs a role.", "invalid_request_error", f"messages[{index}]")
            try:
                text, count = _text_of(message.get("content"))
            except ValueError as exc:
                return _error(400, f"Invalid content at messages[{index}]: {exc}.", "invalid_request_error", f"messages[{index}].content")
            texts.append(text)
            images += count
            if message["role"] == "assistant":
                last_assistant = text
            if message["role"] == "user":
                last_user = text
                first_user = text if first_user is None else first_user
        entry.update(messages=len(messages), images=images, last_user=last_user[:2000], echoed=len(last_assistant),
                     temperature=body.get("temperature"), max_tokens=body.get("max_tokens"))

        fmt = body.get("response_format")
        schema: dict[str, Any] | None = None
        fmt_type = "text"
        if fmt is not None:
            if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
                return _error(400, "'response_format.type' must be 'text', 'json_object' or 'json_schema'.",
                              "invalid_request_error", "response_format.type")
            fmt_type = fmt["type"]
            entry["response_format"] = fmt_type
            refusals = {"json_schema": self.args.reject_json_schema, "json_object": self.args.reject_json_object}
            if refusals.get(fmt_type):
                allowed = [t for t in ("text", "json_object", "json_schema") if t != fmt_type and not refusals.get(t)]
                return _format_refusal(int(refusals[fmt_type]), fmt_type, allowed)
            if fmt_type == "json_schema":
                spec = fmt.get("json_schema")
                if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict) or not spec.get("name"):
                    return _error(400, "'response_format.json_schema' needs a 'name' and a 'schema' object.",
                                  "invalid_request_error", "response_format.json_schema")
                schema = spec["schema"]
        entry["response_format"] = fmt_type

        conversation = "\n".join(texts)
        prompt_tokens = count_tokens(conversation) + 4 * len(messages)
        limit = body.get("max_tokens")
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None
        entry["prompt_tokens"] = prompt_tokens
        if prompt_tokens >= self.args.context:
            # llama-cpp-python's words, None and all when no max_tokens was sent.
            return _error(400, f"This model's maximum context length is {self.args.context} tokens. However, you "
                               f"requested {prompt_tokens + (limit or 0)} tokens ({prompt_tokens} in the messages, "
                               f"{limit} in the completion). Please reduce the length of the messages or completion.",
                          "invalid_request_error", "messages", "context_length_exceeded")

        index = self.chat_index
        self.chat_index += 1
        fault = self._fault(index)
        if fault in ("drop", "hang"):
            entry["mode"] = fault
            return fault
        if fault == "error":
            entry["mode"] = fault
            return _error(500, "Internal server error: the model crashed while answering (fake_llm fault injection).",
                          "server_error")
        if self.args.delay:
            await asyncio.sleep(self.args.delay)

        # Answers derive from the first user message, the question: a retry (which appends the bad
        # answer and a correction) gets an answer to the same question, as from a real model.
        answer, mode = self._answer(conversation, first_user or "", fmt_type, schema)
        finish = "stop"
        if fault == "garbage":
            answer, mode = "I believe the answer is probably along these lines, but let me explain in prose instead.", fault
        elif fault == "empty":
            answer, mode = "", fault
        elif fault == "truncated":
            answer, mode, finish = answer[: max(1, len(answer) // 2)], fault, "length"
        elif fault == "reasoning-only":
            mode, finish = fault, "length"
        if self.args.ramble and fault is None:  # a model that never stops on its own
            answer += "".join(f" {derived_text(first_user or '', str(n), 8)}" for n in range(self.args.context // 8 + 1))
        # Generation stops at max_tokens, or where the context is full (no limit: until it is).
        room = self.args.context - prompt_tokens
        if count_tokens(answer) > min(limit or room, room):
            if (limit is None or limit > room) and self.args.full_context == "500":
                entry["mode"] = "context-full"  # llama-server without context shift
                return _error(500, "Context size has been exceeded.", "server_error")
            answer, finish = first_tokens(answer, min(limit or room, room)), "length"
        if self.args.control_chars and answer:
            answer = _with_controls(answer)
        entry["mode"], entry["finish"] = mode, finish

        reasoning = f"The user asks: {(first_user or '')[:80]!r}. I will answer briefly."
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if fault == "reasoning-only":
            message["content"] = ""
            message["reasoning_content"] = f"{reasoning} First I should weigh every line of the passage, and then"
        elif self.args.answer_in_reasoning:
            message["content"] = ""
            message["reasoning_content"] = f"{reasoning}\n\n{answer}"
        elif self.args.reasoning_content:
            message["reasoning_content"] = reasoning
        elif self.args.think:
            message["content"] = f"<think>\n{reasoning}\n</think>\n\n{answer}"
        completion_tokens = count_tokens(str(message["content"]) + str(message.get("reasoning_content", "")))
        return web.json_response({
            "id": f"chatcmpl-{hashlib.sha1(f'{index}:{conversation}'.encode()).hexdigest()[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.args.answer_model or model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "system_fingerprint": "fake_llm",
        })

    def _answer(self, conversation: str, question: str, fmt_type: str, schema: dict[str, Any] | None) -> tuple[str, str]:
        for position, entry in enumerate(self.answers):
            needle = entry.get("contains", "")
            if needle in conversation:
                if "answers" in entry:
                    served = self.answer_hits.get(position, 0)
                    self.answer_hits[position] = served + 1
                    choices = entry["answers"]
                    value = choices[min(served, len(choices) - 1)]
                else:
                    value = entry.get("answer", "")
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                return text, "auto"
        if fmt_type == "json_schema" and schema is not None:
            value = SchemaFaker(schema, question).make()
            try:
                import jsonschema  # noqa: PLC0415 - optional self-check
                jsonschema.validate(value, schema)
            except ImportError:
                pass
            except Exception as exc:  # a schema feature the faker does not cover: say so, still answer
                print(f"fake_llm: generated answer does not fit the schema: {exc}", file=sys.stderr, flush=True)
            return json.dumps(value, ensure_ascii=False), "auto"
        if fmt_type == "json_object":
            return json.dumps({"answer": derived_text(question)}, ensure_ascii=False), "auto"
        return derived_text(question), "auto"


def _with_controls(answer: str) -> str:
    """The answer as a broken model writes it: a terminal escape, a bell inside (inside a JSON string too), a NUL."""
    if answer[:1] in "{[" and '": "' in answer:
        return "\x1b[0m" + answer.replace('": "', '": "\x07', 1) + "\x00"
    middle = len(answer) // 2
    return f"\x1b[1m{answer[:middle]}\x07{answer[middle:]}\x00"


def build_app(args: argparse.Namespace) -> web.Application:
    fake = FakeLLM(args)
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[fastapi_errors])
    if args.lmstudio:
        app.router.add_get("/lmstudio-greeting", fake.greeting)
    app.router.add_get("/v1/models", fake.models)
    app.router.add_post("/v1/chat/completions", fake.chat)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234, help="0 picks a free port (see the readiness line)")
    parser.add_argument("--model", action="append", help="a model id to offer (repeatable)")
    parser.add_argument("--record", help="append one JSON line per request to this file")
    parser.add_argument("--think", action="store_true")
    parser.add_argument("--reasoning-content", action="store_true")
    parser.add_argument("--answer-in-reasoning", action="store_true")
    parser.add_argument("--garbage-first", type=int, default=0)
    parser.add_argument("--empty-first", type=int, default=0)
    parser.add_argument("--truncate-first", type=int, default=0)
    parser.add_argument("--reasoning-only-first", type=int, default=0,
                        help="answers with only an unfinished thought in reasoning_content, cut at the token limit")
    parser.add_argument("--error-first", type=int, default=0, help="requests answered with HTTP 500")
    parser.add_argument("--drop-first", type=int, default=0, help="requests whose connection is closed unanswered")
    parser.add_argument("--hang-first", type=int, default=0, help="requests never answered")
    parser.add_argument("--faults-after", type=int, default=0,
                        help="answer the first N chat requests well; the faults (and --hang) come after them")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--hang", action="store_true", help="never answer (after --faults-after)")
    parser.add_argument("--answers", help="JSON list of {contains, answer|answers}")
    parser.add_argument("--lmstudio", action="store_true",
                        help="answer LM Studio's GET /lmstudio-greeting probe (fake_lms passes it; an Ollama-like fake does not)")
    parser.add_argument("--reject-json-schema", nargs="?", const="400", choices=["400", "422", "500"],
                        help="refuse json_schema response formats with this status (400 OpenAI-style, 422 FastAPI, "
                             "500 llama-cpp-python)")
    parser.add_argument("--reject-json-object", nargs="?", const="400", choices=["400", "422", "500"],
                        help="refuse json_object response formats likewise")
    parser.add_argument("--context", type=int, default=32768,
                        help="the model's context in tokens: a longer prompt is a 400 context_length_exceeded")
    parser.add_argument("--ramble", action="store_true",
                        help="answers never end on their own: they run to max_tokens or, without one, to a full context")
    parser.add_argument("--full-context", choices=["length", "500"], default="length",
                        help="a context that fills up mid-answer: finish_reason length (llama-cpp-python) or "
                             "500 'Context size has been exceeded.' (llama-server without context shift)")
    parser.add_argument("--unknown-model", choices=["404", "default"], default="404",
                        help="an unknown model: 404 (LM Studio, Ollama) or answered by the default model (llama.cpp)")
    parser.add_argument("--answer-model", help="answers name this model whatever was asked")
    parser.add_argument("--control-chars", action="store_true",
                        help="answers carry a terminal escape, a bell (inside a JSON string too) and a NUL")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    await serve_until_stopped(build_app(args), args.host, args.port, f"fake_llm ready on http://{args.host}:{{port}}/v1")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
