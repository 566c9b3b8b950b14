"""Text engines: the LLM (any OpenAI-compatible server) or the offline engine (the story's own words).

The run picks one backend; each domain then asks it its own questions through a small pair of
classes kept beside that domain (the story's summary and chapters in common.formats.story_text,
sound effects in common.audio.sfx_text, looks in common.pictures.looks_text, motion in
common.video.motion_text, YouTube text in common.publish.media_text): `engine.become(LLMx, Offlinex)`.
`identity()` is the backend's, so every domain's answers are fingerprinted the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

L = TypeVar("L", bound="LLMText")
O = TypeVar("O", bound="OfflineText")


class TextEngine(Protocol):
    name: str
    preview: bool

    def identity(self) -> dict[str, object]: ...

    def become(self, llm: type[L], offline: type[O]) -> L | O: ...


@dataclass
class LLMText:
    """Text through an OpenAI-compatible server; answers validated, retried by the client."""

    client: Any  # common.services.llm.LLMClient
    model: str
    name: str = "llm"
    preview: bool = False

    def identity(self) -> dict[str, object]:
        return {"engine": "llm", "model": self.model, "prompts": 1}

    def become(self, llm: type[L], offline: type[O]) -> L:
        return llm(self.client, self.model)


@dataclass
class OfflineText:
    """Model-free text from the story's own markup: quotes and arranges, never invents."""

    name: str = "offline"
    preview: bool = True

    def identity(self) -> dict[str, object]:
        return {"engine": "offline-text", "version": 4}

    def become(self, llm: type[L], offline: type[O]) -> O:
        return offline()
