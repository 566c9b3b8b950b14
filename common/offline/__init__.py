"""The offline engine: deterministic stand-ins for every model, with no weights to download.

Speech comes from eSpeak NG (`common.offline.espeak`); its outputs are previews (SPEC 7), good
enough to check a story's timing and flow overnight without ComfyUI or an LLM server.
"""
