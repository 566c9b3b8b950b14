"""gen.audio step 12: publish the video on YouTube, then its thumbnail, captions and Shorts.

Unattended and safe to rerun: credentials are checked before anything else (an overnight
run must not discover a revoked token at 3 a.m.), an interrupted upload resumes its own
session, a finished one is never repeated, and a spent quota stops cleanly with the time it
resets. With no credentials set up, or --dry-run, it writes output/upload.manifest.json with
every request it would send and exits 0. First authorisation: `python 12.youtube.py --authorize`.
"""
from __future__ import annotations

from common.run.runner import Script, ScriptContext
from common.publish.auth import (
    api_url, authorize, authorize_command, check_credentials, require_client_libraries, save_token, youtube_service,
)
from common.publish.approval import waiting_reason
from common.publish.youtube import dry_run, inputs_from_args, open_state, publish, video_uploaded
from common.publish.upload import RetryPolicy

script = Script(__file__, "upload the video, thumbnail, captions and Shorts to YouTube (resumable, never twice)")
script.add_argument("--video-file", metavar="PATH", help="video to publish (default output/final.mp4; gen.image/gen.video pass their final_sd.mp4)")
script.add_argument("--audio-file", metavar="PATH", help="audio the video must match in length (default output/final.wav)")
script.add_argument("--title-file", metavar="PATH", help="default input/10.title.txt")
script.add_argument("--description-file", metavar="PATH", help="default output/description.txt")
script.add_argument("--tags-file", metavar="PATH", help="one tag per line (default output/tags.txt)")
script.add_argument("--thumbnail-file", metavar="PATH", help="default output/thumbnail.png")
script.add_argument("--captions-file", metavar="PATH", help="SRT captions (default input/2.story.srt)")
script.add_argument("--shorts-dir", metavar="PATH", help="folder of shorts.v<N>.mp4 (default output/shorts)")
script.add_argument("--upload-shorts", action="store_true", default=None, setting="YOUTUBE_UPLOAD_SHORTS",
                    help="also upload the Shorts, each linking the main video")
script.add_argument("--privacy", choices=("private", "unlisted", "public"), setting="YOUTUBE_PRIVACY_STATUS",
                    help="privacy of the uploads (default private)")
script.add_argument("--publish-at", metavar="ISO_TIME", help="schedule publication (e.g. 2025-06-01T18:00+02:00); private until then")
script.add_argument("--allow-preview", action="store_true", help="upload even a video the offline engine made (a preview)")
script.add_argument("--dry-run", action="store_true", help="send nothing; write output/upload.manifest.json")
script.add_argument("--authorize", action="store_true", help="authorise YouTube uploads once, in a browser (writes token.json)")
script.add_argument("--auth-port", type=int, default=0, help="local port for --authorize's redirect (default: any free port)")
script.add_argument("--no-browser", action="store_true", help="--authorize: only print the URL, do not open a browser")
script.add_argument("--check-auth", action="store_true", help="only check that unattended uploads can run, then exit")


def main(ctx: ScriptContext) -> None:
    args = ctx.args
    require_client_libraries()
    if args.authorize:
        authorize(ctx.settings, ctx.pipeline_dir, port=args.auth_port,
                  open_browser=False if args.no_browser else None, say=ctx.say)
        return
    status = None if args.dry_run else check_credentials(ctx.settings, ctx.pipeline_dir)
    if status is not None and (status.configured or args.check_auth):
        status.raise_if_not_ok()
        ctx.say(status.message)
        if status.warning:
            ctx.say(f"warning: {status.warning}")
        if args.check_auth:
            return
    inputs = inputs_from_args(args, ctx.settings, ctx.pipeline_dir)
    store = open_state(inputs)
    if status is None or not status.ok:
        reason = "--dry-run" if status is None else "no YouTube credentials"
        how = status.message if status is not None else f"to upload for real, run without --dry-run (first time: {authorize_command(ctx.pipeline_dir)})"
        dry_run(inputs, store, reason=reason, authorize=how, say=ctx.say)
        ctx.say(how)
        return
    waiting = (waiting_reason(ctx.pipeline_dir, inputs.video)
               if ctx.settings.YOUTUBE_REQUIRE_APPROVAL and (args.force_start or not video_uploaded(store)) else None)
    if waiting is not None:  # nothing is sent; the manifest shows what would be, once approved
        dry_run(inputs, store, reason="waiting for approval", authorize=waiting, say=ctx.say)
        ctx.say(waiting)
        return
    credentials = status.credentials
    token_before = credentials.token
    policy = RetryPolicy(max_retries=ctx.settings.YOUTUBE_MAX_RETRIES)
    resume = ctx.settings.ENABLE_RESUMABLE_MODE and not args.disable_resumable
    try:
        result = publish(inputs, youtube_service(credentials, api_url=api_url(ctx.settings)), store, policy=policy,
                         force=args.force_start, resume=resume, say=ctx.say)
    finally:
        if credentials.token != token_before:  # refreshed during a long upload: keep the fresh one
            save_token(credentials, status.paths.token)
    ctx.say(f"published: {result.url} ({len(result.sent)} sent, {len(result.skipped)} already done)")


if __name__ == "__main__":
    script.run(main)
