"""Everything the numbered scripts of gen.audio, gen.image and gen.video share."""
