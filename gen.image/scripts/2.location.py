"""gen.image step 2: one picture per location (output/locations/<loc_N>.png, variations <loc_N>.v2.png ...).

Reads input/2.location.txt (3.location.txt with USE_SUMMARY_TEXT), plus any place the scene
lines use that the file misses; each picture is one checkpoint, made by common.pictures.
Ends by rewriting output/review.html.
"""
from common.pictures.steps import image_script, run_step
from common.run.runner import ScriptContext

script = image_script(__file__, "location", "draw output/locations/<loc_N>.png for every location")


def main(ctx: ScriptContext) -> None:
    run_step(ctx, "location")


if __name__ == "__main__":
    script.run(main)
