"""A JSON value for a JSON Schema, deterministic in the prompt: what fake_llm.py answers with json_schema.

A real server constrains its sampling to the schema; the fake builds an instance directly, so
tests can assert on answers (same request, same answer).
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

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


