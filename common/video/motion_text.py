"""gen.video 2.motion.py's question: what moves in a scene's picture, and how the camera moves.

The question, its checks and the offline wording are common.video.motion's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.engines.text import LLMText, OfflineText
from common.run.errors import InputError
from common.video import motion
from common.video.motion import MotionBrief


@dataclass
class LLMMotionText(LLMText):
    def motion_prompt(self, brief: MotionBrief, image: Path | None) -> str:
        """The vision model looks at the scene's picture, told the scene line's action to ground it."""
        if image is None:
            raise InputError(f"{brief.scene_id} has no picture to describe; run gen.image's 3.scene.py first.")
        answer = self.client.describe_image(
            motion.motion_question(brief), image, system=motion.MOTION_SYSTEM,
            validate=lambda text: motion.check_motion(motion.clean_motion(text)),
            max_tokens=motion.MAX_WORDS * 2 + 64,
        )
        return motion.motion_line(motion.clean_motion(answer))


@dataclass
class OfflineMotionText(OfflineText):
    def motion_prompt(self, brief: MotionBrief, image: Path | None) -> str:
        """The scene line's poses and actions, and the camera move its place in the story suggests."""
        return brief.fallback
