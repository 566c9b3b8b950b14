"""3.animate.py's work list: every shot's clip as checkpointable items (segments, joins, holds).

A shot becomes one of:
- a held frame: a Ken Burns push over its picture, no model (HELD_SCENES, or shorter than
  HOLD_SHORT_SCENES_BELOW: a generation is not worth it for a glimpse);
- a direct clip: one job that is already the clip (the offline engine takes any frame count);
- segments then a join: each segment is one model job and one checkpoint, starting from the
  scene's picture or from the previous segment's last frame (saved beside it as a PNG), and
  the join trims or retimes them into exactly the shot's frames;
- a speaking shot on a sound-to-video model (common.video.speaking.TalkPlan): chunks, each one job
  and one checkpoint (the latent so far, `.latent`, for all but the last, which decodes the whole
  clip at the model's frame rate), then a join that puts it on the film's frames: the first frame
  until the line starts, then each frame at the instant of the line it shows.

Each item's fingerprint includes the fingerprint of the segment it continues from, so a
changed first segment redoes the chain after it, and nothing else is redone.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from common.video import clips
from common.video.animation import ClipPlan, FrameRule, camera_move_in, plan_clip, slot_frames
from common.state.checkpoints import fingerprint
from common.engines.base import ClipRequest
from common.run.errors import InputError
from common.video.motion import camera_for, clip_prompt, offline_motion
from common.video.speaking import SpeakingSpan, TalkPlan, TalkRule, plan_talk
from common.video.storyboard import Shot, Storyboard, scene_image_path

HOLD_MOVE = "zoom_in"  # a held frame is pushed in on


@dataclass(frozen=True)
class ClipJob:
    """Everything one shot's clip depends on."""

    shot: Shot
    image: Path
    end_image: Path | None
    prompt: str
    camera: str
    plan: ClipPlan
    hold: bool
    speech: SpeakingSpan | None = None  # a speaking shot: whose line, where in story.wav
    audio: Path | None = None  # that span cut from story.wav (speaking.cut_span)
    fps: int = 24
    talk: TalkPlan | None = None  # a speaking shot made by a sound-to-video model: its chunks

    @property
    def jobs(self) -> int:
        """Model jobs the clip takes (segments or sound-to-video chunks; 0 for a held clip)."""
        return len(self.talk.chunks) if self.talk is not None else len(self.plan.segments)

    @property
    def lead(self) -> int:
        """Frames of the clip before its line starts (the slot may open with a pause)."""
        if self.speech is None:
            return 0
        return max(0, round(self.speech.start * self.fps) - round(self.shot.start * self.fps))

    def seed(self, base: int, segment: int) -> int:
        digest = hashlib.sha256(f"{base}:{self.shot.clip}:{segment}".encode("utf-8")).digest()
        return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class Item:
    """One checkpoint: segment `segment` of a job, or (segment None) its finished clip."""

    job: ClipJob
    segment: int | None

    @property
    def key(self) -> str:
        return self.job.shot.clip if self.segment is None else f"{self.job.shot.clip}#{self.segment + 1}"

    @property
    def index(self) -> int:
        """The model job this item runs: its segment, or 0 for a direct clip."""
        return self.segment or 0

    @property
    def last(self) -> bool:
        """The clip's last job: the one that may end on the next scene's picture."""
        return self.index == self.job.jobs - 1


@dataclass(frozen=True)
class Look:
    """The video settings every clip shares."""

    width: int
    height: int
    fps: int
    seed: int
    art_style: str
    enable_motion: bool
    enable_scene: bool
    enable_location: bool
    first_last_frame: bool
    hold_below: float
    held: frozenset[str]


