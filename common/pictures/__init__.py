"""Pictures: what they must show (from the story's markup and the LLM), one image core for characters,
locations and scenes, the thumbnail, and gen.image's timeline and slideshow.

- `story_visuals`, `descriptions`, `questions`: what each picture must show, from the story and the LLM
- `plan`: description files -> `ImageItem`s (prompt, size, seed, start picture, references)
- `prompts`: the words of each kind of prompt
- `passes`: LoRA passes (LORA_MODE serial: one job per LoRA; chained: one job)
- `stitch`, `references`: a scene's reference pictures, stitched (Pillow) and wired into a Kontext graph
- `overlay`: the NAME_OVERLAY band; `text_fit`: text fitted to a box (cards, name bands, titles)
- `image_files`: cover-crop and atomic PNG writing; `thumbnail`: the thumbnail and Shorts covers
- `retake`: gen.image/retake.txt, for --retake; `review`: output/review.html, the contact sheet
- `steps`: one step (`run_step(ctx, kind)`), what 2.character.py, 2.location.py and 3.scene.py call
- `scene_timeline`, `slideshow`: which scene shows when (4.audio.py), the clips and merged.mp4 (5.video.py)
"""
