"""Step 12 as a whole: the video, then its thumbnail, its captions and the Shorts, each its own checkpoint.

The plan (which requests, with which bodies) is built once and used twice: executed by
`publish`, or written out by `dry_run`. Both build the requests with the same code, so the
dry-run manifest is what a real run would send.

"Never upload twice" is the rule that matters most here, so the checkpoint of a finished
upload is kept whatever happens: it is not tied to the file's fingerprint (a re-rendered
final.mp4 is reported, not uploaded as a second video), it survives CLEANUP_TRACKING_FILES
and --disable-resumable, and only --force-start uploads again, saying so.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from common.channel.schedule import publish_slot
from common.state.checkpoints import CheckpointStore, Entry, UnreadableStateError, file_digest, fingerprint
from common.run.errors import ConfigError, InputError, JobError, QuotaError
from common.media.ffmpeg import probe
from common.publish.checks import (
    SHORTS_MAX_SECONDS, VideoCheck, check_captions, check_thumbnail, check_video, made_as_preview,
    refuse_preview,
)
from common.publish.manifest import describe_request, offline_service, write_manifest
from common.publish.snippet import (
    VideoMetadata, chapters_note, parse_publish_at, read_description, read_tags, read_title, short_description,
    short_title, validate_description, validate_title, video_url,
)
from common.publish.upload import RetryPolicy, Session, ask_session, chunk_bytes, upload_resumable, with_retries

STATE_NAME = "12.youtube"
VIDEO_ID = "{VIDEO_ID}"  # stands for the main video's id until it exists
_SHORT_RE = re.compile(r"shorts\.v(\d+)\.mp4\Z")


@dataclass(frozen=True)
class PublishInputs:
    """Every file and choice step 12 works from, resolved from flags and settings."""

    pipeline_dir: Path
    video: Path
    audio: Path
    title_file: Path
    description_file: Path
    tags_file: Path
    thumbnail: Path
    captions: Path
    shorts_dir: Path
    upload_shorts: bool = False
    allow_preview: bool = False
    privacy: str = "private"
    category_id: str = "22"
    language: str = "en"
    publish_at: datetime | None = None
    chunk_size: int = 8 * 1024 * 1024

    @property
    def state_path(self) -> Path:
        return self.pipeline_dir / "output" / "tracking" / f"{STATE_NAME}.state.json"

    @property
    def manifest_path(self) -> Path:
        return self.pipeline_dir / "output" / "upload.manifest.json"


@dataclass(frozen=True)
class Item:
    """One checkpointed request: a video, the thumbnail, the captions, or a Short."""

    key: str
    kind: str  # video | thumbnail | captions | short
    media: Path
    mimetype: str
    body: dict[str, Any] | None = None
    check: VideoCheck | None = None


@dataclass
class Plan:
    metadata: VideoMetadata
    items: list[Item]
    preview: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class PublishResult:
    video_id: str
    url: str
    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def inputs_from_args(args: Any, settings: Any, pipeline_dir: Path) -> PublishInputs:
    """Flags (paths relative to the current folder) over the pipeline's standard files."""
    out, inp = pipeline_dir / "output", pipeline_dir / "input"

    def pick(flag: str | None, default: Path) -> Path:
        return Path(flag).expanduser().resolve() if flag else default

    return PublishInputs(
        pipeline_dir=pipeline_dir,
        video=pick(args.video_file, out / "final.mp4"),
        audio=pick(args.audio_file, out / "final.wav"),
        title_file=pick(args.title_file, inp / "10.title.txt"),
        description_file=pick(args.description_file, out / "description.txt"),
        tags_file=pick(args.tags_file, out / "tags.txt"),
        thumbnail=pick(args.thumbnail_file, out / "thumbnail.png"),
        captions=pick(args.captions_file, inp / "2.story.srt"),
        shorts_dir=pick(args.shorts_dir, out / "shorts"),
        upload_shorts=bool(settings.YOUTUBE_UPLOAD_SHORTS),
        allow_preview=bool(args.allow_preview),
        privacy=settings.YOUTUBE_PRIVACY_STATUS,
        category_id=str(settings.YOUTUBE_CATEGORY_ID),
        language=settings.YOUTUBE_DEFAULT_LANGUAGE,
        # --publish-at, else in channel mode the story's slot of the release schedule (common.channel.schedule)
        publish_at=parse_publish_at(args.publish_at) if args.publish_at else publish_slot(settings, pipeline_dir),
        chunk_size=chunk_bytes(settings.YOUTUBE_CHUNK_MB),
    )


