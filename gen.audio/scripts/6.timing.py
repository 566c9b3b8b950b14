"""gen.audio step 6: give every sound effect a realistic length and place inside its segment.

Reads input/3.timing.txt and writes input/4.sfx.txt: each effect between a lead and a
trailing Silence (a knock lasts about a second, an ambience its whole segment), consecutive
silences merged, and the durations adding up exactly to the audio's length. Lengths come from
the text engine (an LLM answers SFX_BATCH_SIZE effects per question, checked to fit their
segment and SFX_MAX_SECONDS; each batch checkpointed) or, offline, from rules.
"""
from __future__ import annotations

from common.audio import sfx_plan
from common.state.checkpoints import fingerprint
from common.audio.sfx_text import sfx_engine, sfx_input
from common.formats.timeline import write_timeline
from common.run.runner import Script, ScriptContext

script = Script(__file__, "time every sound effect of 3.timing.txt inside its segment -> 4.sfx.txt")
script.add_argument("--batch-size", type=int, setting="SFX_BATCH_SIZE", help="effects per LLM question (default 10)")


def main(ctx: ScriptContext) -> None:
    source, timing = sfx_input(ctx, "3.timing.txt", "the sound-effect list", "5.timeline.py",
                               "it writes one sound or Silence per segment.")
    slots = sfx_plan.effect_slots(timing)
    max_seconds = float(ctx.settings.SFX_MAX_SECONDS)
    ctx.say(f"{source.name}: {len(timing.entries)} segments, {len(slots)} sound effects, {timing.total():.1f} s")
    placed: dict[int, sfx_plan.EffectTiming] = {}
    if slots:
        engine, ident = sfx_engine(ctx, "text")
        ident = [*ident, max_seconds]
        groups = sfx_plan.batches(slots, ctx.settings.SFX_BATCH_SIZE)

        def key(group: list[sfx_plan.EffectSlot]) -> str:
            return f"timings_{group[0].index:05d}_{group[-1].index:05d}"

        def work(group: list[sfx_plan.EffectSlot]) -> tuple[tuple, dict]:
            timings = engine.effect_timings(group, max_seconds=max_seconds)
            return (), {"timings": [[t.index, t.start, t.seconds] for t in timings]}

        entries = ctx.each(
            groups, label="timings", key=key,
            fingerprint=lambda g: fingerprint(ident, [(s.index, s.seconds, s.description) for s in g]),
            work=work, preview=engine.preview,
        )
        ctx.checkpoints().retain_only([key(g) for g in groups])
        for group in groups:
            for index, start, seconds in entries[key(group)].data["timings"]:
                placed[index] = sfx_plan.EffectTiming(index, start, seconds)
    plan = sfx_plan.plan_effects(timing, placed, max_seconds)
    target = write_timeline(ctx.input_dir / "4.sfx.txt", plan)
    effects = [e for e in plan.entries if not sfx_plan.is_silence(e.text)]
    ctx.say(f"wrote {target.name}: {len(plan.entries)} lines, {len(effects)} effects lasting "
            f"{sum(e.seconds for e in effects):.1f} s of {plan.total():.1f} s")


if __name__ == "__main__":
    script.run(main)
