"""gen.image step 2: one picture per character (output/characters/<tag>.png, variations <tag>.v2.png ...).

Reads input/2.character.txt (3.character.txt with USE_SUMMARY_TEXT); each picture is one
checkpoint, made by common.pictures (ART_STYLE, FACE_ONLY, CHARACTER_WIDTH x CHARACTER_HEIGHT,
LATENT_MODE, LoRA passes, NAME_OVERLAY). Ends by rewriting output/review.html.
"""
from common.pictures.steps import image_script, run_step
from common.run.runner import ScriptContext

script = image_script(__file__, "character", "draw output/characters/<tag>.png for every character")


def main(ctx: ScriptContext) -> None:
    run_step(ctx, "character")


if __name__ == "__main__":
    script.run(main)
