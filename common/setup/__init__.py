"""`generate.py --setup`: ComfyUI, its node packs and the model files the workflows need, from a manifest."""
