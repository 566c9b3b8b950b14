"""Video: the storyboard, motion prompts, clip planning and animation jobs, frame-exact joins, final.mp4 and Shorts."""
