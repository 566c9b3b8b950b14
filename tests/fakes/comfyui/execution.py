"""Running a queued job as ComfyUI's executor does: message order, caching, progress, interrupts,
and the failure modes (--fail-mode, --hold, --node-seconds)."""
from __future__ import annotations

import asyncio
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from .graph import _order, _signature
from .latents import run_node
from .media import load_audio
from .outputs import _evil_names, _run_output
from .state import Interrupted, Job, NodeFailure, State, _record, _send, _status
from .validation import _type_name


def _is_sampler(cls: str) -> bool:
    """KSampler, KSamplerAdvanced, SamplerCustom(Advanced): the nodes whose step callback sends
    `progress` and lets an interrupt in (KSamplerSelect only picks a sampler by name)."""
    return "Sampler" in cls and cls != "KSamplerSelect"


def _heavy_node(prompt: dict[str, Any], to_run: list[str]) -> str | None:
    """The node that takes the job's --job-seconds: the sampler if any, else the TTS, else the last."""
    for node_id in to_run:
        if _is_sampler(prompt[node_id]["class_type"]):
            return node_id
    for node_id in to_run:
        if "num_speakers" in prompt[node_id]["inputs"]:
            return node_id
    return to_run[-1] if to_run else None


def _node_seconds(state: State, cls: str, heavy: bool) -> float:
    """How long a node works: --node-seconds for its class, else --job-seconds for the heavy node."""
    for entry in state.args.node_seconds:
        name, _, seconds = entry.partition("=")
        if name == cls:
            return float(seconds)
    return state.args.job_seconds if heavy else 0.0


def _run_node(state: State, prompt: dict[str, Any], node_id: str) -> None:
    """What a node does at run time where it can fail as the real one does: LoadAudio decodes its file
    (PyAV's own exception for one that is not audio), LoadLatent reads its file's header, LatentConcat
    joins sizes. As in ComfyUI the exception message ends in a newline (execution.py: "{ex}\n{tips}")."""
    node = prompt[node_id]
    if node["class_type"] == "LoadAudio":
        try:
            load_audio(state.input_dir / str(node["inputs"].get("audio")))
        except Exception as ex:  # whatever av or the decoding raises, reported under its own type
            raise NodeFailure(node_id, _type_name(ex), f"{ex}\n") from None
        return
    try:
        run_node(prompt, node_id, state.input_dir)
    except NodeFailure as failure:
        failure.node_id = failure.node_id or node_id
        raise


def _exit_now(signum: int, frame: Any) -> None:
    print("\nStopped server", flush=True)
    os._exit(0)


def _freeze(state: State) -> None:
    """--fail-mode stuck: the whole process stops answering, as when a wedged driver call holds
    Python's GIL: no HTTP answer, no socket message (the event loop is blocked on purpose), until
    the --stuck-until file appears, or for good. SIGINT/SIGTERM still end the process."""
    until = Path(state.args.stuck_until) if state.args.stuck_until else None
    _record(state, {"event": "frozen"})
    signals = [signal.SIGINT] + ([signal.SIGTERM] if os.name != "nt" else [])
    previous = {sig: signal.signal(sig, _exit_now) for sig in signals}
    try:
        while until is None or not until.exists():
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _record(state, {"event": "thawed"})