def open_state(inputs: PublishInputs, warn: Callable[[str], None] = print) -> CheckpointStore:
    """Step 12's own checkpoints, always kept: losing them could mean uploading a video twice, so an
    unreadable file is never salvaged or started afresh: it stops the step (exit 4) and is left as it is."""
    try:
        return CheckpointStore(inputs.state_path, base_dir=inputs.pipeline_dir, resumable=True, warn=warn,
                               salvage=False)
    except UnreadableStateError as exc:
        raise ConfigError(
            f"{exc.path} records what was already uploaded and could not be read ({exc.why}), so nothing was "
            "sent: check in YouTube Studio (Content) which of this story's video, thumbnail, captions and Shorts "
            "are already on the channel, then repair that file or move it away, and run again "
            "(moved away, everything is uploaded anew: delete what is already there first)."
        ) from exc


# ----------------------------------------------------------------------------- the plan


def find_shorts(shorts_dir: Path) -> list[tuple[int, Path]]:
    """shorts.v1.mp4, shorts.v2.mp4 ... in version order (v10 after v9)."""
    found = []
    for path in shorts_dir.glob("shorts.v*.mp4") if shorts_dir.is_dir() else ():
        match = _SHORT_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def build_metadata(inputs: PublishInputs, duration: float) -> tuple[VideoMetadata, list[str]]:
    """Title, description (its chapters written by 9.media.py) and tags, validated against YouTube's limits."""
    title = read_title(inputs.title_file)
    description = read_description(inputs.description_file)
    note = chapters_note(description, duration)
    tags = read_tags(inputs.tags_file)
    meta = VideoMetadata(title=title, description=description, tags=tuple(tags), category_id=inputs.category_id,
                         language=inputs.language, privacy=inputs.privacy, publish_at=inputs.publish_at)
    notes = [note]
    if inputs.publish_at:  # YouTube publishes a scheduled video itself: public at publishAt
        notes.append(f"scheduled: private until {meta.body()['status']['publishAt']}, then public")
    return meta, notes


def _short_metadata(meta: VideoMetadata, number: int) -> VideoMetadata:
    title = validate_title(short_title(meta.title, number), f"the title of Short {number}")
    description = validate_description(short_description(meta.title, video_url(VIDEO_ID)), f"the description of Short {number}")
    # A Short goes public with the main video; scheduling one without the other would link to a private video.
    return replace(meta, title=title, description=description)


