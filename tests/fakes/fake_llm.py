#!/usr/bin/env python3
"""A fake OpenAI-compatible chat server (the shapes LM Studio, Ollama, llama.cpp and vLLM speak).

Tests run it as a real process on 127.0.0.1 so the client code under test goes through the real
`openai` package, real HTTP and real failure modes (refused connections, hangs, bad answers),
not through mocks of our own code.

    python tests/fakes/fake_llm.py --port 0 [--model NAME ...] [--record FILE] [--think]
        [--reasoning-content] [--answer-in-reasoning] [--garbage-first N] [--empty-first N]
        [--truncate-first N] [--reasoning-only-first N] [--error-first N] [--drop-first N]
        [--hang-first N] [--faults-after N] [--delay S] [--hang] [--answers FILE]
        [--reject-json-schema] [--lmstudio]

Endpoints: `GET /v1/models`, `POST /v1/chat/completions`, and with `--lmstudio` (fake_lms passes
it) `GET /lmstudio-greeting`, the probe the real `lms` CLI uses to tell an LM Studio server from
anything else on the port.

Answers are deterministic functions of the request, so tests can assert on them:
- `--answers FILE`: a JSON list of `{"contains": "...", "answer": "..."}` (or `"answers": [...]`,
  served in turn, the last one repeated); the first entry whose `contains` occurs anywhere in the
  conversation wins, and its answer is sent as is (a non-string answer is sent as JSON). This is
  how a test feeds JSON that is well-formed but wrong for the schema.
- `response_format` json_schema: a document generated from the schema (objects with all their
  properties, arrays with minItems, enums, bounded numbers, strings derived from the prompt).
  json_object: `{"answer": <text>}`. Otherwise a short text derived from the prompt. "The prompt"
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
was sent (message count, image parts, response_format type, last user text, when it arrived).
A readiness line `fake_llm ready on http://127.0.0.1:PORT/v1` is printed once listening.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

DEFAULT_MODEL = "fake-model"
WORDS = ("amber", "brook", "cedar", "dune", "ember", "fjord", "grove", "harbor", "iris", "juniper",
         "kestrel", "lantern", "meadow", "north", "orchard", "pebble", "quill", "river", "saffron",
         "thistle", "umber", "valley", "willow", "yarrow", "zephyr")


# ---------------------------------------------------------------- deterministic text

def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()


def derived_text(prompt: str, salt: str = "", words: int = 6) -> str:
    """A short sentence that depends only on the prompt (and salt): same request, same answer."""
    digest = _digest(prompt, salt)
    picked = [WORDS[b % len(WORDS)] for b in digest[:words]]
    head = " ".join(prompt.split()[:4])
    text = " ".join(picked)
    return f"{head}: {text}" if head else text


# ---------------------------------------------------------------- schema -> instance

class SchemaFaker:
    """Builds a JSON value valid against a (practical subset of) JSON Schema, deterministically.

    Covers what structured-output prompts use: $ref into $defs/definitions, allOf/anyOf/oneOf,
    const, enum, type lists, objects (every declared property), arrays (minItems/maxItems,
    prefixItems, uniqueItems), strings (min/maxLength), numbers (bounds, multipleOf), booleans, null.
    """

    def __init__(self, root: dict[str, Any], prompt: str) -> None:
        self.root = root
        self.prompt = prompt

    def make(self) -> Any:
        return self._value(self.root, "$", 0)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            if not ref.startswith("#"):
                raise ValueError(f"only local $ref is supported, got {ref!r}")
            node: Any = self.root
            for part in [p for p in ref[1:].split("/") if p]:
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
            seen += 1
        return schema

    def _pick(self, options: list[Any], path: str) -> Any:
        return options[_digest(self.prompt, path)[0] % len(options)]

    def _value(self, schema: Any, path: str, depth: int) -> Any:
        if schema is True or schema == {} or schema is None:
            return derived_text(self.prompt, path, 3)
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self._pick(list(schema["enum"]), path)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                part = self._resolve(part)
                for key, value in part.items():
                    if key == "properties":
                        merged.setdefault("properties", {}).update(value)
                    elif key == "required":
                        merged.setdefault("required", []).extend(value)
                    else:
                        merged.setdefault(key, value)
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            merged.update({k: v for k, v in rest.items() if k not in merged})
            return self._value(merged, path, depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._resolve(o) for o in schema[key]]
                non_null = [o for o in options if o.get("type") != "null"] or options
                return self._value(non_null[0], path, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        maker = getattr(self, f"_{kind}", None)
        if maker is None:
            raise ValueError(f"unsupported schema type {kind!r} at {path}")
        return maker(schema, path, depth)

    def _object(self, schema: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        props = schema.get("properties", {})
        required = list(schema.get("required", []))
        names = list(props) + [r for r in required if r not in props]
        return {name: self._value(props.get(name, {}), f"{path}.{name}", depth + 1) for name in names}

    def _array(self, schema: dict[str, Any], path: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems", [])
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        count = max(low, len(prefix), 1 if depth < 6 else 0)
        if high is not None:
            count = min(count, int(high))
        items = schema.get("items", {})
        out = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items
            out.append(self._value(sub, f"{path}[{index}]", depth + 1))
        return out

    def _string(self, schema: dict[str, Any], path: str, depth: int) -> str:
        fmt = schema.get("format")
        if fmt == "date":
            return "2024-01-01"
        if fmt == "date-time":
            return "2024-01-01T00:00:00Z"
        if fmt in ("uri", "url"):
            return "https://example.com/" + hashlib.sha1(path.encode()).hexdigest()[:8]
        if path.endswith(".sound"):
            return "Silence"  # a sound designer's most common answer, valid for any segment
        text = derived_text(self.prompt, path)
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        while len(text) < low:
            text += " " + derived_text(self.prompt, path + str(len(text)), 3)
        if high is not None:
            text = text[: int(high)]
        return text

    def _number(self, schema: dict[str, Any], path: str, depth: int, integer: bool = False) -> float | int:
        low = schema.get("minimum")
        high = schema.get("maximum")
        if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            low = schema["exclusiveMinimum"] + (1 if integer else 0.5)
        if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
            high = schema["exclusiveMaximum"] - (1 if integer else 0.5)
        if low is not None and high is not None:
            value = (low + high) / 2
        elif low is not None:
            value = low + 1
        elif high is not None:
            value = min(high, 1)
        else:
            value = 1 + _digest(self.prompt, path)[0] % 9
        step = schema.get("multipleOf")
        if step:
            value = round(value / step) * step
            if low is not None and value < low:
                value += step
            if high is not None and value > high:
                value -= step
        if integer:
            value = int(value)
            if low is not None and value < low:
                value += 1
        return value

    def _integer(self, schema: dict[str, Any], path: str, depth: int) -> int:
        # Inside the k-th item of an array, a bounded integer counts up from its minimum, as a
        # model numbering items does (e.g. {"index": 5}, {"index": 6}, ...), so such answers stay valid.
        item = re.findall(r"\[(\d+)\]\.[^.\[]+$", path)
        low, high = schema.get("minimum"), schema.get("maximum")
        if item and isinstance(low, int):
            value = low + int(item[0])
            return min(value, high) if isinstance(high, int) else value
        return int(self._number(schema, path, depth, integer=True))

    def _boolean(self, schema: dict[str, Any], path: str, depth: int) -> bool:
        return True

    def _null(self, schema: dict[str, Any], path: str, depth: int) -> None:
        return None


# ---------------------------------------------------------------- the server

def _error(status: int, message: str, kind: str, param: str | None = None, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


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
            self.record({"path": "/v1/chat/completions", "status": 400})
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
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
        if model not in offered:
            message = (f"The model `{model}` does not exist or you do not have access to it."
                       if offered else "No models loaded. Please load a model with `lms load`.")
            return _error(404, message, "invalid_request_error", "model", "model_not_found")
        texts, images, first_user, last_user = [], 0, None, ""
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "developer", "tool"):
                return _error(400, f"Invalid message at messages[{index}]: needs a role.", "invalid_request_error", f"messages[{index}]")
            try:
                text, count = _text_of(message.get("content"))
            except ValueError as exc:
                return _error(400, f"Invalid content at messages[{index}]: {exc}.", "invalid_request_error", f"messages[{index}].content")
            texts.append(text)
            images += count
            if message["role"] == "user":
                last_user = text
                first_user = text if first_user is None else first_user
        entry.update(messages=len(messages), images=images, last_user=last_user[:2000],
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
            if fmt_type == "json_schema":
                if self.args.reject_json_schema:
                    return _error(400, "'response_format.type' json_schema is not supported by this server.",
                                  "invalid_request_error", "response_format")
                spec = fmt.get("json_schema")
                if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict) or not spec.get("name"):
                    return _error(400, "'response_format.json_schema' needs a 'name' and a 'schema' object.",
                                  "invalid_request_error", "response_format.json_schema")
                schema = spec["schema"]
        entry["response_format"] = fmt_type

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

        conversation = "\n".join(texts)
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
        entry["mode"] = mode

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
        prompt_tokens = max(1, len(conversation.split()))
        completion_tokens = len(str(message["content"]).split())
        return web.json_response({
            "id": f"chatcmpl-{hashlib.sha1(f'{index}:{conversation}'.encode()).hexdigest()[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
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


def build_app(args: argparse.Namespace) -> web.Application:
    fake = FakeLLM(args)
    app = web.Application(client_max_size=64 * 1024 * 1024)
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
    parser.add_argument("--reject-json-schema", action="store_true",
                        help="answer 400 to json_schema response formats, like servers without structured output")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(build_app(args), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"fake_llm ready on http://{args.host}:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if os.name != "nt":
        import signal  # noqa: PLC0415

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
