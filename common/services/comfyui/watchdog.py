"""When a running ComfyUI job counts as stalled, judged from what its `/ws` socket says.

Why two limits: in ComfyUI only samplers report `progress` (from their step callback, which is
also the only place an interrupt lands inside a node). Model loads, VAE decodes of a long clip,
video saves and TTS nodes without a progress bar say nothing while they work, however long
that is. So silence means "stuck" only for a node that was reporting progress and stopped
(COMFYUI_STALL_TIMEOUT, minutes); a node that never reported gets its own, much longer limit
(COMFYUI_SILENT_NODE_TIMEOUT), or none.
"""
from __future__ import annotations

from dataclasses import dataclass

from common.services.comfyui.messages import News


@dataclass(frozen=True)
class Stall:
    """Why the watchdog gave up on a job: which limit (a setting) ran out, in which node."""

    setting: str
    seconds: float
    node: str | None
    node_type: str | None

    def what(self) -> str:
        """What the job did, as part of a sentence: "showed no progress for 600 s"."""
        if self.setting == "COMFYUI_STALL_TIMEOUT":
            return f"showed no progress for {self.seconds:g} s"
        where = f"node {self.node} ({self.node_type})" if self.node_type else f"node {self.node}" if self.node else "a node"
        return f"spent {self.seconds:g} s in {where} without a word"

    def advice(self) -> str:
        """What the user can do about it, naming the setting to raise."""
        if self.setting == "COMFYUI_STALL_TIMEOUT":
            return "check ComfyUI's console for a stuck node, or raise COMFYUI_STALL_TIMEOUT for slow steps"
        return ("raise COMFYUI_SILENT_NODE_TIMEOUT for slow nodes (model loads, long decodes, video saves, speech), "
                "or check ComfyUI's console for a stuck node")


class Watchdog:
    """The clock of one job: it runs only while the socket shows the job running (a job waiting
    behind others is not stalled) and restarts at every message about it."""

    def __init__(self, stall_timeout: float | None, silent_timeout: float | None,
                 node_types: dict[str, str] | None = None) -> None:
        self.stall_timeout = stall_timeout or None     # None or 0: off
        self.silent_timeout = silent_timeout or None
        self.node_types = node_types or {}             # node id -> class, to name the node
        self.node: str | None = None                   # the node running now
        self.reported = False                          # it has sent progress
        self.last_sign: float | None = None            # when the socket last said something about the job

    def saw(self, news: News, now: float) -> None:
        """Take in one message about the job."""
        if news.kind == "end":
            self.off()
            return
        if news.kind == "node":
            self.node, self.reported = news.node, False
        elif news.kind == "progress" and (news.node is None or self.node is None or news.node == self.node):
            self.node = news.node or self.node
            self.reported = True
        self.last_sign = now

    def off(self) -> None:
        """Nothing to watch any more: the job ended, or the socket failed (no news to judge by)."""
        self.last_sign = None

    def _limit(self) -> tuple[float | None, str]:
        if self.reported:
            return self.stall_timeout, "COMFYUI_STALL_TIMEOUT"
        return self.silent_timeout, "COMFYUI_SILENT_NODE_TIMEOUT"

    def due(self, now: float) -> float | None:
        """Seconds until the running node overruns its limit (None: no limit applies now), so that
        a request to a server that does not answer cannot hold the watchdog up for long."""
        limit, _ = self._limit()
        if self.last_sign is None or limit is None:
            return None
        return max(0.0, self.last_sign + limit - now)

    def stalled(self, now: float) -> Stall | None:
        """The limit the running node has overrun, or None while it is within its limit."""
        limit, setting = self._limit()
        if self.last_sign is None or limit is None or now - self.last_sign <= limit:
            return None
        return Stall(setting, limit, self.node, self.node_types.get(self.node or ""))


__all__ = ["Stall", "Watchdog"]
