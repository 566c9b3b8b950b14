"""Text and vision answers from an OpenAI-compatible server (LM Studio, Ollama, llama.cpp, vLLM).

Why this module exists: an overnight run asks a local model hundreds of questions, and local
models answer badly in predictable ways (read in common.services.llm_answers). Every caller
needs the same cure: extract, validate, tell the model what was wrong, ask again a bounded
number of times, then stop with one sentence a tired user can act on at 7 a.m. The client is
stateless about answers: callers checkpoint each answer themselves (common checkpoint code),
so a crash never loses more than the question in flight.

Two bounded retry loops, each logging one line on stderr per retry (an overnight log must show
why a run took long, not only that it did):
- answers: `max_retries` counts retries after the first answer that could not be used, so at
  most `max_retries + 1` answers per question; then a JobError (exit 6).
- transport: a request that gets no answer within `timeout` (a hung model), a dropped
  connection, a refused connection or a 5xx/429 is sent again up to `transport_retries` times,
  after a short growing pause; then a ServiceError (exit 5). The `openai` client's own silent
  retries are switched off so every attempt is ours, counted and logged.
So one question costs at most `(max_retries + 1) * (transport_retries + 1)` requests.
"""
from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import jsonschema
import openai

from common.services.llm_answers import (
    InvalidAnswer, Reply, Validator, answer_text, json_answer, one_line, text_answer,
)
from common.services.llm_endpoint import choose_auto_model, is_auto, normalize_base_url
from common.services.net import is_loopback_url
from common.services.say import say_on_stderr
from common.run.errors import ConfigError, InputError, JobError, ServiceError

Message = dict[str, Any]
Log = Callable[[str], None]
T = TypeVar("T")
RETRY_PAUSE = 0.5  # seconds before the first transport retry; doubled for each next one
MAX_RETRY_PAUSE = 8.0

_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                ".webp": "image/webp", ".gif": "image/gif"}


def image_data_url(image_path: str | Path) -> str:
    """The image as a base64 `data:` URL, the form every OpenAI-compatible vision server takes."""
    path = Path(image_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"The image {path} cannot be read ({exc.strerror or exc}): check that it exists, then run again.") from exc
    if not data:
        raise InputError(f"The image {path} is empty: regenerate it (delete it and run the step that makes it), then run again.")
    mime = _IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        if data.startswith(b"\x89PNG"):
            mime = "image/png"
        elif data.startswith(b"\xff\xd8"):
            mime = "image/jpeg"
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            mime = "image/webp"
        else:
            raise InputError(f"The image {path} is not a PNG, JPEG, WebP or GIF file: convert it, then run again.")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# ---------------------------------------------------------------- the client

class _FormatRejected(Exception):
    """The server refused our response_format; the caller falls back to a simpler one."""


