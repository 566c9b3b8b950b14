"""Segment planning (common.video.animation): frame rules, length limits, chaining, trimming, slots."""
from __future__ import annotations

import math

import pytest

from common.video.animation import (
    FrameRule, Segment, camera_move_in, fill_slots, model_rule, plan_clip, slot_frames,
)
from common.run.errors import ConfigError, InputError

LTX = FrameRule(8, None, "ltx")
WAN5 = FrameRule(4, 5.0, "wan")


def test_frame_rules_of_the_models() -> None:
    assert [n for n in range(1, 40) if LTX.valid(n)] == [9, 17, 25, 33]
    assert [n for n in range(1, 22) if WAN5.valid(n)] == [5, 9, 13, 17, 21]
    assert LTX.round_up(97) == 97 and LTX.round_up(98) == 105 and LTX.round_up(2) == 9
    assert WAN5.round_up(82) == 85 and WAN5.round_down(84) == 81
    assert FrameRule().valid(1) and FrameRule().round_up(7) == 7
    # "5 seconds" is 81 frames at WAN's native 16 fps (80 intervals) and 121 at 24 fps.
    assert WAN5.max_frames(16) == 81 and WAN5.max_frames(24) == 121
    assert FrameRule(8, 5.0).max_frames(24) == 121 and FrameRule(8, 4.0).max_frames(24) == 97
    assert LTX.max_frames(24) is None


def test_model_rule_from_settings() -> None:
    rule = model_rule("wan", {"ltx": 8.0, "wan": 5.0})
    assert (rule.step, rule.max_seconds, rule.name) == (4, 5.0, "wan")
    assert model_rule("ltx", {}).max_seconds is None
    with pytest.raises(ConfigError, match="VIDEO_WORKFLOW"):
        model_rule("sora", {})
    with pytest.raises(ConfigError, match="MODEL_MAX_SECONDS"):
        model_rule("wan", {"wan": -1})


def test_a_12_second_scene_on_a_5_second_model_is_three_chained_segments() -> None:
    for fps in (16, 24):
        plan = plan_clip(12 * fps, WAN5, fps)
        assert len(plan.segments) == 3
        first, second, third = plan.segments
        assert not first.drop_first and second.drop_first and third.drop_first  # each continues the last frame
        assert all(WAN5.valid(s.frames) and s.frames <= WAN5.max_frames(fps) for s in plan.segments)
        assert sum(len(s.frame_indices()) for s in plan.segments) == 12 * fps
    assert [s.frames for s in plan_clip(288, WAN5, 24).segments] == [97, 97, 97]  # even, not 121+121+small


def test_a_scene_within_the_limit_is_one_job_rounded_up_and_trimmed() -> None:
    plan = plan_clip(100, LTX, 24)
    (only,) = plan.segments
    assert only.frames == 105 and only.frame_indices() == list(range(100))  # trimmed at the end
    assert not plan.direct
    assert plan_clip(97, LTX, 24).direct
    short = plan_clip(3, LTX, 24)  # shorter than the model's shortest job
    assert short.segments[0].frames == 9 and short.segments[0].frame_indices() == [0, 1, 2]


def test_a_clip_that_ends_on_a_picture_is_retimed_not_cut() -> None:
    plan = plan_clip(100, LTX, 24, ends_on_image=True)
    indices = plan.segments[0].frame_indices()
    assert len(indices) == 100 and indices[0] == 0 and indices[-1] == 104  # still lands on the end picture
    assert indices == sorted(set(indices))
    assert max(b - a for a, b in zip(indices, indices[1:])) == 2  # frames dropped one at a time, evenly


@pytest.mark.parametrize("rule", [FrameRule(1, None), FrameRule(1, 2.0), FrameRule(4, 1.0), FrameRule(4, 5.0),
                                  FrameRule(8, 0.5), FrameRule(8, 4.0), FrameRule(8, 8.0)])
@pytest.mark.parametrize("fps", [16, 24, 30])
def test_every_plan_is_exact_valid_and_only_trims_its_last_segment(rule: FrameRule, fps: int) -> None:
    most = rule.max_frames(fps)
    for frames in range(1, 400):
        for ends in (False, True):
            plan = plan_clip(frames, rule, fps, ends_on_image=ends)
            assert plan.frames == frames
            assert sum(len(s.frame_indices()) for s in plan.segments) == frames
            for segment in plan.segments:
                assert rule.valid(segment.frames)
                assert most is None or segment.frames <= most
            for segment in plan.segments[:-1]:  # earlier segments end on their last frame: the next starts there
                assert segment.frame_indices()[-1] == segment.frames - 1
            if ends:
                assert plan.segments[-1].frame_indices()[-1] == plan.segments[-1].frames - 1
            if most is not None and frames > most:
                fewest = 1 + math.ceil((frames - most) / (most - 1))
                assert fewest <= len(plan.segments) <= fewest + 1


def test_bad_lengths_are_errors() -> None:
    with pytest.raises(InputError):
        plan_clip(0, LTX, 24)
    with pytest.raises(ValueError):
        Segment(0, 9, True, 9).frame_indices()  # only 8 frames left after the shared one


def test_slots_are_frame_exact_and_fill_the_audio() -> None:
    assert slot_frames(0.0, 3.2, 24) == 77 and slot_frames(3.2, 5.3, 24) == 50
    starts = [0.0, 3.2, 5.3, 17.3]
    assert fill_slots(starts, 500, 24) == [77, 50, 288, 85]
    assert sum(fill_slots(starts, 437, 24)) == 437  # a mix a little shorter than the timeline
    assert fill_slots(starts, 300, 24) == [77, 50, 173, 0]  # shots past the end get nothing
    assert fill_slots([0.4, 1.0], 48, 24) == [24, 24]  # the first shot always starts the video


def test_camera_words_become_ken_burns_moves() -> None:
    assert camera_move_in("Ada ties the rope. The camera slowly pushes in.") == "zoom_in"
    assert camera_move_in("The camera pulls back to reveal the bay.") == "zoom_out"
    assert camera_move_in("Slow dolly in on her face") == "zoom_in"
    assert camera_move_in("The camera pans slowly to the left across the room.") == "pan_left"
    assert camera_move_in("The camera tilts up to the lamp.") == "pan_up"
    assert camera_move_in("The camera pans right, then pushes in.") == "pan_right"  # the first move named
    assert camera_move_in("Rain streaks down the windows.") is None
