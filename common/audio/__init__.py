"""The sound chain: voices -> narration (story.wav) -> transcript, quality and subtitles -> sound effects -> final.wav."""
