"""The servers we talk to: ComfyUI (client, pool, workflows), the OpenAI-compatible LLM, and their start/stop lifecycle."""
