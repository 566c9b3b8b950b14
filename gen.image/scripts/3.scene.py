"""gen.image step 3: one picture per scene line (output/scene/<scene_id>.png).

Reads input/3.scene.txt (else the story's scene lines). ACTIVE_CHARACTER_MODE and
ACTIVE_LOCATION_MODE say whether each character and the place go in as words (TEXT), as the
pictures 2.character.py / 2.location.py made, stitched into reference images (IMAGE), both,
or not at all (NONE). Each scene is one checkpoint, made by common.pictures; a new character or
location picture redoes the scenes that used it. Ends by rewriting output/review.html.
"""
from common.pictures.steps import image_script, run_step
from common.run.runner import ScriptContext

script = image_script(__file__, "scene", "draw output/scene/<scene_id>.png for every scene line")


def main(ctx: ScriptContext) -> None:
    run_step(ctx, "scene")


if __name__ == "__main__":
    script.run(main)
