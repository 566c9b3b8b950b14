"""gen.image step 2: one picture per character (output/characters/<tag>.png, variations <tag>.v2.png ...),
then a character sheet per character of the asset library (output/sheets/<tag>.png).

Reads input/2.character.txt (3.character.txt with USE_SUMMARY_TEXT); each picture is one
checkpoint, made by common.pictures (ART_STYLE, FACE_ONLY, CHARACTER_WIDTH x CHARACTER_HEIGHT,
LATENT_MODE, LoRA passes, NAME_OVERLAY). Then, from input/assets.json (1.story.py), each sheet:
front, three-quarter and the story's expressions, following the character's picture
(common.pictures.sheets; CHARACTER_SHEETS, SHEET_EXPRESSIONS, SHEET_COLUMNS), checkpointed per sheet
and per panel. Ends by rewriting output/review.html.
"""
from common.pictures.review import write_review
from common.pictures.sheets import run_sheets
from common.pictures.steps import image_script, run_step
from common.run.runner import ScriptContext

script = image_script(__file__, "character", "draw output/characters/<tag>.png for every character, "
                      "then output/sheets/<tag>.png for every character of input/assets.json")


def main(ctx: ScriptContext) -> None:
    run_step(ctx, "character")
    run_sheets(ctx)
    write_review(ctx.pipeline_dir)


if __name__ == "__main__":
    script.run(main)
