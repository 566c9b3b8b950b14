"""The offline engine (`engine`): deterministic, model-free stand-ins whose outputs are previews (SPEC 7),
good enough to check a story's timing and flow overnight without ComfyUI or an LLM server: eSpeak NG
speech (`espeak`), storyboard cards (`cards`), Ken Burns clips (`kenburns`), procedural sound (`sfx`, `sfx_dsp`).
"""
