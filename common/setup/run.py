"""`python generate.py --setup [--dry-run] [--yes]`: install what the run's ComfyUI workflows need.

Why in generate.py: which workflows a run queues depends on the pipeline, on --from/--until/--only
and on settings (STORY_WORKFLOW, VIDEO_WORKFLOW) — exactly what `--check` already resolves — so
setup installs for the same scripts that `--check` checks, and nothing a run would not use
(gen.audio alone never fetches 40 GB of video models). It reads the workflows for their node
classes and model file names, looks each up in the manifest (ComfyUI/manifest.toml), and:
installs ComfyUI into COMFYUI_DIR with its own venv when main.py is not there, clones missing node
packs with their requirements into ComfyUI's Python, and downloads missing model files (hub.py:
resumable, checked, renamed into place). Everything is planned first (one HEAD request per missing
file for its exact size), so the plan, the free-disk check and the question before a large
download (SETUP_MAX_DOWNLOAD_GB) come before the first byte; `--dry-run` stops after the plan.
What is already in place is left alone, so a second run does nothing. Problems are listed one
sentence each and the run goes on with the rest; the last line says whether all is in place.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from common.run.errors import ConfigError, PipelineError, PreflightError
from common.run.steps import COMFYUI_MIN_VERSIONS, Step
from common.services.comfyui.checks import parse_version
from common.setup import hub, installs
from common.setup.gpu import Gpu, choose_variant, detect_gpu, nvidia_smi_gb
from common.setup.manifest import FOLDER_ALIASES, ModelFile, ModelUse, Needs, Pack, Variant, load_manifest, needs_for

MARGIN_BYTES = 500 * 10 ** 6  # room for pip caches, logs and the renames
TORCH_BYTES = 6 * 10 ** 9  # torch with its CUDA libraries, when ComfyUI's venv is made here
RECORD = "models.json"  # in COMFYUI_DIR/.setup: which file came from where, which quantisation


@dataclass
class Fetch:
    """A model file to download: what, which variant and why, what the Hub said, where it goes."""

    use: ModelUse
    entry: ModelFile
    variant: Variant
    why: str
    remote: hub.Remote | None
    dest: Path

    def remaining(self) -> int:
        total = hub.known_size(self.remote, self.variant, self.entry)
        done = hub.partial_bytes(self.dest, self.remote) if self.remote else 0
        return max(total - done, 0)


@dataclass
class Plan:
    comfy_dir: Path
    install_comfyui: bool = False
    packs: list[Pack] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)
    problems: list[PipelineError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    present: int = 0

    def download_bytes(self) -> int:
        return sum(f.remaining() for f in self.fetches)


def _present(models_dir: Path, use: ModelUse) -> Path | None:
    for folder in (use.folder, FOLDER_ALIASES.get(use.folder)):
        if folder and (models_dir / folder / use.name).is_file():
            return models_dir / folder / use.name
    return None


def _read_record(comfy_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((comfy_dir / installs.SETUP_DIR / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(comfy_dir: Path, record: dict[str, Any]) -> None:
    from common.state.atomic import atomic_write_json

    path = comfy_dir / installs.SETUP_DIR / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record, indent=1)


def _plan_comfyui(plan: Plan, settings: Any, needs: Needs, manifest: Any, say: Callable[[str], None]) -> None:
    comfy = plan.comfy_dir
    if not (comfy / "main.py").is_file():
        plan.install_comfyui = True
        ref = f" ({manifest.comfyui.ref})" if manifest.comfyui.ref else ""
        python = str(settings.COMFYUI_PYTHON or "").strip() or "a new venv in it"
        say(f"  ComfyUI   to install: clone {manifest.comfyui.git}{ref} into {comfy}, Python: {python}")
        return
    version = installs.comfyui_version(comfy)
    say(f"  ComfyUI   present in {comfy} ({version or 'version not given'})")
    for cls in sorted(needs.classes & set(COMFYUI_MIN_VERSIONS)):
        minimum, what = COMFYUI_MIN_VERSIONS[cls]
        have, need = parse_version(version), parse_version(minimum)
        if have is not None and need is not None and have < need:
            plan.problems.append(PreflightError(
                f"ComfyUI {version} in {comfy} is older than {minimum}, which the {what} workflow's {cls} needs: "
                "update it (ComfyUI/README.md says how) and run --setup again."))


def _plan_packs(plan: Plan, needs: Needs, say: Callable[[str], None]) -> None:
    for pack in needs.packs:
        folder = plan.comfy_dir / "custom_nodes" / pack.name
        if folder.is_dir():
            commit = installs.pack_commit(folder)
            other = f" (at {commit[:12]}, the manifest names {pack.commit[:12]}: left as it is)" if (
                commit and pack.commit and commit != pack.commit) else ""
            say(f"  node pack {pack.name}: present{other}")
            plan.present += 1
        else:
            at = f" at {pack.commit[:12]}" if pack.commit else ""
            say(f"  node pack {pack.name}: to install from {pack.git}{at} ({', '.join(sorted(pack.nodes))})")
            plan.packs.append(pack)


def _plan_models(plan: Plan, settings: Any, needs: Needs, python: str | None, say: Callable[[str], None]) -> None:
    models_dir = plan.comfy_dir / "models"
    record = _read_record(plan.comfy_dir)
    quant = str(getattr(settings, "SETUP_QUANT", "auto") or "auto")
    gpu: Gpu | None = None
    for use in needs.models:
        entry, where = use.entry, f"models/{use.folder}"
        found = _present(models_dir, use)
        if entry is not None and entry.fetched_by:
            approx = f", about {entry.approx_gb:g} GB" if entry.approx_gb else ""
            say(f"  model     {use.name}: fetched by its node pack on the first job ({entry.repo}{approx})")
            continue
        if entry is None:
            if found:
                say(f"  model     {use.name}: present in {where} (not in the manifest)")
                plan.present += 1
            else:
                plan.problems.append(ConfigError(
                    f"{use.name} ({', '.join(use.workflows)}) is not in the setup manifest, so setup cannot fetch it: "
                    f"put it in ComfyUI/{where} yourself, or add it to the manifest."))
            continue
        if entry.variants and gpu is None and quant.lower() == "auto":
            gpu = detect_gpu(python)
        variant, why = choose_variant(entry, quant, gpu)
        recorded = record.get(f"{use.folder}/{use.name}", {})
        # A quantisation asked for by name replaces another one setup put there; `auto` keeps what is there
        # (a GPU that nvidia-smi failed to see once must not cost a 12 GB download).
        replace = quant.lower() != "auto" and recorded.get("quant") not in (None, variant.quant)
        if found and not replace:
            size = variant.size or entry.size
            if size is not None and found.stat().st_size != size:
                plan.problems.append(PreflightError(
                    f"{found} has {found.stat().st_size:,} bytes but the manifest's {use.name} has {size:,}: it is "
                    "another or a broken file; delete it and run --setup again."))
                continue
            kept = f", {recorded['quant']}" if recorded.get("quant") else ""
            say(f"  model     {use.name}: present in {where}{kept}")
            plan.present += 1
            continue
        try:
            remote = hub.resolve(entry, variant)
        except PipelineError as exc:
            plan.problems.append(exc)
            continue
        fetch = Fetch(use, entry, variant, why, remote, models_dir / use.folder / use.name)
        partial = hub.partial_bytes(fetch.dest, remote)
        resume = f", {hub.gb(partial)} already here" if partial else ""
        chosen = f" [{why}]" if why else ""
        say(f"  model     {use.name}: to fetch, {hub.describe(remote, variant, entry)}{resume}, from "
            f"{entry.url or f'{entry.repo}/{variant.path}'} into {where}{chosen}")
        plan.fetches.append(fetch)


def _free_bytes(path: Path) -> int:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def _check_disk(plan: Plan, manifest: Any) -> None:
    need = plan.download_bytes()
    if plan.install_comfyui and manifest.comfyui.torch:
        need += TORCH_BYTES
    if not need:
        return
    need += MARGIN_BYTES
    free = _free_bytes(plan.comfy_dir / "models")
    if free < need:
        raise PreflightError(f"the installs need about {hub.gb(need)} in {plan.comfy_dir} but that disk has only "
                             f"{hub.gb(free)} free: free some space or point COMFYUI_DIR at a bigger disk, then run --setup again; "
                             "nothing was downloaded.")


def _confirm(plan: Plan, settings: Any, yes: bool, ask: Callable[[str], str] | None) -> None:
    total = plan.download_bytes()
    limit = float(settings.SETUP_MAX_DOWNLOAD_GB) * 1e9
    if yes or total <= limit:
        return
    question = f"download {hub.gb(total)} of model files into {plan.comfy_dir / 'models'}? [y/N] "
    if ask is None and sys.stdin is not None and sys.stdin.isatty():
        ask = input
    if ask is None:
        raise ConfigError(f"setup would download {hub.gb(total)}, more than SETUP_MAX_DOWNLOAD_GB "
                          f"({float(settings.SETUP_MAX_DOWNLOAD_GB):g} GB), and there is no terminal to ask: run "
                          "it again with --yes (or raise SETUP_MAX_DOWNLOAD_GB).")
    if ask(question).strip().lower() not in ("y", "yes"):
        raise ConfigError("nothing was downloaded, as you answered; run --setup again when you want the files "
                          "(SETUP_QUANT picks smaller quantisations).")


def _exit(problems: Sequence[PipelineError]) -> int:
    kinds = {type(p).exit_code for p in problems}
    return kinds.pop() if len(kinds) == 1 else PreflightError.exit_code


def _execute(plan: Plan, settings: Any, manifest: Any, say: Callable[[str], None]) -> None:
    from common.services.comfyui.interpreter import comfyui_python

    configured = str(settings.COMFYUI_PYTHON or "").strip() or None
    if plan.install_comfyui:
        say(f"installing ComfyUI into {plan.comfy_dir}")
        installs.install_comfyui(manifest.comfyui, plan.comfy_dir, configured, nvidia_smi_gb() is not None, say)
    python, why = comfyui_python(settings)
    for pack in plan.packs:
        say(f"installing node pack {pack.name} with {python} ({why})")
        try:
            installs.install_pack(pack, plan.comfy_dir / "custom_nodes", python, say)
        except PipelineError as exc:
            say(f"  FAIL  {exc}")
            plan.problems.append(exc)
    record = _read_record(plan.comfy_dir)
    for fetch in plan.fetches:
        assert fetch.remote is not None
        say(f"downloading {fetch.use.name} ({hub.gb(fetch.remote.size)}) into models/{fetch.use.folder}")
        try:
            digest = hub.download(fetch.entry, fetch.variant, fetch.remote, fetch.dest, say)
        except PipelineError as exc:
            say(f"  FAIL  {exc}")
            plan.problems.append(exc)
            continue
        record[f"{fetch.use.folder}/{fetch.use.name}"] = {
            "source": fetch.entry.url or f"{fetch.entry.repo}@{fetch.entry.revision}/{fetch.variant.path}",
            "quant": fetch.variant.quant or None, "sha256": digest, "size": fetch.dest.stat().st_size}
        _write_record(plan.comfy_dir, record)
        say(f"  {fetch.use.name}: in place, sha256 {digest[:12]}...")


def run_setup(pipeline_dir: Path, steps: Sequence[Step], settings: Any, *, dry_run: bool = False,
              yes: bool = False, say: Callable[[str], None] = print, ask: Callable[[str], str] | None = None) -> int:
    """Plan, check and install what the ComfyUI workflows of `steps` need; the exit code of the command."""
    from common.run.preflight import workflow_files
    from common.services.comfyui.workflow import Workflow

    files = workflow_files(steps, settings)
    name = Path(pipeline_dir).name
    if not files:
        say(f"setup: none of the {len(steps)} selected script(s) of {name} uses ComfyUI; nothing to install.")
        return 0
    manifest = load_manifest(str(getattr(settings, "SETUP_MANIFEST", "") or "") or None)
    labels = [f"{p.parent.parent.name}/workflow/{p.name}" for p in files]
    needs = needs_for([(label, Workflow.load(p).nodes) for label, p in zip(labels, files)], manifest)
    comfy_dir = Path(settings.COMFYUI_DIR).absolute()
    say(f"setup for {name}: {len(steps)} script(s), ComfyUI workflows {', '.join(labels)}; manifest {manifest.path}")
    plan = Plan(comfy_dir)
    try:
        _plan_comfyui(plan, settings, needs, manifest, say)
        _plan_packs(plan, needs, say)
        python = None if plan.install_comfyui and not settings.COMFYUI_PYTHON else _python(settings)
        _plan_models(plan, settings, needs, python, say)
        for problem in plan.problems:
            say(f"  FAIL  {problem}")
        todo = len(plan.packs) + len(plan.fetches) + int(plan.install_comfyui)
        total = f"{len(plan.fetches)} model file(s), {hub.gb(plan.download_bytes())} to download"
        if dry_run:
            say(f"dry run: {todo} thing(s) to install ({total}); nothing was changed.")
            return _exit(plan.problems) if plan.problems else 0
        if todo:
            _check_disk(plan, manifest)
            _confirm(plan, settings, yes, ask)
            _execute(plan, settings, manifest, say)
    except KeyboardInterrupt:
        say("setup: interrupted; run --setup again to continue (a partial download is kept and resumed).")
        return 130
    except PipelineError as exc:
        say(f"setup: {exc}")
        return exc.exit_code
    if plan.problems:
        say(f"setup: {len(plan.problems)} problem(s), each said above; fix them and run --setup again "
            "(what is in place is kept).")
        return _exit(plan.problems)
    did = "nothing to do" if not todo else f"installed {todo} thing(s)"
    packs = f", {len(needs.packs)} node pack(s)" if needs.packs else ""
    say(f"setup: {did}; ComfyUI{packs} and the {len(needs.models)} model file(s) the selected scripts need are in "
        "place (with ComfyUI running, `python generate.py --check` confirms it).")
    return 0


def _python(settings: Any) -> str:
    from common.services.comfyui.interpreter import comfyui_python

    return comfyui_python(settings)[0]
