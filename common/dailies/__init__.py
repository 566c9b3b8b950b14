"""The dailies: `generate.py --serve`, a local web page to watch a night's run, review every picture
and clip, retake, edit, and approve the upload.

Why a package of its own: the page only reads what the run leaves (checkpoints, log.txt,
report.json) and writes only the request files a person would edit by hand (retake.txt,
approved.txt, the description files, the story's scene lines, step 12's approval), so the
pipeline needs nothing from it and a run goes on the same with or without it.

- `workspace`: one story's folders and steps, everything read back from them (items, status)
- `tonight`: the running step and its progress, read from log.txt and the run lock
- `edits`: the writes, each the same change a hand edit makes
- `server`: the aiohttp application (token, cookie, POST-only writes, fixed routes) and `serve`
"""
