"""Durable state: atomic writes, per-item checkpoints, the run stamp that lets a finished run skip."""
