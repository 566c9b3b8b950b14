"""The sound-effect questions of 5.timeline.py and 6.timing.py, asked of the run's text engine.

The questions, their schemas and the checks of the answers are common.audio.sfx_plan's; the
offline engine names only what the markup says and common.offline.sfx can make.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from common.audio import sfx_plan
from common.audio.sfx_plan import EffectSlot, EffectTiming, SfxSegment
from common.config.paths import require_file
from common.engines.choice import engines_from_env
from common.engines.registry import get_engine
from common.engines.text import LLMText, OfflineText
from common.formats.timeline import Timeline, read_timeline
from common.offline import sfx
from common.run.errors import InputError


@dataclass
class LLMSoundText(LLMText):
    def sfx_identity(self) -> dict[str, object]:
        """What besides identity() decides the sound answers."""
        return {"sfx_prompts": sfx_plan.PROMPT_VERSION}

    def _ask(self, name: str, question: tuple[str, str, dict[str, Any]], read: Callable[[Any], Any]) -> Any:
        """The answer `read`; a `read` that fails is told to the model, which answers again."""
        prompt, system, schema = question
        return read(self.client.complete_json(prompt, schema, system=system, name=name, validate=read,
                                              shrink=["lower SFX_BATCH_SIZE (segments or effects per question)"]))

    def sound_effects(self, segments: Sequence[SfxSegment], *, names: Sequence[str] = ()) -> list[str]:
        """One short sound description or "Silence" per transcript segment, in order."""
        return self._ask("sound_effects", sfx_plan.sound_question(segments),
                         lambda value: sfx_plan.read_sound_answer(value, segments, names))

    def effect_timings(self, slots: Sequence[EffectSlot], *, max_seconds: float) -> list[EffectTiming]:
        """Each effect's start and length inside its segment, in order."""
        return self._ask("effect_timings", sfx_plan.timing_question(slots, max_seconds),
                         lambda value: sfx_plan.read_timing_answer(value, slots, max_seconds))


@dataclass
class OfflineSoundText(OfflineText):
    def sfx_identity(self) -> dict[str, object]:
        return {"sfx_vocabulary": sfx.VERSION, "sfx_rules": sfx_plan.RULES_VERSION}

    def sound_effects(self, segments: Sequence[SfxSegment], *, names: Sequence[str] = ()) -> list[str]:
        """Only what the scene markup names and the offline sound engine can make; else Silence."""
        return [sfx.describe(found) if (found := sfx.match_sounds(s.scene or "")) else sfx_plan.SILENCE
                for s in segments]

    def effect_timings(self, slots: Sequence[EffectSlot], *, max_seconds: float) -> list[EffectTiming]:
        return [sfx_plan.rule_timing(slot, max_seconds) for slot in slots]


def sfx_engine(ctx: Any, kind: str) -> tuple[Any, Any]:
    """5-7.py's opening: say which engines run, and return the `kind` engine ("text" asks the sound
    questions) with the identity its checkpoints are fingerprinted with."""
    ctx.say(engines_from_env(ctx.settings).reason)
    engine = get_engine(kind, ctx.settings, ctx.pipeline_dir)
    if kind != "text":
        return engine, engine.identity()
    engine = engine.become(LLMSoundText, OfflineSoundText)
    return engine, [engine.identity(), engine.sfx_identity()]


def sfx_input(ctx: Any, name: str, what: str, maker: str, hint: str, unit: str = "segments") -> tuple[Path, Timeline]:
    """input/`name`, which `maker` writes, read; missing, empty or without a line, it is `maker`'s to redo."""
    source = require_file(ctx.input_dir / name, what, f"run {maker} first: {hint}")
    timeline = read_timeline(source)
    if not timeline.entries:
        raise InputError(f"{source} has no {unit}; run {maker} again to rewrite it.")
    return source, timeline