def build_jobs(board: Storyboard, motions: Mapping[str, str], look: Look, rule: FrameRule,
               pipeline_dir: Path, speech: Mapping[str, tuple[SpeakingSpan, Path]] | None = None,
               talk: TalkRule | None = None) -> tuple[list[ClipJob], list[str]]:
    """The jobs in screen order, and the scene ids that had no motion prompt (given the offline one).
    `speech`: clip -> (span, its cut audio) for the speaking shots (common.video.speaking); `talk`: the
    engine's sound-to-video rule, which plans them (None: one ordinary job that gets the audio)."""
    speech = speech or {}
    missing = [s.scene_id for s in board.shots if not scene_image_path(pipeline_dir, s.scene_id).is_file()]
    if missing:
        first = scene_image_path(pipeline_dir, missing[0])
        raise InputError(
            f"{len(set(missing))} scene picture(s) are missing, the first {first}; run gen.image (3.scene.py) "
            "first, then this step again."
        )
    jobs, unprompted = [], []
    for index, shot in enumerate(board.shots):
        motion = motions.get(shot.scene_id)
        if motion is None:
            unprompted.append(shot.scene_id)
            motion = offline_motion(shot)
        following = board.shots[index + 1] if index + 1 < len(board.shots) else None
        span, audio = speech.get(shot.clip, (None, None))
        hold = shot.clip in look.held or shot.scene_id in look.held or (shot.seconds < look.hold_below and span is None)
        if hold:
            span = audio = None
        end_image = None
        if (look.first_last_frame and following is not None and shot.same_location_as_next and not hold
                and span is None):  # a speaking shot is driven by its audio, not towards a picture
            end_image = scene_image_path(pipeline_dir, following.scene_id)
        frames = max(1, slot_frames(shot.start, shot.end, look.fps))
        chunks = plan_talk(span.seconds, talk) if span is not None and talk is not None else None
        plan = (ClipPlan(frames, ()) if hold or chunks else plan_clip(frames, rule, look.fps,
                                                                       ends_on_image=end_image is not None))
        prompt = clip_prompt(shot, motion, art_style=look.art_style, enable_motion=look.enable_motion,
                             enable_scene=look.enable_scene, enable_location=look.enable_location)
        camera = HOLD_MOVE if hold else (camera_move_in(motion) or camera_for(shot))
        jobs.append(ClipJob(shot, scene_image_path(pipeline_dir, shot.scene_id), end_image, prompt, camera, plan, hold,
                            span, audio, look.fps, chunks))
    return jobs, list(dict.fromkeys(unprompted))


def is_direct(job: ClipJob, rule: FrameRule) -> bool:
    """One job is the clip itself when the engine makes any frame count exactly (step 1, no limit)."""
    return not job.hold and job.talk is None and job.plan.direct and rule.step == 1


def items_for(jobs: list[ClipJob], rule: FrameRule) -> list[Item]:
    items: list[Item] = []
    for job in jobs:
        if not job.hold and not is_direct(job, rule):
            items += [Item(job, k) for k in range(job.jobs)]
        items.append(Item(job, None))
    return items


def fingerprints(items: list[Item], engine_identity: Mapping[str, Any], look: Look, rule: FrameRule) -> dict[str, str]:
    """Each item's fingerprint, chained: a segment includes the one it continues from."""
    from common.offline import kenburns

    size = (look.width, look.height, look.fps)
    found: dict[str, str] = {}
    for item in items:
        job = item.job
        if job.hold:
            found[item.key] = fingerprint("hold", "kenburns-1", HOLD_MOVE, kenburns.DEFAULT_ZOOM, job.image,
                                          job.plan.frames, size)
        elif job.talk is not None:
            found[item.key] = _talk_fingerprint(item, found, look)
        elif is_direct(job, rule) or item.segment is not None:
            k = item.index
            start: Any = job.image if k == 0 else found[f"{job.shot.clip}#{k}"]
            spoken = None if job.speech is None else (job.speech.speaker, job.shot.characters, job.audio, job.lead)
            found[item.key] = fingerprint(dict(engine_identity), job.prompt, job.camera, job.seed(look.seed, k), size,
                                          job.plan.segments[k].frames, start, job.end_image if item.last else None,
                                          *([spoken] if spoken else []))
        else:
            parts = [found[f"{job.shot.clip}#{k + 1}"] for k in range(len(job.plan.segments))]
            found[item.key] = fingerprint("join", parts, job.plan.to_json(), size)
    return found


def _talk_fingerprint(item: Item, found: Mapping[str, str], look: Look) -> str:
    """A sound-to-video chunk: the model, the picture and the line it hears, the chunk before it; the join:
    the last chunk and where the line sits in the slot."""
    job = item.job
    assert job.talk is not None and job.speech is not None
    if item.segment is None:
        return fingerprint("talk-join", found[f"{job.shot.clip}#{job.jobs}"], job.plan.frames, job.lead,
                           (look.width, look.height, look.fps))
    k = item.segment
    before: Any = job.image if k == 0 else found[f"{job.shot.clip}#{k}"]
    return fingerprint(dict(job.talk.talk.identity), job.talk.to_json(), k, job.prompt, job.seed(look.seed, k),
                       (look.width, look.height), before, job.image, job.audio, job.speech.speaker)


