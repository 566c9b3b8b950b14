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
  most `max_retries + 1` answers per question; then a JobError (exit 6). A retry shows the model
  its bad answer (cut to the answer's budget, common.services.llm_limits.echo) and what was wrong.
- transport: a request that gets no answer within `timeout` (a hung model), a dropped
  connection, a refused connection or a 5xx/429 is sent again up to `transport_retries` times,
  after pauses that grow to tens of seconds (`retry_pauses`, LLM_RETRY_PAUSES, all of one
  request's pauses together at most MAX_RETRY_WAIT), long enough to ride out a server restart;
  then a ServiceError (exit 5). The `openai` client's own silent retries are switched off so
  every attempt is ours, counted and logged. A failure that would only repeat is not retried: a
  context overflow (even as a 500: "Context size has been exceeded") is one sentence with its
  numbers, a refused response format moves down json_schema -> json_object -> plain
  instructions at once, remembered by the client for the rest of its run and said once.
So one question costs at most `(max_retries + 1) * (transport_retries + 1)` requests, plus one per
refused format.

What the server claims is checked, not trusted: a named model is looked up in `GET /models`
before the first question (llama.cpp's server answers any unknown name with its default model),
and an answer from another model than the one asked is one sentence naming both. Every question
carries a `max_tokens` budget: the answer's own (the caller's, or derived from the JSON schema)
plus `thinking_tokens` (LLM_THINKING_TOKENS) for a reasoning model's thoughts.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import jsonschema
import openai

from common.services.llm_answers import (
    InvalidAnswer, Reply, Validator, answer_text, clean_controls, json_answer, one_line, strip_think, text_answer,
)
from common.services.llm_limits import (
    DEFAULT_TEXT_TOKENS, context_overflow, echo, error_text, format_refused, json_budget,
)
from common.services.llm_endpoint import choose_auto_model, is_auto, normalize_base_url
from common.services.net import is_loopback_url
from common.services.say import say_on_stderr
from common.run.errors import ConfigError, InputError, JobError, ServiceError

Message = dict[str, Any]
Log = Callable[[str], None]
T = TypeVar("T")
RETRY_PAUSES = (10.0, 30.0, 60.0)  # seconds before each transport retry, the last one repeated (LLM_RETRY_PAUSES)
MAX_RETRY_WAIT = 120.0  # all transport pauses of one request together
DEFAULT_THINKING_TOKENS = 2048  # LLM_THINKING_TOKENS: added to every answer's budget for a reasoning model
JSON_MODES = ("json_schema", "json_object", "prompt")
_MODE_WORDS = {"json_object": "json_object", "prompt": "plain instructions (the schema in the prompt)"}

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
    beyond what the server told us about itself (the resolved "auto" model, whether a named model
    is offered, the response formats it refuses)."""

    def __init__(self, base_url: str | None, model: str | None, *, timeout: float = 300.0,
                 max_retries: int = 3, api_key: str = "lm-studio", transport_retries: int = 2,
                 log: Log | None = None, retry_pauses: Sequence[float] = RETRY_PAUSES,
                 thinking_tokens: int = DEFAULT_THINKING_TOKENS, sleep: Callable[[float], None] = time.sleep) -> None:
        """`log` gets one line per retry (default: stderr); `retry_pauses` are the transport pauses in
        seconds, each taken by `sleep`."""
        self.base_url = normalize_base_url(base_url)
        self.requested_model = (model or "").strip()
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.transport_retries = max(0, int(transport_retries))
        try:
            self.retry_pauses = tuple(max(0.0, float(p)) for p in retry_pauses) or (0.0,)
        except (TypeError, ValueError):
            raise ConfigError(f"LLM_RETRY_PAUSES is {retry_pauses!r}, not a list of seconds: set it like "
                              f"[10, 30, 60], then run again.") from None
        self.thinking_tokens = max(0, int(thinking_tokens))
        self._log = log or say_on_stderr
        self._sleep = sleep
        # A local server must not be reached through the user's HTTP(S)_PROXY.
        http_client = openai.DefaultHttpxClient(trust_env=False) if is_loopback_url(self.base_url) else None
        # max_retries=0: the openai client would retry silently; _send retries visibly instead.
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "lm-studio",
                                     timeout=self.timeout, max_retries=0, http_client=http_client)
        self._model: str | None = None if is_auto(self.requested_model) else self.requested_model
        self._model_checked = self._model is None  # "auto" is taken from the listing itself
        self._json_mode = 0  # index into JSON_MODES: the first format this server has not refused
        self._lock = threading.Lock()

    # ---- server facts

    def _send(self, call: Callable[[], T], final: Callable[[openai.APIStatusError], bool] = lambda exc: False) -> T:
        """`call()` (one HTTP request), sent again on a transport failure, a bounded and logged number of times.

        Only failures a second try can cure are retried: no answer in time, a dropped or refused
        connection, a 5xx that `final` does not call deterministic, a 429. A rejected key is a
        ConfigError; any other status error propagates at once for the caller to word.
        """
        attempts = self.transport_retries + 1
        waited = 0.0
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
                if (exc.status_code != 429 and exc.status_code < 500) or final(exc):
                    raise
                failure = exc
                problem = f"failed ({exc.status_code}: {_status_detail(exc, 120)})"
            if attempt == attempts:
                raise self._gave_up(failure, attempts) from failure
            self._log(f"LLM server {problem}; asking again ({attempt + 1} of {attempts})")
            if not isinstance(failure, openai.APITimeoutError):  # a timeout already waited long enough
                pause = min(self.retry_pauses[min(attempt, len(self.retry_pauses)) - 1], MAX_RETRY_WAIT - waited)
                waited += max(0.0, pause)
                self._sleep(max(0.0, pause))
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

        Embedding models (LM Studio lists them alongside) are skipped: they cannot chat. A named
        model is looked up once in the listing before the first question: llama.cpp's server
        answers any name with its default model, so a typo would otherwise go unnoticed all night.
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
        elif not self._model_checked:
            offered = self.models()
            if self._model not in offered:
                raise self._not_offered(self._model, offered)
            self._model_checked = True
        return self._model

    def _not_offered(self, model: str, offered: list[str]) -> ConfigError:
        if not offered:
            return ConfigError(
                f"The LLM server at {self.base_url} has no model loaded, so '{model}' is unavailable: "
                f"load it (lms load {model}), then run again.")
        listing = ", ".join(offered[:12]) + (", …" if len(offered) > 12 else "")
        return ConfigError(
            f"The LLM server at {self.base_url} does not offer the model '{model}' (it offers: {listing}): "
            f"set LM_STUDIO_MODEL to one of them or load it (lms load {model}), then run again.")

    def _unknown_model(self, exc: openai.APIStatusError) -> ConfigError | None:
        """A ConfigError if the server does not offer our model, else None (some other 4xx)."""
        try:
            offered = self.models()
        except (ServiceError, ConfigError):
            offered = None
        model = self._model or self.requested_model
        if offered is not None and model in offered:
            return None
        if offered is not None:
            return self._not_offered(model, offered)
        if exc.status_code == 404:
            return ConfigError(
                f"The LLM server at {self.base_url} answered 404 for the model '{model}' "
                f"({one_line(exc.message, 160)}): check LM_STUDIO_MODEL and LM_STUDIO_BASE_URL, then run again.")
        return None

    # ---- one request

    def _create(self, messages: Sequence[Message], *, temperature: float, max_tokens: int | None,
                response_format: dict[str, Any] | None = None, shrink: Sequence[str] = ()) -> Reply:
        """One request; `max_tokens` is the whole budget sent; `shrink` names what makes this prompt smaller."""
        model = self.model
        kwargs: dict[str, Any] = {"model": model, "messages": list(messages), "temperature": temperature}
        if max_tokens:
            kwargs["max_tokens"] = int(max_tokens)
        if response_format is not None:
            kwargs["response_format"] = response_format

        def final(exc: openai.APIStatusError) -> bool:  # a 5xx that would only repeat
            text = error_text(exc)
            return ((response_format is not None and format_refused(exc.status_code, text))
                    or context_overflow(text) is not None)

        try:
            completion = self._send(lambda: self._client.chat.completions.create(**kwargs), final)
        except openai.APIStatusError as exc:
            raise self._refusal(exc, model, response_format, max_tokens, shrink) from exc
        answered = str(completion.model or "")
        if answered and not _same_model(model, answered):
            raise ConfigError(
                f"The LLM server at {self.base_url} answered with the model '{answered}' when asked for '{model}' "
                f"(a server falls back to its default model for a name it does not know): set LM_STUDIO_MODEL to "
                f"the model it serves or load '{model}' there, then run again.")
        choices = completion.choices or []
        if not choices or choices[0].message is None:
            extra = completion.model_extra or {}
            detail = f": {one_line(extra['error'], 160)}" if extra.get("error") else ""
            raise InvalidAnswer(f"the server returned no answer{detail}")
        message = choices[0].message
        reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None) or ""
        return Reply(content=clean_controls(message.content or ""), reasoning=clean_controls(str(reasoning)),
                     finish_reason=choices[0].finish_reason)

    def _refusal(self, exc: openai.APIStatusError, model: str, response_format: dict[str, Any] | None,
                 max_tokens: int | None, shrink: Sequence[str]) -> Exception:
        """The exception for a status error `_send` did not retry: a refused format, an overflow, a wrong model..."""
        text = error_text(exc)
        if response_format is not None and format_refused(exc.status_code, text):
            return _FormatRejected(f"{exc.status_code}: {_status_detail(exc, 120)}")
        overflow = context_overflow(text, exc.body)
        if overflow is not None:
            remedies = list(shrink)
            if overflow.prompt and overflow.context and overflow.prompt < overflow.context and self.thinking_tokens:
                remedies.append(f"lower LLM_THINKING_TOKENS ({self.thinking_tokens} tokens of each answer's budget "
                                f"of {max_tokens} are for reasoning)")
            return JobError(overflow.sentence(model, remedies))
        if exc.status_code == 404 or (exc.status_code == 400 and "model" in f"{exc.message} {exc.param or ''}".lower()):
            unknown = self._unknown_model(exc)
            if unknown is not None:
                return unknown
        if exc.status_code == 404:
            return JobError(f"The LLM server at {self.base_url} answered 404 for model {model}: "
                            f"{one_line(exc.message, 200)}.")
        if exc.status_code >= 500:
            return self._gave_up(exc, 1)
        return JobError(f"The LLM server refused the request for model {model} ({exc.status_code}: "
                        f"{_status_detail(exc, 200)}): check that the model can do this (e.g. read images), "
                        f"then run again.")

    # ---- questions

    def _budget(self, answer_tokens: int) -> int:
        return answer_tokens + self.thinking_tokens

    def chat(self, messages: Sequence[Message], *, temperature: float = 0.7, max_tokens: int | None = None) -> str:
        """One raw exchange: the answer text (reasoning stripped), possibly "", no retries.

        `max_tokens` is the answer's budget (default DEFAULT_TEXT_TOKENS); thinking_tokens are added.
        """
        budget = self._budget(max_tokens or DEFAULT_TEXT_TOKENS)
        return answer_text(self._create(messages, temperature=temperature, max_tokens=budget))

    def _ask(self, messages: list[Message], parse: Callable[[Reply], Any], *, correction: str,
             temperature: float, answer_tokens: int, shrink: Sequence[str] = (),
             response_format: Callable[[str], dict[str, Any] | None] | None = None) -> Any:
        """Ask, parse, and on an unusable answer ask again with the reason, a bounded number of times."""
        conversation = list(messages)
        reason = "no answer"
        cut_off = False
        attempts = self.max_retries + 1
        for _attempt in range(attempts):
            reply: Reply | None = None
            try:
                reply = self._create_with_format(conversation, response_format, temperature,
                                                 self._budget(answer_tokens), shrink)
                return parse(reply)
            except InvalidAnswer as exc:
                reason = one_line(str(exc), 300)
            cut_off = reply is not None and reply.finish_reason == "length"
            if _attempt + 1 < attempts:
                self._log(f"LLM answer could not be used ({one_line(reason, 160)}); asking again "
                          f"({_attempt + 2} of {attempts})")
            shown = strip_think(reply.content) if reply is not None else ""
            # Only the latest bad answer goes back, cut to the answer's budget: the retry fits where the question did.
            conversation = list(messages) + [
                {"role": "assistant", "content": echo(shown, answer_tokens) if shown else "(an empty answer)"},
                {"role": "user", "content": f"That answer could not be used: {reason}. {correction}"},
            ]
        tries = f"{attempts} {'try' if attempts == 1 else 'tries'}"
        if cut_off:
            raise JobError(
                f"The model {self.model} gave no usable answer in {tries} (last problem: {reason.rstrip('.')}) "
                f"within its limit of {self._budget(answer_tokens)} tokens ({answer_tokens} for the answer, "
                f"{self.thinking_tokens} for reasoning); raise LLM_THINKING_TOKENS for a model that thinks at "
                f"length, or pick another model with LM_STUDIO_MODEL.")
        raise JobError(
            f"The model {self.model} gave no usable answer in {tries} "
            f"(last problem: {reason.rstrip('.')}); try again, or pick another model with LM_STUDIO_MODEL.")

    def _create_with_format(self, conversation: list[Message],
                            response_format: Callable[[str], dict[str, Any] | None] | None,
                            temperature: float, max_tokens: int, shrink: Sequence[str]) -> Reply:
        """One answer; with `response_format` (mode name -> format), in the first format the server takes."""
        while True:
            with self._lock:
                mode = self._json_mode
            fmt = response_format(JSON_MODES[mode]) if response_format is not None else None
            try:
                return self._create(conversation, temperature=temperature, max_tokens=max_tokens,
                                    response_format=fmt, shrink=shrink)
            except _FormatRejected as refused:
                self._fall_back(mode, str(refused))

    def _fall_back(self, mode: int, detail: str) -> None:
        """Past JSON_MODES[mode] for the rest of this client's run: the next question goes straight to what works."""
        with self._lock:
            if self._json_mode != mode:  # another thread moved on already
                return
            if mode + 1 >= len(JSON_MODES):  # plain instructions send no format: nothing left to refuse
                raise AssertionError("a request without response_format was refused as one")
            self._json_mode = mode + 1
        self._log(f"LLM server at {self.base_url} refused response_format {JSON_MODES[mode]} ({one_line(detail, 160)}); "
                  f"structured answers use {_MODE_WORDS[JSON_MODES[mode + 1]]} from now on")

    def complete_text(self, prompt: str, *, system: str | None = None, validate: Validator | None = None,
                      temperature: float = 0.7, max_tokens: int | None = None, shrink: Sequence[str] = ()) -> str:
        """A non-empty text answer that passes `validate` (which raises ValueError with a reason).

        `max_tokens`: what the answer itself may take (default DEFAULT_TEXT_TOKENS, a paragraph);
        `shrink`: what the user can lower when the prompt overflows the model's context, e.g.
        "lower SFX_BATCH_SIZE (segments per question)".
        """
        return self._ask(_messages(system, prompt), lambda reply: text_answer(reply, validate),
                         temperature=temperature, answer_tokens=max_tokens or DEFAULT_TEXT_TOKENS, shrink=shrink,
                         correction="Answer again, with only the answer itself.")

    def complete_json(self, prompt: str, schema: dict[str, Any], *, system: str | None = None, name: str = "answer",
                      validate: Validator | None = None, temperature: float = 0.2,
                      max_tokens: int | None = None, shrink: Sequence[str] = (),
                      images: Sequence[str | Path] = ()) -> Any:
        """A JSON value valid against `schema` that also passes `validate`, parsed.

        Asks with `response_format` json_schema; a server that refuses it gets json_object, then
        plain instructions (the schema is always in the system message too, so every server
        knows the shape). The answer's budget is `max_tokens`, else what the longest document
        the schema allows takes. `images` (a vision model's question, e.g. the identity judge's)
        follow the prompt, in order, as data URL parts.
        """
        jsonschema.validators.validator_for(schema).check_schema(schema)  # a bad schema is our bug
        safe_name = re.sub(r"[^A-Za-z0-9_-]", "_", name or "answer")[:64] or "answer"
        instructions = ("Answer with one JSON document and nothing else (no prose, no code fence). "
                        f"It must match this JSON Schema:\n{json.dumps(schema, ensure_ascii=False)}")
        full_system = f"{system.rstrip()}\n\n{instructions}" if system else instructions

        def response_format(mode: str) -> dict[str, Any] | None:
            if mode == "json_schema":
                return {"type": "json_schema", "json_schema": {"name": safe_name, "schema": schema, "strict": True}}
            if mode == "json_object":
                return {"type": "json_object"}
            return None

        return self._ask(_messages(full_system, _with_images(prompt, images)),
                         lambda reply: json_answer(reply, schema, validate),
                         temperature=temperature, answer_tokens=max_tokens or json_budget(schema), shrink=shrink,
                         response_format=response_format,
                         correction="Reply with only one JSON document that matches the schema.")

    def describe_image(self, prompt: str, image_path: str | Path, *, system: str | None = None,
                       validate: Validator | None = None, temperature: float = 0.4,
                       max_tokens: int | None = None) -> str:
        """A text answer about one image (sent as a base64 data URL part); needs a vision model."""
        return self._ask(_messages(system, _with_images(prompt, [image_path])),
                         lambda reply: text_answer(reply, validate),
                         temperature=temperature, answer_tokens=max_tokens or DEFAULT_TEXT_TOKENS,
                         correction="Answer again about the same image, with only the answer itself.")


def _same_model(asked: str, answered: str) -> bool:
    """Whether an answer's `model` is the model asked for: the same id, or it with a date or `:latest` appended
    (OpenAI answers `gpt-4o` as `gpt-4o-2024-08-06`, Ollama `llama3` as `llama3:latest`)."""
    a, b = asked.strip().lower(), answered.strip().lower()
    if a == b:
        return True
    rest = b[len(a):] if b.startswith(a) else None
    return rest is not None and re.fullmatch(r"(-\d{4}-\d{2}-\d{2}|:latest)", rest) is not None


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


def _with_images(prompt: str, images: Sequence[str | Path]) -> str | list[dict[str, Any]]:
    """The user message's content: the prompt alone, or it followed by each image as a data URL part."""
    if not images:
        return prompt
    urls = [image_data_url(path) for path in images]
    return [{"type": "text", "text": prompt}] + [{"type": "image_url", "image_url": {"url": url}} for url in urls]


def _messages(system: str | None, prompt: str | list[dict[str, Any]]) -> list[Message]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
