"""A protocol-faithful fake ComfyUI server, run as its own process by tests.

    python tests/fakes/fake_comfyui.py --port 0 --job-seconds 0.2 --record events.jsonl

It answers like ComfyUI 0.8 does (shared/COMFYUI_API.md): the same routes (also under /api),
the same validation errors, the same WebSocket message order, a one-at-a-time queue, output
files that are real media (PNG, FLAC/MP3, H.264 MP4, .latent) sized by the graph, per-node caching of
the previous prompt. As in ComfyUI, only samplers send `progress` and take an interrupt mid-node;
every other node (a model load, a VAE decode, a save, a TTS node) is silent while it works and an
interrupt lands only once it has ended (--node-seconds makes such nodes slow). Model-free: nodes
are "executed" by reading the graph (sizes, lengths, frame rates, text) and drawing or
synthesising something that follows from it, so different prompts give different files.

Failure switches (--fail-mode, --missing-node, --missing-model, --ws) make the unhappy paths
reachable; --record appends one JSON line per event, flushed at once, so a test can count jobs
across restarts of this process and kills of its client.

The modules, each depending only on those above it:
    nodes       the node classes and their /object_info entries
    graph       reading a prompt: links, upstream nodes, execution order, text, cache keys
    media       real pictures, video, audio and speech made from what the graph says
    state       the server's state (queue, history, sockets, cache), the event record, messages
    latents     latent shapes through a graph (Wan S2V, LoadLatent, LatentConcat) and .latent files
    validation  POST /prompt's validation and its error shapes
    outputs     the files an output node writes and its `ui` for /history
    execution   running a job: message order, caching, progress, interrupts, failure modes
    routes      the HTTP routes and the WebSocket
    cli         the command line (the switches above, and the real ComfyUI flags it takes) and serving
"""