def make_plan(inputs: PublishInputs, *, enforce_preview: bool, warn: Callable[[str], None] = print) -> Plan:
    """Everything checked that can be checked before sending: preview, inputs, metadata, files."""
    if not inputs.video.is_file():
        raise InputError(f"the video {inputs.video} is missing; run 11.video.py (or pass --video-file).")
    preview = refuse_preview(inputs.video, inputs.allow_preview, warn=warn) if enforce_preview \
        else made_as_preview(inputs.video, warn=warn)
    duration = probe(inputs.video).duration
    meta, notes = build_metadata(inputs, duration)
    thumb_type = check_thumbnail(inputs.thumbnail)
    check_captions(inputs.captions)
    items = [
        Item("video", "video", inputs.video, "video/mp4", meta.body()),
        Item("thumbnail", "thumbnail", inputs.thumbnail, thumb_type),
        Item("captions", "captions", inputs.captions, "application/octet-stream", {"snippet": {
            "videoId": VIDEO_ID, "language": inputs.language or "en", "name": "", "isDraft": False}}),
    ]
    if inputs.upload_shorts:
        shorts = find_shorts(inputs.shorts_dir)
        if not shorts:
            raise InputError(f"--upload-shorts was given but {inputs.shorts_dir} holds no shorts.v<N>.mp4; "
                             "run 11.video.py, or pass --shorts-dir.")
        for number, path in shorts:
            items.append(Item(f"short_v{number}", "short", path, "video/mp4", _short_metadata(meta, number).body()))
    if preview:
        notes.append("the video is an offline-engine preview" + (" (--allow-preview given)" if inputs.allow_preview else
                     "; a real upload refuses it unless --allow-preview is given"))
    return Plan(meta, items, preview, notes)


def _check_item(item: Item, inputs: PublishInputs, store: CheckpointStore) -> Item:
    """The pre-upload check of a video or Short, remembered per file content so a rerun skips it."""
    if item.kind == "video":
        fp = fingerprint("check", item.media, inputs.audio if inputs.audio.is_file() else str(inputs.audio))
    else:
        fp = fingerprint("check-short", item.media)
    key = f"check_{item.key}"
    cached = store.lookup(key, fp)
    if cached is not None:
        return replace(item, check=VideoCheck(**cached.data))
    if item.kind == "video":
        check = check_video(item.media, what="the video", reference_audio=inputs.audio)
    else:
        check = check_video(item.media, what=f"the Short {item.media.name}", vertical=True, max_duration=SHORTS_MAX_SECONDS)
    store.record(key, fp, data=check.to_json())
    return replace(item, check=check)


# ----------------------------------------------------------------------------- requests


def _resolve(value: Any, video_id: str) -> Any:
    if isinstance(value, str):
        return value.replace(VIDEO_ID, video_id)
    if isinstance(value, dict):
        return {k: _resolve(v, video_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, video_id) for v in value]
    return value


def build_request(service: Any, item: Item, *, video_id: str, chunk_size: int,
                  caption_id: str | None = None) -> tuple[Any, dict[str, Any] | None]:
    """The googleapiclient request for an item, and the body it carries (for the manifest)."""
    from googleapiclient.http import MediaFileUpload

    body = _resolve(item.body, video_id)
    if item.kind in ("video", "short"):
        media = MediaFileUpload(str(item.media), mimetype=item.mimetype, chunksize=chunk_size, resumable=True)
        return service.videos().insert(part="snippet,status", body=body, media_body=media), body
    media = MediaFileUpload(str(item.media), mimetype=item.mimetype, resumable=False)
    if item.kind == "thumbnail":
        return service.thumbnails().set(videoId=video_id, media_body=media), None
    if caption_id:  # new SRT for a video that has our track already: replace it, do not add a second one
        body = {"id": caption_id, "snippet": {"isDraft": False}}
        return service.captions().update(part="snippet", body=body, media_body=media), body
    return service.captions().insert(part="snippet", body=body, media_body=media), body


def _fingerprint(item: Item, video_id: str) -> str:
    return fingerprint(item.kind, item.body, item.media, "" if item.kind == "video" else video_id)


def _done_upload(store: CheckpointStore, key: str) -> Entry | None:
    entry = store.entries().get(key)
    return entry if entry is not None and entry.status == "done" and entry.data.get("video_id") else None


def video_uploaded(store: CheckpointStore) -> bool:
    """The main video is on the channel already (its approval no longer matters: it is never sent twice)."""
    return _done_upload(store, "video") is not None


def _caption_id(store: CheckpointStore, item: Item, video_id: str) -> str | None:
    """Our caption track already on `video_id`, from an earlier run: new captions replace it."""
    previous = store.entries().get(item.key)
    if item.kind == "captions" and previous is not None and previous.data.get("video_id") == video_id:
        return previous.data.get("caption_id")
    return None