async def _execute(state: State, job: Job) -> None:
    prompt, pid, sid = job.prompt, job.prompt_id, job.client_id
    messages: list[list[Any]] = []
    state.interrupt = False

    async def add_message(event: str, data: dict[str, Any], broadcast: bool = False) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        messages.append([event, data])
        if sid is not None or broadcast:
            await _send(state, event, data, sid)

    await add_message("execution_start", {"prompt_id": pid})
    order = _order(prompt, job.outputs)
    memo: dict[str, str] = {}
    sigs = {n: _signature(prompt, n, state.input_dir, memo) for n in order}
    cached = [n for n in order if sigs[n] in state.cache]
    await add_message("execution_cached", {"nodes": cached, "prompt_id": pid})
    to_run = [n for n in order if n not in cached]
    # What reaches ComfyUI's execute(): the nodes to run, and every output node even when cached
    # (ExecutionList.add_node stops only at cached inputs); a cached output node is not run but
    # still reported with `executed`, its cached ui, and then counted as finished.
    staged = [n for n in order if n not in cached or n in job.outputs]
    heavy = _heavy_node(prompt, to_run)
    fail = state.args.fail_mode if (state.args.fail_mode != "none" and to_run and state.jobs_started < state.args.fail_jobs) else "none"
    state.jobs_started += 1
    outputs_ui: dict[str, Any] = {}
    executed: list[str] = list(cached)
    status, error = "success", None
    current: str | None = None
    progress: dict[str, dict[str, Any]] = {}  # comfy_execution/progress.py's registry: only nodes touched

    async def node_state(node_id: str, phase: str, value: float | None = None, maximum: float | None = None) -> None:
        """ProgressRegistry start/update/finish: update one node, then send every node it knows
        (never a pending one) to the job's client (to every socket when it has none)."""
        entry = progress.setdefault(node_id, {"value": 0, "max": 1, "state": "pending"})
        if phase == "running" and value is None:
            entry.update(value=0.0, max=1.0)
        elif phase == "running":
            entry.update(value=value, max=maximum)
        else:
            entry["value"] = entry["max"]
        entry["state"] = phase
        await _send(state, "progress_state", {"prompt_id": pid, "nodes": {
            n: {**e, "node_id": n, "prompt_id": pid, "display_node_id": n, "parent_node_id": None, "real_node_id": n}
            for n, e in progress.items()}}, sid)

    try:
        for node_id in staged:
            current = node_id
            if node_id in cached:
                ui = state.cache[sigs[node_id]]
                if sid is not None:
                    await _send(state, "executed", {"node": node_id, "display_node": node_id,
                                                    "output": ui or None, "prompt_id": pid}, sid)
                if ui:
                    outputs_ui[node_id] = ui
                await node_state(node_id, "finished")
                continue
            if state.interrupt:
                raise Interrupted(node_id)
            await node_state(node_id, "running")
            if sid is not None:
                state.last_node = node_id
                await _send(state, "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid}, sid)
            cls = prompt[node_id]["class_type"]
            sampler = _is_sampler(cls)
            seconds = _node_seconds(state, cls, node_id == heavy)
            if node_id == heavy:
                hold = Path(state.args.hold) if state.args.hold else None
                while hold is not None and hold.exists():  # --hold: a test keeps the job inside this node
                    if sampler and state.interrupt:
                        raise Interrupted(node_id)
                    await asyncio.sleep(0.02)
            if sampler:
                # Only a sampler's step callback sends `progress`, and only there does an interrupt land mid-node.
                inputs = prompt[node_id]["inputs"]
                steps = inputs.get("steps") if isinstance(inputs.get("steps"), int) else 10
                ticks = max(1, min(int(steps), 20))
                for tick in range(1, ticks + 1):
                    await asyncio.sleep(seconds / ticks)
                    if state.interrupt:
                        raise Interrupted(node_id)
                    await node_state(node_id, "running", tick, ticks)  # the progress hook: state first, then progress
                    await _send(state, "progress", {"value": tick, "max": ticks, "prompt_id": pid, "node": node_id}, sid)
            elif seconds:
                await asyncio.sleep(seconds)  # a silent node (load, decode, save, TTS): no message, no interrupt
            if node_id == heavy:
                if fail == "hang":  # no more progress; a sampler's next step callback still sees an interrupt
                    while not (sampler and state.interrupt):
                        await asyncio.sleep(0.02)
                    raise Interrupted(node_id)
                if fail == "stuck":
                    _freeze(state)
                    if sampler and state.interrupt:
                        raise Interrupted(node_id)
                if fail == "execution_error":
                    raise NodeFailure(node_id, "RuntimeError",
                                      "Fake failure requested with --fail-mode execution_error")
                if fail == "oom":
                    raise NodeFailure(node_id, "torch.OutOfMemoryError",
                                      "Allocation on device \nThis error means you ran out of memory on your GPU.\n\n"
                                      "TIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.")
            await asyncio.to_thread(_run_node, state, prompt, node_id)
            if node_id in job.outputs:
                try:
                    ui = await asyncio.to_thread(_run_output, state, prompt, node_id)
                except NodeFailure as failure:
                    failure.node_id = failure.node_id or node_id
                    raise
                if state.args.evil_filenames:
                    ui = _evil_names(state, ui)
                if ui:  # as ComfyUI: an output node with no ui is neither reported nor in the history
                    outputs_ui[node_id] = ui
                    if sid is not None:
                        await _send(state, "executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": pid}, sid)
            await node_state(node_id, "finished")
            executed.append(node_id)
        await add_message("execution_success", {"prompt_id": pid})
    except NodeFailure as failure:
        status = "error"
        node_id = failure.node_id or current or ""
        error = {"prompt_id": pid, "node_id": node_id, "node_type": prompt.get(node_id, {}).get("class_type", ""),
                 "executed": executed, "exception_message": failure.message, "exception_type": failure.exc_type,
                 "traceback": [f'  File "fake_comfyui.py", in {prompt.get(node_id, {}).get("class_type", "node")}\n'],
                 "current_inputs": {}, "current_outputs": {}}
        await add_message("execution_error", error)
    except Interrupted as stop:
        status = "interrupted"
        node_id = stop.node_id or ""
        await add_message("execution_interrupted", {"prompt_id": pid, "node_id": node_id,
                                                    "node_type": prompt.get(node_id, {}).get("class_type", ""),
                                                    "executed": executed}, broadcast=True)
    # Classic caching keeps only what the latest prompt used.
    if status == "success":
        state.cache = {sigs[n]: outputs_ui.get(n) for n in order}
    else:
        state.cache = {sigs[n]: state.cache.get(sigs[n], outputs_ui.get(n)) for n in executed if n in sigs}
    state.last_node = None  # before the history entry, as in execute_async
    await asyncio.sleep(0.02)  # as in ComfyUI, history lands just after execution_success/error
    state.history[pid] = {
        "prompt": job.as_list(),
        "outputs": outputs_ui if status == "success" else {},
        "status": {"status_str": "success" if status == "success" else "error", "completed": status == "success",
                   "messages": messages},
        "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs_ui},
    }
    files = [item.get("filename") for ui in outputs_ui.values() for value in ui.values() if isinstance(value, list)
             for item in value if isinstance(item, dict)]
    _record(state, {"event": "job_done", "prompt_id": pid, "status": status, "cached": not to_run,
                    "outputs": files, "error": error and error["exception_message"]})
    if sid is not None:
        await _send(state, "executing", {"node": None, "prompt_id": pid}, sid)


async def _worker(state: State) -> None:
    while True:
        while not state.pending:
            state.wake.clear()
            await state.wake.wait()
        state.pending.sort(key=lambda j: j.number)
        job = state.pending.pop(0)
        state.running = job
        await _status(state)
        try:
            await _execute(state, job)
        except Exception:  # a bug in the fake: say so loudly but keep serving
            traceback.print_exc()
        state.running = None
        await _status(state)
