"""Pictures: what they must show (from the story's markup and the LLM), one image core for characters,
locations and scenes, the thumbnail, and gen.image's timeline and slideshow.

- `story_visuals`, `descriptions`, `questions`: what each picture must show, from the story and the LLM
- `plan`: description files -> `ImageItem`s (prompt, size, seed, start picture, references)
- `prompts`: the words of each kind of prompt
- `passes`: LoRA passes (LORA_MODE serial: one job per LoRA; chained: one job)
- `stitch`, `references`: a scene's reference pictures (IMAGE_STITCH_COUNT, CHARACTER_RESIZE_FACTOR)
- `overlay`: the NAME_OVERLAY band
- `retake`: gen.image/retake.txt, for --retake
- `review`: output/review.html, the contact sheet
- `steps`: one step (`run_step(ctx, kind)`), what 2.character.py, 2.location.py and 3.scene.py call
"""
