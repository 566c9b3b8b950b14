"""Where the LLM server's OpenAI API is, and which model `auto` names: one answer for every caller.

Why a module of its own: the client (common.services.llm), the service manager
(common.services.llm_server, lifecycle), the engine choice and the preflight all look at the
same server. When each built its own URL, a base URL given without `/v1` reached the client at
`/v1/models` but the others at `/models`, which answers 404: the run went offline saying the
server was not answering while it was up, and the orchestrator tried to start LM Studio on a
port already taken. Likewise `auto` must name the same model in the preflight as in the
questions. Light on purpose (no openai, no requests): the engine choice imports it every run.
"""
from __future__ import annotations

from typing import Sequence
from urllib.parse import urlsplit, urlunsplit

DEFAULT_BASE_URL = "http://127.0.0.1:1234/v1"
AUTO_MODELS = ("", "auto")


def normalize_base_url(base_url: str | None) -> str:
    """The server's OpenAI API root, without a trailing slash; a bare `http://host:port` gets `/v1`.

    `/v1` is where LM Studio, Ollama, llama.cpp and vLLM all serve the OpenAI API, so a URL
    given without a path means it; a URL with another path is the user's and kept as given.
    """
    url = (base_url or "").strip().rstrip("/") or DEFAULT_BASE_URL
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1")
    return urlunsplit(parts)


def models_url(base_url: str | None) -> str:
    """`GET` here lists the models: the one probe that says an OpenAI-compatible server is up."""
    return f"{normalize_base_url(base_url)}/models"


def is_auto(model: str | None) -> bool:
    """Whether LM_STUDIO_MODEL (or a step's own model setting) leaves the choice to the server."""
    return (model or "").strip().lower() in AUTO_MODELS


def is_embedding_model(model_id: str) -> bool:
    """LM Studio lists embedding models beside the chat ones (text-embedding-nomic-...): they cannot chat."""
    return "embed" in model_id.lower()


def choose_auto_model(offered: Sequence[str]) -> str | None:
    """The model `auto` means: the first chat model the server lists, in its order; None if it lists none."""
    return next((m for m in offered if not is_embedding_model(m)), None)
