"""Start, adopt, free and stop the two GPU servers for one orchestrator run: ComfyUI
(common.services.comfyui.service) and an OpenAI-compatible LLM server (common.services.llm_server).

Why this exists: both servers compete for one GPU's memory, so the orchestrator keeps at most
the ones the next script needs (SPEC 6); the rules of adopting and freeing are in
common.services.server. The servers a run starts are recorded in output/tracking/services.json
(common.services.records): a server an earlier run left behind is this run's to use and stop,
and one this run has no use for (another engine, another port now) is stopped before the first
script runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from common.services.comfyui.interpreter import comfyui_python
from common.services.comfyui.service import ComfyUIService
from common.services.llm_server import LLMService
from common.services.records import ServerRecords, records_path
from common.services.processes import split_command
from common.services.say import Say, say_on_stderr


class ServiceManager:
    """Owns both services for one orchestrator run and keeps only the needed ones on the GPU."""

    def __init__(self, comfyui: ComfyUIService | None, llm: LLMService | None, *, say: Say | None = None,
                 leftovers: list[ComfyUIService | LLMService] | None = None) -> None:
        self.comfyui = comfyui
        self.llm = llm
        self.say = say or say_on_stderr
        self.leftovers = list(leftovers or [])  # earlier runs' servers this run does not use: to be stopped

    @classmethod
    def from_settings(
        cls, settings: Any, pipeline_dir: Path, *, use_comfyui: bool = True, use_llm: bool = True,
        say: Say | None = None,
    ) -> "ServiceManager":
        """Services per the settings; a service whose engine is offline is left out (None)."""
        say = say or say_on_stderr
        records = ServerRecords(records_path(pipeline_dir))

        def comfyui_at(url: str) -> ComfyUIService:
            extra = split_command(settings.COMFYUI_EXTRA_ARGS or "")
            python, why = comfyui_python(settings)
            return ComfyUIService(
                url, Path(settings.COMFYUI_DIR), python,
                Path(pipeline_dir) / "output" / "comfyui.log", extra,
                start_timeout=float(settings.SERVICE_START_TIMEOUT), stop_grace=float(settings.SERVICE_STOP_GRACE),
                say=say, records=records, python_reason=why,
            )

        def llm_at(url: str, model: str | None) -> LLMService:
            return LLMService(url, settings.LM_STUDIO_CMD, model, start_timeout=float(settings.SERVICE_START_TIMEOUT),
                              say=say, records=records)

        comfyui = None
        if use_comfyui:
            from common.services.comfyui.pool import server_urls

            # With several servers listed, the first is the one this machine may start; the
            # others (other GPUs, other machines) are the user's to run.
            comfyui = comfyui_at(server_urls(settings.COMFYUI_BASE_URL)[0])
        llm = llm_at(settings.LM_STUDIO_BASE_URL, settings.LM_STUDIO_MODEL) if use_llm else None
        used = {(s.kind, s.base_url) for s in (comfyui, llm) if s is not None}
        # Compared as the services spell their URLs (the LLM's normalised): a record is a leftover
        # only if it names another server than the ones this run uses.
        recorded = (comfyui_at(r.base_url) if r.kind == "comfyui" else llm_at(r.base_url, None)
                    for r in records.load() if r.kind in ("comfyui", "llm"))
        leftovers: list[ComfyUIService | LLMService] = [s for s in recorded if (s.kind, s.base_url) not in used]
        return cls(comfyui, llm, say=say, leftovers=leftovers)

    def _stop_leftovers(self) -> None:
        """Stop the servers earlier runs left that this run will not use (they hold GPU memory)."""
        leftovers, self.leftovers = self.leftovers, []
        for service in leftovers:
            try:
                service.release()
            except Exception as exc:  # the run does not need it: a failure here is told, never fatal
                self.say(f"services: could not stop the {service.name} an earlier run left at {service.base_url}: {exc}")

    def prepare_for(self, needs_comfyui: bool, needs_llm: bool, llm_model: str | None = None) -> None:
        """Release what the next script does not need first (GPU memory), then start what it does
        (`llm_model`: the model that script asks for, when not the LLM service's own)."""
        self._stop_leftovers()
        for service, needed in ((self.comfyui, needs_comfyui), (self.llm, needs_llm)):
            if service is not None and not needed:
                service.release()
        if self.comfyui is not None and needs_comfyui:
            self.comfyui.ensure_running()
        if self.llm is not None and needs_llm:
            self.llm.ensure_running(llm_model)

    def shutdown(self) -> None:
        """Stop what we started and free what we adopted; safe to call more than once."""
        self._stop_leftovers()
        services: list[ComfyUIService | LLMService] = [s for s in (self.comfyui, self.llm) if s is not None]
        for service in services:
            try:
                service.release()
            except Exception as exc:  # one failing service must not leave the other running
                self.say(f"services: could not stop {service.name}: {exc}")
            if isinstance(service, ComfyUIService):
                service.stop()  # reaps a child of ours that had already died

    def __enter__(self) -> "ServiceManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
