"""Reading a local model's reply: the answer in it, the JSON in it, and why it cannot be used.

Local models answer badly in predictable ways (prose around the JSON, a fenced block, `<think>`
reasoning, an answer cut off at the token limit, nothing at all). Every reason an answer cannot
be used is an InvalidAnswer whose message is told to the model (which answers again) and, at the
end, to the user.

Reasoning models, the rule used here (`answer_text`):
1. `<think>...</think>` blocks (also `<thinking>`/`<reasoning>`) are removed from `content`;
   a closing tag with no opening one (chat templates that put `<think>` in the prompt) drops
   everything before it; an opening tag never closed (cut off while thinking) drops everything
   after it. gpt-oss style `<|channel|>final<|message|>` keeps what follows it.
2. If `content` still holds text, that is the answer; `reasoning_content` is ignored.
3. Else, if the server put everything in `reasoning_content` (LM Studio / DeepSeek field):
   what follows its last `</think>` is the answer; failing that, unless the reply was cut off
   at the token limit (finish_reason "length": an unfinished thought is not an answer), its
   last paragraph is. For JSON, the last JSON document in the reasoning is used instead.
Whatever comes out still has to pass validation, so a wrong guess costs a retry, not a bad file.

Control characters (a random-weight or broken model writes NULs, bells, terminal escapes) are
removed from a reply before anything else reads it (`clean_controls`); line breaks and tabs stay,
and JSON is read leniently about raw line breaks inside its strings, as models write them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import jsonschema

Validator = Callable[[Any], None]

_THINK_TAGS = "think|thinking|reasoning"
_PAIRED = re.compile(rf"<({_THINK_TAGS})>.*?</\1\s*>", re.S | re.I)
_CLOSE = re.compile(rf"</(?:{_THINK_TAGS})\s*>", re.I)
_OPEN = re.compile(rf"<(?:{_THINK_TAGS})>", re.I)
_FINAL_CHANNEL = "<|channel|>final<|message|>"
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.S)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LENIENT = json.JSONDecoder(strict=False)  # raw line breaks and tabs inside strings are read, not refused


class InvalidAnswer(ValueError):
    """An answer that cannot be used; its message is the reason told to the model and the user."""


@dataclass(frozen=True)
class Reply:
    """One chat completion as the server sent it, before any interpretation."""

    content: str
    reasoning: str
    finish_reason: str | None


def clean_controls(text: str) -> str:
    """`text` without terminal escapes and control characters other than line breaks and tabs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", _ANSI.sub("", text))


def strip_think(text: str) -> str:
    """Remove reasoning blocks from a model's content (rule 1 of the module docstring)."""
    if _FINAL_CHANNEL in text:
        text = text.rsplit(_FINAL_CHANNEL, 1)[1]
        text = text.split("<|end|>", 1)[0].split("<|return|>", 1)[0]
    text = _PAIRED.sub("", text)
    closes = list(_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opened = _OPEN.search(text)
    if opened:
        text = text[: opened.start()]
    return text.strip()


def answer_text(reply: Reply) -> str:
    """The answer in a reply, by the rule of the module docstring ("" when there is none)."""
    content = strip_think(reply.content)
    if content:
        return content
    reasoning = reply.reasoning.strip()
    if not reasoning:
        return ""
    closes = list(_CLOSE.finditer(reasoning))
    if closes:
        return strip_think(reasoning[closes[-1].end():])
    if reply.finish_reason == "length":
        return ""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", reasoning) if p.strip()]
    return paragraphs[-1] if paragraphs else ""


def json_candidates(text: str, *, last_first: bool = False) -> Iterator[Any]:
    """Every JSON document found in `text`: the whole text, fenced blocks, then embedded values.

    Models wrap JSON in prose or ```json fences; scanning for each `{`/`[` with raw_decode finds
    the document without guessing where the prose ends. Embedded values are objects or arrays
    only, so "Scene 1" never yields the number 1.
    """
    found: list[Any] = []
    stripped = text.strip()
    if stripped:
        try:
            found.append(_LENIENT.decode(stripped))
        except ValueError:
            pass
    for match in _FENCE.finditer(text):
        if match.group(1).lower() not in ("", "json", "jsonc", "json5", "javascript", "js"):
            continue
        try:
            found.append(_LENIENT.decode(match.group(2)))
        except ValueError:
            pass
    decoder = _LENIENT
    position, starts = 0, 0
    while starts < 500:
        hits = [i for i in (text.find("{", position), text.find("[", position)) if i >= 0]
        if not hits:
            break
        start = min(hits)
        starts += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        found.append(value)
        position = end
    seen: set[str] = set()
    for value in (reversed(found) if last_first else found):
        key = json.dumps(value, sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield value


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def schema_problem(value: Any, schema: dict[str, Any]) -> str | None:
    """The most relevant reason `value` does not fit `schema`, in one line, or None if it fits."""
    validator_cls = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return one_line(f"{'at ' + where + ': ' if where else ''}{error.message}", 240)


def text_answer(reply: Reply, validate: Validator | None) -> str:
    """The text answer of a reply, or InvalidAnswer: empty, cut off at the token limit, or refused by `validate`."""
    text = answer_text(reply)
    if not text:
        raise InvalidAnswer(empty_reason(reply))
    if reply.finish_reason == "length":  # half a sentence reads as a whole one: never keep it
        raise InvalidAnswer("the answer was cut off at the token limit before it was complete")
    run_validator(validate, text)
    return text


def empty_reason(reply: Reply) -> str:
    if reply.finish_reason == "length":
        return "the answer was cut off at the token limit before any answer (only reasoning) was written"
    if reply.content.strip() or reply.reasoning.strip():
        return "the answer held only reasoning, no final answer"
    return "the answer was empty"


def run_validator(validate: Validator | None, value: Any) -> None:
    """Run the caller's check; its ValueError is a reason to retry, anything else is a bug."""
    if validate is None:
        return
    try:
        validate(value)
    except InvalidAnswer:
        raise
    except ValueError as exc:
        raise InvalidAnswer(one_line(str(exc) or "the answer failed the caller's check", 240)) from exc


def json_answer(reply: Reply, schema: dict[str, Any], validate: Validator | None) -> Any:
    """The first JSON value in a reply that fits `schema` and passes `validate`, or InvalidAnswer saying why not."""
    content = strip_think(reply.content)
    if content:
        sources = [(content, False)]
    elif reply.reasoning.strip():
        sources = [(answer_text(reply), False), (reply.reasoning, True)] if reply.finish_reason != "length" else []
    else:
        sources = []
    first_problem: str | None = None
    parsed_any = False
    for text, last_first in sources:
        for value in json_candidates(text, last_first=last_first):
            parsed_any = True
            problem = schema_problem(value, schema)
            if problem is None:
                try:
                    run_validator(validate, value)
                    return value
                except InvalidAnswer as exc:
                    problem = str(exc)
            first_problem = first_problem or problem
    if not content and not parsed_any:
        raise InvalidAnswer(empty_reason(reply))
    if reply.finish_reason == "length":
        if content.lstrip()[:1] in ("{", "[") or "```" in content:
            raise InvalidAnswer("the JSON was cut off at the token limit before it was complete")
        raise InvalidAnswer("the answer was cut off at the token limit before it held any JSON")
    if first_problem:
        raise InvalidAnswer(f"the JSON does not fit: {first_problem}")
    if content.lstrip()[:1] in ("{", "[") or "```" in content:
        raise InvalidAnswer("the JSON is malformed or incomplete")
    raise InvalidAnswer("the answer is prose, not JSON")
