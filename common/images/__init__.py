"""gen.image's pictures: one core for characters, locations and scenes (SPEC 4).

- `plan`: description files -> `ImageItem`s (prompt, size, seed, start picture, references)
- `prompts`: the words of each kind of prompt
- `passes`: LoRA passes (LORA_MODE serial: one job per LoRA; chained: one job)
- `stitch`: a scene's reference pictures side by side (IMAGE_STITCH_COUNT, CHARACTER_RESIZE_FACTOR)
- `overlay`: the NAME_OVERLAY band
- `retake`: gen.image/retake.txt, for --retake
- `review`: output/review.html, the contact sheet
- `run`: one step (`run_step(ctx, kind)`), what 2.character.py, 2.location.py and 3.scene.py call
"""
