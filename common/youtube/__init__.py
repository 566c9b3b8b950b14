"""Publishing to YouTube (SPEC 9): credentials, metadata rules, resumable uploads, the dry-run manifest.

`auth` (check_credentials for the overnight preflight, authorize, youtube_service),
`metadata` (YouTube's limits), `checks` (preview refusal, pre-upload ffmpeg check),
`upload` (resumable, checkpointed, retried uploads), `manifest` (dry run), `publish` (step 12).
The Google client libraries are imported only inside functions, so importing this package
costs nothing for the pipeline steps that never publish.
"""
from common.youtube.auth import CredentialStatus, authorize, check_credentials, credential_paths, youtube_service
from common.youtube.publish import PublishInputs, PublishResult, dry_run, open_state, publish

__all__ = [
    "CredentialStatus", "authorize", "check_credentials", "credential_paths", "youtube_service",
    "PublishInputs", "PublishResult", "dry_run", "open_state", "publish",
]