# ----------------------------------------------------------------------------- the run


class Publisher:
    """Sends a plan's items in order, each checkpointed; see the module docstring for the rules.
    `resume` is accepted but changes nothing: publishing state is kept and honoured whatever
    --disable-resumable / ENABLE_RESUMABLE_MODE say (without it a rerun could publish twice)."""

    def __init__(self, inputs: PublishInputs, service: Any, store: CheckpointStore, *, policy: RetryPolicy,
                 force: bool = False, resume: bool = True, say: Callable[[str], None] = print) -> None:
        self.inputs, self.service, self.store = inputs, service, store
        self.policy, self.force, self.resume, self.say = policy, force, resume, say
        self.result = PublishResult("", "")
        # --force-start: earlier uploads are remembered (to say what is replaced) but not honoured.
        self._replaced = {k: e.data["video_id"] for k in store.entries() if (e := _done_upload(store, k))} if force else {}

    def run(self, plan: Plan) -> PublishResult:
        items = list(plan.items)
        pending = [i for i in items if i.kind in ("video", "short") and self._done(i) is None]
        items = [(_check_item(i, self.inputs, self.store) if i in pending else i) for i in items]
        video_id = self._upload(items[0], "")
        self.result.video_id, self.result.url = video_id, video_url(video_id)
        for item in items[1:]:
            if item.kind == "short":
                self._upload(item, video_id)
            else:
                self._simple(item, video_id)
        return self.result

    def _done(self, item: Item) -> Entry | None:
        return None if self.force else _done_upload(self.store, item.key)

    def _upload(self, item: Item, video_id: str) -> str:
        label = "the video" if item.kind == "video" else f"Short {item.key.removeprefix('short_v')}"
        done = self._done(item)
        if done is not None:
            self._note_unchanged(item, done, label)
            self.result.skipped.append(item.key)
            return done.data["video_id"]
        if item.key in self._replaced:
            self.say(f"--force-start: uploading {label} AGAIN as a new video; the earlier upload "
                     f"{video_url(self._replaced[item.key])} stays on YouTube (delete it in YouTube Studio if unwanted).")
        fp = _fingerprint(item, video_id)
        size = item.media.stat().st_size
        digest = file_digest(item.media)
        request, _ = build_request(self.service, item, video_id=video_id, chunk_size=self.inputs.chunk_size)
        saved, changed = self._saved_session(item, fp, size)
        if saved is not None and changed:
            finished = self._finished_before(request, item, label, saved)
            if finished:
                return finished
            saved = None

        def checkpoint(session: Session) -> None:
            # Kept whatever --disable-resumable says: without it a rerun could not know a video exists.
            self.store.record(item.key, fp, status="uploading", data={
                "session_uri": session.uri, "progress": session.progress, "size": session.size,
                "file": item.media.name, "sha256": digest})

        self.say(f"uploading {label} ({item.media.name}, {size / (1024 * 1024):.1f} MB)")
        response = upload_resumable(request, what=f"uploading {label}", size=size, saved=saved,
                                    checkpoint=checkpoint, policy=self.policy, say=self.say)
        new_id = self._record_upload(item, fp, response, label, size=size, digest=digest)
        self.say(f"uploaded {label}: {video_url(new_id)} ({(item.body or {}).get('status', {}).get('privacyStatus')})")
        self.result.sent.append(item.key)
        return new_id

    def _record_upload(self, item: Item, fp: str, response: dict[str, Any], label: str, *, size: int,
                       digest: str | None) -> str:
        new_id = str((response or {}).get("id", ""))
        if not new_id:
            raise JobError(f"YouTube answered the upload of {label} without a video id; check YouTube Studio "
                             "before running again, the upload may have gone through.")
        data = {"video_id": new_id, "url": video_url(new_id), "file": item.media.name,
                "sha256": digest, "size": size,
                "privacy": (item.body or {}).get("status", {}).get("privacyStatus")}
        if item.key in self._replaced:
            data["replaced"] = self._replaced[item.key]
        self.store.record(item.key, fp, data=data)
        return new_id

    def _finished_before(self, request: Any, item: Item, label: str, saved: Session) -> str | None:
        """The file or its metadata changed since an interrupted upload: YouTube may have finished that
        upload before the process died (its answer never checkpointed), so it is asked before a new one."""
        entry = self.store.entries()[item.key]
        state, body = with_retries(lambda: ask_session(request, saved.uri, saved.size),
                                   f"asking YouTube about the interrupted upload of {label}", self.policy, self.say)
        if state != "done":
            self.say(f"{item.media.name} or its metadata changed since the interrupted upload, which YouTube "
                     "never finished; starting a new upload")
            return None
        new_id = self._record_upload(item, entry.fingerprint, body, label, size=saved.size,
                                     digest=entry.data.get("sha256"))
        self.say(f"the interrupted upload of {label} had finished on YouTube: {video_url(new_id)}; "
                 f"{item.media.name} or its metadata changed since, so it is not uploaded again "
                 "(--force-start uploads the new file as a new video).")
        self.result.skipped.append(item.key)
        return new_id

    def _note_unchanged(self, item: Item, done: Entry, label: str) -> None:
        url = done.data.get("url") or video_url(done.data["video_id"])
        changed = item.media.is_file() and done.data.get("sha256") not in (None, file_digest(item.media))
        if changed:
            self.say(f"{item.media.name} changed since {label} was uploaded as {url}; not uploading it again "
                     "(--force-start uploads the new file as a new video).")
        else:
            self.say(f"{label} is already on YouTube: {url} (--force-start uploads it again)")

    def _saved_session(self, item: Item, fp: str, size: int) -> tuple[Session | None, bool]:
        """The interrupted upload's session, and whether the file or metadata changed since. It is always
        asked about, even with --force-start (the interrupted upload may be the forced one)."""
        entry = self.store.entries().get(item.key)
        if entry is None or entry.status != "uploading" or not entry.data.get("session_uri"):
            return None, False
        data = entry.data
        saved = Session(str(data["session_uri"]), int(data.get("progress", 0)), int(data.get("size") or 0))
        return saved, entry.fingerprint != fp or saved.size != size

    def _simple(self, item: Item, video_id: str) -> None:
        """Thumbnail or captions, marked "adding" before the request: a process killed after YouTube's
        answer but before the checkpoint leaves that mark, and the rerun lists the caption tracks first
        instead of adding a second one (a thumbnail set again replaces itself, it never adds)."""
        fp = _fingerprint(item, video_id)  # holds the video id: a video uploaded anew gets these anew
        if self.store.lookup(item.key, fp) is not None:
            self.result.skipped.append(item.key)
            return
        previous = self.store.entries().get(item.key)
        interrupted = previous is not None and previous.status == "adding" and previous.data.get("video_id") == video_id
        caption_id = _caption_id(self.store, item, video_id)
        what = f"setting the thumbnail of {video_url(video_id)}" if item.kind == "thumbnail" else \
            f"{'replacing' if caption_id else 'adding'} the captions of {video_url(video_id)}"
        if item.kind == "captions" and caption_id is None and interrupted:
            found = with_retries(lambda: self._our_caption(video_id, item), f"listing the captions of "
                                 f"{video_url(video_id)}", self.policy, self.say)
            if found and previous.fingerprint == fp:
                self.say(f"the interrupted run had added the captions of {video_url(video_id)} already")
                self.store.record(item.key, fp, data={"video_id": video_id, "caption_id": found})
                self.result.skipped.append(item.key)
                return
            caption_id = found  # our track with older captions: replaced, not added beside
        request, _ = build_request(self.service, item, video_id=video_id, chunk_size=self.inputs.chunk_size,
                                   caption_id=caption_id)
        tries = 0

        def send() -> Any:
            nonlocal tries
            tries += 1
            if item.kind == "captions" and caption_id is None and tries > 1:
                # The attempt that failed (a 5xx, a broken connection) may have added the track all
                # the same: adding it again would show viewers two identical caption tracks.
                found = self._our_caption(video_id, item)
                if found:
                    return {"id": found}
            return request.execute(num_retries=0)

        self.store.record(item.key, fp, status="adding",
                          data={"video_id": video_id, **({"caption_id": caption_id} if caption_id else {})})
        try:
            response = with_retries(send, what, self.policy, self.say)
        except (QuotaError, JobError, ConfigError):  # refused outright: nothing was added, the mark goes
            if previous is None:
                self.store.forget(item.key)
            else:
                self.store.record(item.key, previous.fingerprint, files=previous.files, data=previous.data,
                                  status=previous.status)
            raise
        data: dict[str, Any] = {"video_id": video_id}
        if item.kind == "captions":
            data["caption_id"] = str((response or {}).get("id", caption_id or ""))
        self.store.record(item.key, fp, data=data)
        self.say(f"done: {what}")
        self.result.sent.append(item.key)

    def _our_caption(self, video_id: str, item: Item) -> str | None:
        """The id of a caption track on the video in our language and name (we add one), if any."""
        wanted = item.body.get("snippet", {})
        answer = self.service.captions().list(part="snippet", videoId=video_id).execute(num_retries=0)
        for track in (answer or {}).get("items", []):
            snippet = track.get("snippet", {})
            if snippet.get("language") == wanted.get("language") and snippet.get("name", "") == wanted.get("name", ""):
                return str(track.get("id", "")) or None
        return None


