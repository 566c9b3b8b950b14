"""ComfyUI: the HTTP/WebSocket client, several servers as one pool, and API-format workflow editing."""
