"""ffmpeg, WAV files and fonts: the low-level media plumbing every other room uses."""