def publish(inputs: PublishInputs, service: Any, store: CheckpointStore, *, policy: RetryPolicy,
            force: bool = False, resume: bool = True, say: Callable[[str], None] = print) -> PublishResult:
    plan = make_plan(inputs, enforce_preview=True, warn=say)
    for note in plan.notes:
        say(note)
    return Publisher(inputs, service, store, policy=policy, force=force, resume=resume, say=say).run(plan)


def dry_run(inputs: PublishInputs, store: CheckpointStore, *, reason: str, authorize: str,
            say: Callable[[str], None] = print) -> Path:
    """Write output/upload.manifest.json: the requests a real run would send now, nothing sent."""
    plan = make_plan(inputs, enforce_preview=False, warn=say)
    service = offline_service()
    main_done = _done_upload(store, "video")
    video_id = main_done.data["video_id"] if main_done else VIDEO_ID
    requests: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    for item in plan.items:
        if item.kind in ("video", "short"):
            if uploaded := _done_upload(store, item.key):
                done.append({"item": item.key, "video_id": uploaded.data["video_id"], "url": uploaded.data.get("url")})
                continue
            checks[item.key] = _check_item(item, inputs, store).check.to_json()
        elif main_done and store.lookup(item.key, _fingerprint(item, video_id)) is not None:
            done.append({"item": item.key, "video_id": video_id})
            continue
        request, body = build_request(service, item, video_id=video_id, chunk_size=inputs.chunk_size,
                                      caption_id=_caption_id(store, item, video_id))
        requests.append(describe_request(
            request, item=item.key, body=body, media=item.media, mimetype=item.mimetype,
            chunk_size=inputs.chunk_size, depends_on="video" if (item.key != "video" and not main_done) else None))
    video = {"file": str(inputs.video), "preview": plan.preview, "checks": checks, "title": plan.metadata.title}
    path = write_manifest(inputs.manifest_path, reason=reason, video=video, requests=requests, done=done,
                          notes=plan.notes, authorize=authorize)
    for note in plan.notes:
        say(note)
    say(f"dry run ({reason}): {len(requests)} request(s) written to {path}, nothing sent")
    return path
