"""The limits of a local model's server: what an answer may cost, and how a server says a limit was hit.

Why this module exists: the OpenAI-compatible servers word the same few facts differently, and
the client must tell them from a crash to act right (a crash is retried, these are not):
- A refused response format is no failure: the client moves down json_schema -> json_object ->
  plain instructions at once. llama-cpp-python's server refuses json_schema with a 500 whose body
  is its request validation ("Input should be 'text' or 'json_object'"); FastAPI-style servers
  answer 422 with the same `detail`; OpenAI-style ones 400 naming `response_format`.
- A context overflow is deterministic (the same request overflows again), so it is told in one
  sentence with its numbers, never retried. OpenAI, vLLM and llama-cpp-python: 400
  `context_length_exceeded`, "This model's maximum context length is M tokens. However, you
  requested N tokens (P in the messages, C in the completion)"; llama-server: 400
  `exceed_context_size_error` with `n_prompt_tokens`/`n_ctx`, or a 500 "Context size has been
  exceeded." when the context fills up mid-answer (older builds log "failed to find a memory
  slot"); LM Studio: "... the model is loaded with context length of only M tokens".
- Every question carries a `max_tokens` budget: without one a rambling model writes until its
  context is full, which past LLM_TIMEOUT looks like a hung server and is sent again. The budget
  of a JSON answer comes from its schema (the longest document it allows), a text answer's from
  its caller; what a retry echoes back to the model is cut to fit the same budget.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_TEXT_TOKENS = 400  # a text answer whose caller named no budget: a paragraph
MAX_ANSWER_TOKENS = 8192
_STRING_CHARS = 300  # a string without maxLength, as a model writes one
_ARRAY_ITEMS = 8  # an array without maxItems
_ECHO_CHARS = 2000  # at most this much of a bad answer goes back to the model

_FORMAT_WORDS = ("response_format", "json_schema", "json_object")
_OVERFLOW_WORDS = (
    "context_length_exceeded", "exceed_context_size_error", "maximum context length", "context size has been exceeded",
    "exceeds the available context size", "context length of only", "exceed context window",
    "failed to find a memory slot", "failed to find kv cache slot", "failed to find a kv cache slot",
    "kv cache is full", "input prompt is too big compared to kv size",
    # llama-cpp-python's server, when the prompt and answer outgrow its KV cache mid-answer (llama.h:
    # 1 = "could not find a KV slot for the batch"); seen from its server with a 1024-token context.
    "llama_decode returned 1",
)


def error_text(exc: Any) -> str:
    """Everything a server said in an HTTP error (message, body, raw text), lower-cased, for matching."""
    parts = [str(getattr(exc, "message", "") or "")]
    body = getattr(exc, "body", None)
    if body is not None:
        parts.append(body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str))
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            parts.append(response.text)
        except Exception:  # a streamed or closed body: the parts above are enough  # noqa: BLE001
            pass
    return " ".join(parts).lower()


def format_refused(status: int, text: str) -> bool:
    """Whether an HTTP error refuses the response format we sent (400, 422 or 5xx naming it or its allowed types)."""
    if not (status in (400, 422) or status >= 500):
        return False
    return any(word in text for word in _FORMAT_WORDS)


@dataclass(frozen=True)
class Overflow:
    """A context overflow, with what the server told of it (None where it told nothing)."""

    prompt: int | None  # tokens of the messages
    completion: int | None  # tokens the request allowed for the answer
    requested: int | None  # prompt + completion, when only the sum is known
    context: int | None  # the model's context length

    def sentence(self, model: str, shrink: list[str]) -> str:
        """The one sentence for the user; `shrink` names what else makes the question smaller."""
        if self.prompt and self.context and self.completion and self.prompt < self.context:
            facts = (f"the prompt was {self.prompt} tokens and {self.completion} more were allowed for the answer, "
                     f"the model's context is {self.context}")
        elif self.prompt and self.context:
            facts = f"the prompt was {self.prompt} tokens, the model's context is {self.context}"
        elif self.requested and self.context:
            facts = f"the prompt and its answer needed {self.requested} tokens, the model's context is {self.context}"
        elif self.context:
            facts = f"the model's context of {self.context} tokens filled up"
        else:
            facts = "the model's context filled up while it read the question or answered"
        remedies = ["load the model with a larger context (LM Studio: Context Length when loading it; llama.cpp: -c)",
                    *shrink]
        remedy = ", ".join(remedies[:-1]) + " or " + remedies[-1] if len(remedies) > 1 else remedies[0]
        return f"The question did not fit the context of model {model}: {facts}; {remedy}, then run again."


def _number(pattern: str, text: str) -> int | None:
    found = re.search(pattern, text)
    return int(found.group(1)) if found and found.group(1).isdigit() else None


def context_overflow(text: str, body: Any = None) -> Overflow | None:
    """The overflow an HTTP error tells of (see the module docstring for the servers' words), or None."""
    if not any(word in text for word in _OVERFLOW_WORDS):
        return None
    fields = body if isinstance(body, dict) else {}
    prompt = fields.get("n_prompt_tokens") if isinstance(fields.get("n_prompt_tokens"), int) else None
    context = fields.get("n_ctx") if isinstance(fields.get("n_ctx"), int) else None
    split = re.search(r"\((\d+) in the messages, (\d+|none) in the completion\)", text)
    if split:
        prompt = int(split.group(1))
        completion = int(split.group(2)) if split.group(2).isdigit() else None
    else:
        completion = None
    prompt = prompt or _number(r"keep the first (\d+) tokens", text) or _number(r"requested tokens \((\d+)\)", text)
    context = (context or _number(r"maximum context length is (\d+)", text)
               or _number(r"context length of only (\d+)", text) or _number(r"context window of (\d+)", text))
    requested = _number(r"you requested (\d+) tokens", text)
    return Overflow(prompt=prompt, completion=completion, requested=requested, context=context)


# ---------------------------------------------------------------- budgets

def json_budget(schema: dict[str, Any]) -> int:
    """Tokens the longest JSON document `schema` allows may take, with room for a model's layout.

    About three characters a token for English and JSON punctuation, half as much again for
    indentation and line breaks; bounded to [128, MAX_ANSWER_TOKENS].
    """
    chars = _chars(schema, schema, 0)
    return max(128, min(MAX_ANSWER_TOKENS, math.ceil(chars / 3 * 1.5) + 32))


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    for _ in range(16):
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#")):
            return node
        target: Any = root
        for part in [p for p in node["$ref"][1:].split("/") if p]:
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
        node = target
    return node


def _chars(node: Any, root: dict[str, Any], depth: int) -> int:
    """Characters of the longest value `node` allows (estimates where the schema sets no bound)."""
    node = _resolve(node, root)
    if depth > 8 or not isinstance(node, dict) or not node:
        return _STRING_CHARS
    if "const" in node:
        return len(json.dumps(node["const"]))
    if "enum" in node:
        return max((len(json.dumps(v)) for v in node["enum"]), default=4)
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(node.get(key), list) and node[key]:
            return max(_chars(option, root, depth + 1) for option in node[key])
    kind = node.get("type")
    if isinstance(kind, list):
        return max(_chars(dict(node, type=k), root, depth + 1) for k in kind) if kind else _STRING_CHARS
    if kind == "object" or "properties" in node:
        properties = node.get("properties") or {}
        return 2 + sum(len(name) + 4 + _chars(sub, root, depth + 1) for name, sub in properties.items())
    if kind == "array" or "items" in node:
        count = node.get("maxItems")
        if not isinstance(count, int):
            count = max(int(node.get("minItems", 0) or 0), _ARRAY_ITEMS)
        prefix = node.get("prefixItems") or []
        items = [prefix[i] if i < len(prefix) else node.get("items", {}) for i in range(count)]
        return 2 + sum(_chars(item, root, depth + 1) + 2 for item in items)
    if kind == "string":
        return 2 + int(node.get("maxLength", _STRING_CHARS))
    if kind in ("number", "integer"):
        return 12
    if kind == "boolean":
        return 5
    if kind == "null":
        return 4
    return _STRING_CHARS


def echo(answer: str, answer_tokens: int) -> str:
    """A bad answer as it goes back to the model on a retry: its head and tail, within the answer's budget.

    The model only needs to recognise what it wrote; a rambling answer echoed whole would push
    the retry out of the context the question fitted in.
    """
    limit = max(200, min(_ECHO_CHARS, answer_tokens * 3))
    answer = answer.strip()
    if len(answer) <= limit:
        return answer
    keep = (limit - 7) // 2
    return f"{answer[:keep].rstrip()} [...] {answer[-keep:].lstrip()}"
