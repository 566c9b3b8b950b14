"""gen.image step 3: one picture per scene line (output/scene/<scene_id>.png).

Reads input/3.scene.txt (else the story's scene lines). KEYFRAME_MODE says how each picture is made
(common.pictures.keyframes): `stitched` (default), one job with ACTIVE_CHARACTER_MODE and
ACTIVE_LOCATION_MODE saying whether each character and the place go in as words (TEXT), as the
pictures 2.character.py / 2.location.py made (the characters' sheets with input/assets.json),
stitched into reference images (IMAGE), both, or not at all (NONE); `layered`, a background plate
per place and time of day, each character posed from their sheet, composited onto the plate, every
layer in output/layers/ (common.pictures.layers). Each scene is one checkpoint (and in layered mode
each plate, pose and composite pass); a new character or location picture, sheet or asset redoes
only the scenes that used it. Each scene is made as KEYFRAME_CANDIDATES candidates judged against
its characters' sheets and retaken while under IDENTITY_THRESHOLD (common.pictures.keyframe_judge),
the scores in output/identity.json. Ends by rewriting output/review.html.
"""
from common.pictures.keyframes import Keyframes
from common.pictures.steps import answer_retakes, image_script
from common.run.runner import ScriptContext

script = image_script(__file__, "scene", "draw output/scene/<scene_id>.png for every scene line")


def main(ctx: ScriptContext) -> None:
    keyframes = Keyframes(ctx)
    try:
        keyframes.prepare()
        ctx.each(keyframes.todo, label="scene", key=lambda item: item.key, fingerprint=keyframes.judged_fingerprint,
                 work=keyframes.judged_keyframe, preview=keyframes.preview, workers=keyframes.workers)
    finally:  # the retake.txt lines whose pictures were made are answered, even when another failed
        answer_retakes(ctx, keyframes.run)
    keyframes.finish()


if __name__ == "__main__":
    script.run(main)