@dataclass(frozen=True)
class Folders:
    clips: Path  # output/animation
    segments: Path  # output/animation/segments

    def clip(self, job: ClipJob) -> Path:
        return self.clips / f"{job.shot.clip}.mp4"

    def segment(self, job: ClipJob, k: int) -> Path:
        return self.segments / f"{job.shot.clip}.{k + 1}.mp4"

    def last_frame(self, job: ClipJob, k: int) -> Path:
        return self.segments / f"{job.shot.clip}.{k + 1}.last.png"

    def latent(self, job: ClipJob, k: int) -> Path:
        """A speaking clip's latent after chunk k, which chunk k + 1 extends."""
        return self.segments / f"{job.shot.clip}.{k + 1}.latent"


def remove_leftovers(folder: Path) -> int:
    """Delete what a killed run left half-made: atomic writes' temp files (`.name.xxxx.tmp.mp4`)
    and the engine's download folders (`clip-xxxx/`, a speaking chunk's `talk-xxxx/`). Finished files are
    never touched."""
    import shutil

    removed = 0
    if not folder.is_dir():
        return 0
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and path.name.startswith(".") and ".tmp" in path.name:
            path.unlink(missing_ok=True)
            removed += 1
        elif path.is_dir() and path.name.startswith(("clip-", "talk-")):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def run_item(item: Item, engine: Any, look: Look, folders: Folders,
             out: Path | None = None) -> tuple[list[Path], dict[str, Any]]:
    """Make one item; `out`: where a finished clip goes instead of its place in `folders` (a judged candidate)."""
    from common.offline import kenburns

    job = item.job
    clip = out or folders.clip(job)
    if job.hold:
        made = kenburns.ken_burns(job.image, clip, seconds=job.plan.frames / look.fps, width=look.width,
                                  height=look.height, fps=look.fps, move=HOLD_MOVE, seed_text=job.shot.clip)
        return [made], {"frames": job.plan.frames, "held": True}
    if job.talk is not None:
        return _run_talk(item, engine, look, folders, clip)
    if item.segment is None and not is_direct(job, engine.frame_rule()):
        parts = [(folders.segment(job, k), s.frame_indices()) for k, s in enumerate(job.plan.segments)]
        frames = clips.join_segments(parts, clip, width=look.width, height=look.height, fps=look.fps)
        return [clip], {"frames": frames, "segments": len(parts)}
    k = item.index
    segment = job.plan.segments[k]
    out = clip if item.segment is None else folders.segment(job, k)
    out.parent.mkdir(parents=True, exist_ok=True)
    request = ClipRequest(
        scene_id=job.shot.scene_id, image=job.image if k == 0 else folders.last_frame(job, k - 1),
        prompt=job.prompt, seconds=segment.frames / look.fps, width=look.width, height=look.height, fps=look.fps,
        seed=job.seed(look.seed, k), end_image=job.end_image if item.last else None, frames=segment.frames,
        camera=job.camera, **_speech_fields(job),
    )
    engine.animate(request, out)
    files = [out]
    if not item.last:
        files.append(clips.last_frame(out, folders.last_frame(job, k)))
    return files, {"frames": segment.frames}


def _run_talk(item: Item, engine: Any, look: Look, folders: Folders, clip: Path) -> tuple[list[Path], dict[str, Any]]:
    """A speaking clip's chunk (one sound-to-video job), or its join onto the film's frames."""
    job = item.job
    assert job.talk is not None
    last = job.jobs - 1
    if item.segment is None:
        indices = job.talk.indices(job.plan.frames, job.lead, look.fps)
        frames = clips.join_segments([(folders.segment(job, last), indices)], clip, width=look.width,
                                     height=look.height, fps=look.fps)
        return [clip], {"frames": frames, "speaking": job.talk.frames}
    k = item.segment
    length = job.talk.chunks[k]
    out = folders.segment(job, k) if k == last else folders.latent(job, k)
    out.parent.mkdir(parents=True, exist_ok=True)
    request = ClipRequest(
        scene_id=job.shot.scene_id, image=job.image, prompt=job.prompt, seconds=length / job.talk.fps,
        width=look.width, height=look.height, fps=round(job.talk.fps), seed=job.seed(look.seed, k), frames=length,
        camera=job.camera, **_speech_fields(job), latent=folders.latent(job, k - 1) if k else None,
        keep_latent=k != last,
    )
    engine.animate(request, out)
    return [out], {"frames": length}


def _speech_fields(job: ClipJob) -> dict[str, Any]:
    """The speaking shot's part of a request: its audio, who speaks, the frames before the line."""
    if job.speech is None:
        return {}
    attributes = dict(job.shot.characters).get(job.speech.speaker, "")
    return {"audio": job.audio, "speaker": (job.speech.speaker, attributes), "lead": job.lead}