class LLMClient:
    """One model on one OpenAI-compatible server; every method is one question, no hidden state
    beyond what the server told us about itself (the resolved "auto" model, the response
    formats it refuses)."""

    def __init__(self, base_url: str | None, model: str | None, *, timeout: float = 300.0,
                 max_retries: int = 3, api_key: str = "lm-studio", transport_retries: int = 2,
                 log: Log | None = None, retry_pause: float = RETRY_PAUSE) -> None:
        """`log` gets one line per retry (default: stderr); `retry_pause` is the first transport pause."""
        self.base_url = normalize_base_url(base_url)
        self.requested_model = (model or "").strip()
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.transport_retries = max(0, int(transport_retries))
        self.retry_pause = max(0.0, float(retry_pause))
        self._log = log or say_on_stderr
        # A local server must not be reached through the user's HTTP(S)_PROXY.
        http_client = openai.DefaultHttpxClient(trust_env=False) if is_loopback_url(self.base_url) else None
        # max_retries=0: the openai client would retry silently; _send retries visibly instead.
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "lm-studio",
                                     timeout=self.timeout, max_retries=0, http_client=http_client)
        self._model: str | None = None if is_auto(self.requested_model) else self.requested_model
        self._json_modes = ["json_schema", "json_object", "prompt"]

    # ---- server facts

    def _send(self, call: Callable[[], T]) -> T:
        """`call()` (one HTTP request), sent again on a transport failure, a bounded and logged number of times.

        Only failures a second try can cure are retried: no answer in time, a dropped or refused
        connection, a 5xx, a 429. A rejected key is a ConfigError; any other 4xx propagates at once
        for the caller to word.
        """
        attempts = self.transport_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except openai.AuthenticationError as exc:
                raise ConfigError(f"The LLM server at {self.base_url} rejected the API key: check the key for that "
                                  "server, then run again.") from exc
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                failure: Exception = exc
                problem = _connection_problem(exc, self.timeout)
            except openai.APIStatusError as exc:
                if exc.status_code != 429 and exc.status_code < 500:
                    raise
                failure = exc
                problem = f"failed ({exc.status_code}: {_status_detail(exc, 120)})"
            if attempt == attempts:
                raise self._gave_up(failure, attempts) from failure
            self._log(f"LLM server {problem}; asking again ({attempt + 1} of {attempts})")
            if not isinstance(failure, openai.APITimeoutError):  # a timeout already waited long enough
                time.sleep(min(MAX_RETRY_PAUSE, self.retry_pause * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _gave_up(self, exc: Exception, attempts: int) -> ServiceError:
        """The one sentence for a transport failure that outlasted every retry."""
        tries = "" if attempts == 1 else f" ({attempts} tries)"
        if isinstance(exc, openai.APITimeoutError):
            return ServiceError(
                f"The LLM server is not answering at {self.base_url} within {self.timeout:g} s{tries}: check that its "
                f"model is loaded and not stuck (lms ps), or raise LLM_TIMEOUT, then run again.")
        if isinstance(exc, openai.APIConnectionError) and not _refused(exc):
            return ServiceError(
                f"The LLM server at {self.base_url} closed the connection without answering{tries}: check LM Studio's "
                f"log (lms log stream) for a crash or an out-of-memory model, then run again.")
        if isinstance(exc, openai.APIConnectionError):
            return ServiceError(
                f"The LLM server is not answering at {self.base_url}{tries}: start LM Studio's server "
                f"(lms server start) or set LM_STUDIO_BASE_URL, then run again.")
        assert isinstance(exc, openai.APIStatusError)
        if exc.status_code == 429:
            return ServiceError(f"The LLM server at {self.base_url} is too busy (429){tries}: "
                                f"let other jobs finish, then run again.")
        failed = "failed" if attempts == 1 else f"failed {attempts} times in a row"
        return ServiceError(
            f"The LLM server at {self.base_url} {failed} ({exc.status_code}: {_status_detail(exc, 160)}): "
            f"check LM Studio's log (lms log stream), then run again.")

    def models(self) -> list[str]:
        """The model ids the server offers (`GET /models`), in the server's order."""
        try:
            page = self._send(self._client.models.list)
        except openai.NotFoundError as exc:
            raise ConfigError(
                f"The server at {self.base_url} has no OpenAI-compatible API there (GET /models gave 404): "
                f"set LM_STUDIO_BASE_URL to its /v1 address, then run again.") from exc
        except openai.APIStatusError as exc:
            raise ServiceError(f"The LLM server at {self.base_url} failed to list its models ({exc.status_code}: "
                               f"{one_line(exc.message, 160)}): check its log, then run again.") from exc
        return [m.id for m in page.data]

    def is_up(self, timeout: float = 3.0) -> bool:
        """Whether the server answers `GET /models` now; never raises, never waits long."""
        try:
            quick = self._client.with_options(timeout=min(timeout, self.timeout), max_retries=0)
            quick.models.list()
        except openai.OpenAIError:
            return False
        return True

    @property
    def model(self) -> str:
        """The model questions go to; "auto" or empty means the first chat model the server lists.

        Embedding models (LM Studio lists them alongside) are skipped: they cannot chat.
        """
        if self._model is None:
            offered = self.models()
            chosen = choose_auto_model(offered)
            if chosen is None:
                what = f"no chat model (only embedding models: {', '.join(offered[:5])})" if offered else "no model"
                raise ConfigError(
                    f"The LLM server at {self.base_url} offers {what}: load one (lms load <model>) "
                    f"or set LM_STUDIO_MODEL, then run again.")
            self._model = chosen
        return self._model

    def _unknown_model(self, exc: openai.APIStatusError) -> ConfigError | None:
        """A ConfigError if the server does not offer our model, else None (some other 4xx)."""
        try:
            offered = self.models()
        except (ServiceError, ConfigError):
            offered = None
        model = self._model or self.requested_model
        if offered is not None and model in offered:
            return None
        if offered:
            listing = ", ".join(offered[:12]) + (", …" if len(offered) > 12 else "")
            return ConfigError(
                f"The LLM server at {self.base_url} does not offer the model '{model}' (it offers: {listing}): "
                f"set LM_STUDIO_MODEL to one of them or load it (lms load {model}), then run again.")
        if offered == []:
            return ConfigError(
                f"The LLM server at {self.base_url} has no model loaded, so '{model}' is unavailable: "
                f"load it (lms load {model}), then run again.")
        if exc.status_code == 404:
            return ConfigError(
                f"The LLM server at {self.base_url} answered 404 for the model '{model}' "
                f"({one_line(exc.message, 160)}): check LM_STUDIO_MODEL and LM_STUDIO_BASE_URL, then run again.")
        return None

    # ---- one request

    def _create(self, messages: Sequence[Message], *, temperature: float, max_tokens: int | None,
                response_format: dict[str, Any] | None = None) -> Reply:
        model = self.model
        kwargs: dict[str, Any] = {"model": model, "messages": list(messages), "temperature": temperature}
        if max_tokens:
            kwargs["max_tokens"] = int(max_tokens)
        if response_format is not None:
            kwargs["response_format"] = response_format
        try:
            completion = self._send(lambda: self._client.chat.completions.create(**kwargs))
        except openai.NotFoundError as exc:
            unknown = self._unknown_model(exc)
            raise (unknown or JobError(
                f"The LLM server at {self.base_url} answered 404 for model {model}: {one_line(exc.message, 200)}.")) from exc
        except openai.BadRequestError as exc:
            text = f"{exc.message} {exc.param or ''}".lower()
            if response_format is not None and "response_format" in text:
                raise _FormatRejected(str(exc.message)) from exc
            if "model" in text:
                unknown = self._unknown_model(exc)
                if unknown is not None:
                    raise unknown from exc
            raise JobError(f"The LLM server refused the request for model {model} ({one_line(exc.message, 200)}): "
                           f"check that the model can do this (e.g. read images), then run again.") from exc
        except openai.APIStatusError as exc:  # a 4xx not handled above; 5xx and 429 were retried in _send
            raise JobError(f"The LLM server failed while model {model} answered ({exc.status_code}: "
                           f"{one_line(exc.message, 200)}): check LM Studio's log (lms log stream), then run again.") from exc
        choices = completion.choices or []
        if not choices or choices[0].message is None:
            extra = completion.model_extra or {}
            detail = f": {one_line(extra['error'], 160)}" if extra.get("error") else ""
            raise InvalidAnswer(f"the server returned no answer{detail}")
        message = choices[0].message
        reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None) or ""
        return Reply(content=message.content or "", reasoning=str(reasoning), finish_reason=choices[0].finish_reason)

    # ---- questions

    def chat(self, messages: Sequence[Message], *, temperature: float = 0.7, max_tokens: int | None = None) -> str:
        """One raw exchange: the answer text (reasoning stripped), possibly "", no retries."""
        return answer_text(self._create(messages, temperature=temperature, max_tokens=max_tokens))

    def _ask(self, messages: list[Message], parse: Callable[[Reply], Any], *, correction: str,
             temperature: float, max_tokens: int | None,
             response_format: Callable[[], dict[str, Any] | None] = lambda: None) -> Any:
        """Ask, parse, and on an unusable answer ask again with the reason, a bounded number of times."""
        conversation = list(messages)
        reason = "no answer"
        attempts = self.max_retries + 1
        for _attempt in range(attempts):
            reply: Reply | None = None
            try:
                reply = self._create_with_format(conversation, response_format, temperature, max_tokens)
                return parse(reply)
            except InvalidAnswer as exc:
                reason = one_line(str(exc), 300)
            if _attempt + 1 < attempts:
                self._log(f"LLM answer could not be used ({one_line(reason, 160)}); asking again "
                          f"({_attempt + 2} of {attempts})")
            shown = reply.content.strip() if reply is not None and reply.content.strip() else "(an empty answer)"
            # Only the latest bad answer goes back: the conversation stays short however many retries.
            conversation = list(messages) + [
                {"role": "assistant", "content": shown[:4000]},
                {"role": "user", "content": f"That answer could not be used: {reason}. {correction}"},
            ]
        raise JobError(
            f"The model {self.model} gave no usable answer in {attempts} {'try' if attempts == 1 else 'tries'} "
            f"(last problem: {reason.rstrip('.')}); try again, or pick another model with LM_STUDIO_MODEL.")

    def _create_with_format(self, conversation: list[Message], response_format: Callable[[], dict[str, Any] | None],
                            temperature: float, max_tokens: int | None) -> Reply:
        while True:
            fmt = response_format()
            try:
                return self._create(conversation, temperature=temperature, max_tokens=max_tokens, response_format=fmt)
            except _FormatRejected:
                # Remember for this client: the next question goes straight to what the server takes.
                if len(self._json_modes) > 1:
                    self._json_modes.pop(0)
                    continue
                raise JobError(f"The LLM server at {self.base_url} refuses every structured-output format for model "
                               f"{self.model}: use a newer server version, then run again.") from None

    def complete_text(self, prompt: str, *, system: str | None = None, validate: Validator | None = None,
                      temperature: float = 0.7, max_tokens: int | None = None) -> str:
        """A non-empty text answer that passes `validate` (which raises ValueError with a reason)."""
        return self._ask(_messages(system, prompt), lambda reply: text_answer(reply, validate),
                         temperature=temperature, max_tokens=max_tokens,
                         correction="Answer again, with only the answer itself.")

    def complete_json(self, prompt: str, schema: dict[str, Any], *, system: str | None = None, name: str = "answer",
                      validate: Validator | None = None, temperature: float = 0.2,
                      max_tokens: int | None = None) -> Any:
        """A JSON value valid against `schema` that also passes `validate`, parsed.

        Asks with `response_format` json_schema; a server that refuses it gets json_object, then
        plain instructions (the schema is always in the system message too, so every server
        knows the shape).
        """
        jsonschema.validators.validator_for(schema).check_schema(schema)  # a bad schema is our bug
        safe_name = re.sub(r"[^A-Za-z0-9_-]", "_", name or "answer")[:64] or "answer"
        instructions = ("Answer with one JSON document and nothing else (no prose, no code fence). "
                        f"It must match this JSON Schema:\n{json.dumps(schema, ensure_ascii=False)}")
        full_system = f"{system.rstrip()}\n\n{instructions}" if system else instructions

        def response_format() -> dict[str, Any] | None:
            mode = self._json_modes[0]
            if mode == "json_schema":
                return {"type": "json_schema", "json_schema": {"name": safe_name, "schema": schema, "strict": True}}
            if mode == "json_object":
                return {"type": "json_object"}
            return None

        return self._ask(_messages(full_system, prompt), lambda reply: json_answer(reply, schema, validate),
                         temperature=temperature, max_tokens=max_tokens,
                         response_format=response_format,
                         correction="Reply with only one JSON document that matches the schema.")

    def describe_image(self, prompt: str, image_path: str | Path, *, system: str | None = None,
                       validate: Validator | None = None, temperature: float = 0.4,
                       max_tokens: int | None = None) -> str:
        """A text answer about one image (sent as a base64 data URL part); needs a vision model."""
        url = image_data_url(image_path)
        parts = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": url}}]
        return self._ask(_messages(system, parts), lambda reply: text_answer(reply, validate),
                         temperature=temperature, max_tokens=max_tokens,
                         correction="Answer again about the same image, with only the answer itself.")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _refused(exc: BaseException) -> bool:
    """Whether nothing listened (connect failed), as opposed to a server that dropped our request."""
    return any(isinstance(e, ConnectionRefusedError) or type(e).__name__ == "ConnectError" for e in _causes(exc))


def _status_detail(exc: openai.APIStatusError, limit: int) -> str:
    """The server's own words for an HTTP error, first sentence only, without the openai prefix."""
    body = exc.body
    detail = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        detail = str(inner.get("message", "") if isinstance(inner, dict) else inner)
    elif isinstance(body, str):
        detail = body
    detail = detail or re.sub(r"^Error code: \d+ - ", "", exc.message)
    detail = one_line(detail, limit).split(". ")[0].rstrip(". ")
    return detail or "no detail given"


def _connection_problem(exc: openai.APIConnectionError, timeout: float) -> str:
    """What went wrong, for the retry line: 'LLM server <problem>; asking again (2 of 3)'."""
    if isinstance(exc, openai.APITimeoutError):
        return f"did not answer within {timeout:g} s"
    if _refused(exc):
        return "refused the connection (not running?)"
    return "closed the connection without answering"


def _messages(system: str | None, prompt: str | list[dict[str, Any]]) -> list[Message]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
