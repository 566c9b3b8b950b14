"""Publishing: YouTube metadata from the story, credentials, checks, resumable uploads, the dry-run manifest."""
