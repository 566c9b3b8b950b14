"""The machinery that runs scripts: the numbered-script runner, the orchestrator, preflight, progress, errors and the report."""
