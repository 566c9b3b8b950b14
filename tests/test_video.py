"""gen.audio step 11: final.mp4 and the Shorts (common/video/final.py, common/video/shorts.py, 11.video.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from common.run.errors import PipelineError
from common.formats.chapters import Chapter, Chapters, write_chapters
from common.formats.srt import Cue, Srt, read_srt, write_srt
from common.media.ffmpeg import ff_path, filter_value, probe, run_ffmpeg, write_wav
from common.video.shorts import Line, captions_in, choose_passages, lines_from_cues, plan_passage, sentence_ends
from common.video.captions import caption_font, format_ass
from common.video.encode import encode_short, encode_still, kept_frames, remux_video, verify_video, vertical_cover
from tests.support.project import copy_pipeline, env_for, run_script

FRAME = 1 / 24

# (speaker, start, end, text, cues as (start, end, text)): 20 s, half-second pauses between lines.
STORY = [
    ("narrator", 0.0, 2.0, "The fog came in at dusk.", None),
    ("female_ada", 2.5, 4.5, "Uncle, are you there? Answer me.", [(2.5, 3.4, "Uncle, are you there?"), (3.5, 4.5, "Answer me.")]),
    ("male_silas", 5.0, 7.0, "Up here, child.", None),
    ("narrator", 7.5, 9.5, "The lamp room was cold.", None),
    ("female_ada", 10.0, 12.0, "Why is the lamp dark?", None),
    ("male_silas", 12.5, 14.5, "Because I put it out.", None),
    ("narrator", 15.0, 17.0, "Boats rounded the point.", None),
    ("female_ada", 17.5, 19.5, "Next time, leave a note.", None),
]
LENGTH = 20.0
LINE_STARTS = {start for _, start, *_ in STORY}


# ------------------------------------------------------------------ inputs


def make_wav(path: Path, seconds: float = LENGTH, rate: int = 48000) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    return write_wav(path, np.stack([tone, 0.8 * tone], axis=1).astype(np.float32), rate)


def make_picture(path: Path, size: tuple[int, int] = (1280, 720)) -> Path:
    rng = np.random.default_rng(3)
    noise = (rng.random((size[1] // 10, size[0] // 10, 3)) * 255).astype("uint8")
    picture = Image.fromarray(noise).resize(size, Image.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((100, 100, 500, 400), fill=(200, 40, 40))
    draw.ellipse((800, 200, 1100, 500), fill=(40, 200, 220))
    picture.save(path)
    return path


def story_cues() -> list[Cue]:
    cues: list[Cue] = []
    for _, start, end, text, parts in STORY:
        for a, b, words in parts or [(start, end, text)]:
            cues.append(Cue(len(cues) + 1, a, b, words))
    return cues


def chapters() -> Chapters:
    """Three chapters starting at lines 1, 4 and 7 (percentages of the text, as 1.character.py writes them)."""
    sizes = [len(text) for _, _, _, text, _ in STORY]
    total = sum(sizes)
    return Chapters((Chapter(100 * sum(sizes[:3]) / total, "Fog"), Chapter(100 * sum(sizes[:6]) / total, "Lamp"),
                     Chapter(100, "Boats")))


def make_pipeline(tmp_path: Path) -> Path:
    pipeline = copy_pipeline(tmp_path)
    out = pipeline / "output"
    out.mkdir()
    make_wav(out / "final.wav")
    make_picture(out / "thumbnail.png")
    lines = [{"line": n, "speaker": who, "text": text, "start": a, "end": b, "chunk": "1_8", "timing": "exact"}
             for n, (who, a, b, text, _) in enumerate(STORY, 1)]
    (out / "story.timings.json").write_text(json.dumps({"story_wav": "story.wav", "duration": LENGTH, "lines": lines}))
    write_srt(pipeline / "input" / "2.story.srt", Srt(tuple(story_cues())))
    write_chapters(pipeline / "input" / "12.chapters.txt", chapters())
    return pipeline


def frame_at(path: Path, seconds: float) -> np.ndarray:
    """The picture shown at `seconds` (the last frame starting at or before it), as RGB."""
    import av

    shown = None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time > seconds + 1e-6:
                break
            shown = frame
        assert shown is not None
        return shown.to_ndarray(format="rgb24")


def box_order(path: Path) -> list[bytes]:
    """Top-level MP4 box types, read straight from the file's bytes."""
    data = path.read_bytes()
    kinds, at = [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        kinds.append(data[at + 4:at + 8])
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        if size < 8:
            break
        at += size
    return kinds


def assert_mp4(path: Path, size: tuple[int, int], duration: float) -> None:
    info = probe(path)
    assert info.video is not None and info.audio is not None
    assert (info.video.codec, info.video.pix_fmt, info.video.width, info.video.height) == ("h264", "yuv420p", *size)
    assert info.audio.codec == "aac"
    assert abs(info.duration - duration) <= FRAME + 1e-3
    kinds = box_order(path)
    assert kinds.index(b"moov") < kinds.index(b"mdat"), kinds


# ------------------------------------------------------------------ final.mp4


def test_final_mp4_from_still(tmp_path: Path) -> None:
    wav = make_wav(tmp_path / "final.wav")
    picture = make_picture(tmp_path / "thumbnail.png")
    out = tmp_path / "final.mp4"
    encode_still(picture, wav, out, size=(1280, 720))
    assert_mp4(out, (1280, 720), LENGTH)

    import av

    with av.open(str(out)) as container:
        for stream in container.streams:  # sound and picture start together: no intro offset
            assert abs(float(stream.start_time * stream.time_base)) < 0.001
        assert container.streams.video[0].frames == pytest.approx(LENGTH * 24, abs=1)
    shown = frame_at(out, 15.0).astype(np.int16)  # a frame from a looped copy of the GOP
    original = np.asarray(Image.open(picture).convert("RGB"), dtype=np.int16)
    assert np.abs(shown - original).mean() < 6


def test_verify_video_names_what_is_wrong(tmp_path: Path) -> None:
    out = tmp_path / "final.mp4"
    encode_still(make_picture(tmp_path / "p.png"), make_wav(tmp_path / "a.wav", 3.0), out)
    with pytest.raises(PipelineError, match=r"1280x720, not 1920x1080.*lasts 3\.0\d+ s instead of 5\.000 s"):
        verify_video(out, size=(1920, 1080), duration=5.0, what="final.mp4")


def test_a_video_of_another_size_is_reencoded_and_its_last_frame_held(tmp_path: Path) -> None:
    source = tmp_path / "final_sd.mp4"  # gen.video's animation size, and a second shorter than the sound
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=1024x576:r=24:d=2", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", ff_path(source)], what="test video")
    info, how = remux_video(source, make_wav(tmp_path / "final.wav", 3.0), tmp_path / "final.mp4", size=(1280, 720))
    assert how == "re-encoded"
    assert_mp4(tmp_path / "final.mp4", (1280, 720), 3.0)
    assert info.video.duration >= 3.0 - FRAME


# ------------------------------------------------------------------ choosing passages


def lines() -> list[Line]:
    return [Line(n, a, b, text, who) for n, (who, a, b, text, _) in enumerate(STORY, 1)]


def test_passages_start_at_chapter_starts_and_end_at_sentence_ends() -> None:
    cues = story_cues()
    passages = choose_passages(lines(), cues, count=3, target=5.0, audio_end=LENGTH, chapters=chapters().chapters)
    assert [p.first_line for p in passages] == [1, 4, 7]
    ends = sentence_ends(lines(), cues)
    for p in passages:
        assert p.start in LINE_STARTS
        assert p.speech_end in ends and p.clean_end == "sentence"
        assert 2.5 <= p.duration <= 5.0
        assert p.end - p.speech_end <= 0.4 + 1e-9  # a short tail of the pause for the fade-out
    # Line 2 holds two sentences: a cut may end after the first, inside the line.
    assert 3.4 in ends


def test_more_shorts_than_chapters_fill_with_least_overlap() -> None:
    passages = choose_passages(lines(), story_cues(), count=5, target=5.0, audio_end=LENGTH,
                               chapters=chapters().chapters[:1])
    assert len(passages) == 5
    assert passages[0].first_line == 1
    assert len({p.first_line for p in passages}) == 5
    for p in passages:
        assert p.start in LINE_STARTS and p.duration <= 5.0
    # The second pick does not overlap the first at all.
    assert passages[1].start >= passages[0].end


def test_a_short_last_chapter_is_taken_whole_even_when_the_sound_ends_with_its_last_word() -> None:
    sizes = [len(text) for _, _, _, text, _ in STORY]
    two = (Chapter(100 * sum(sizes[:7]) / sum(sizes), "All but the end"), Chapter(100, "The end"))
    passages = choose_passages(lines(), story_cues(), count=2, target=5.0, audio_end=19.5, chapters=two)
    assert [p.first_line for p in passages] == [1, 8]
    assert (passages[1].speech_end, passages[1].end, passages[1].clean_end) == (19.5, 19.5, "sentence")


def test_no_sentence_end_fits_falls_back_to_a_word_end() -> None:
    long_line = [Line(1, 0.0, 9.0, "A very long sentence that goes on and on without any stop at all.")]
    cues = [Cue(1, 0.0, 2.8, "A very long sentence"), Cue(2, 2.9, 6.1, "that goes on and on"), Cue(3, 6.2, 9.0, "without any stop at all.")]
    p = plan_passage(long_line, 0, sentence_times=sentence_ends(long_line, cues), word_times=[c.end for c in cues],
                     cues=cues, target=5.0, audio_end=9.0)
    assert (p.clean_end, p.speech_end) == ("word", 2.8)


def test_seed_subtitles_give_sentence_cuts(fixtures_dir: Path) -> None:
    cues = read_srt(fixtures_dir / "gen.audio" / "input" / "2.story.srt").cues
    sentences = lines_from_cues(cues)
    end = max(c.end for c in cues)
    passages = choose_passages(sentences, cues, count=5, target=60.0, audio_end=end)
    assert len(passages) == 5
    by_end = {round(c.end, 3): c for c in cues}
    for p in passages:
        assert p.duration <= 60.0
        assert p.start in {s.start for s in sentences}
        assert by_end[round(p.speech_end, 3)].text.rstrip().endswith((".", "!", "?", '"', "”"))


def test_captions_are_clipped_and_shifted() -> None:
    shown = captions_in(story_cues(), 2.0, 4.0)
    assert [(c.start, c.end, c.text) for c in shown] == [(0.5, 1.4, "Uncle, are you there?"), (1.5, 2.0, "Answer me.")]


def test_kept_frames_cover_every_caption_change() -> None:
    frames = kept_frames(5.0, [Cue(1, 1.23, 2.0, "x")])
    assert frames[0] == 0 and frames[-1] == 119
    assert 30 in frames and 48 in frames  # ceil(1.23 * 24) = 30: never early, at most a frame late
    assert max(b - a for a, b in zip(frames, frames[1:])) <= 3  # at least 8 frames a second


def test_ass_text_is_literal() -> None:
    ass = format_ass([Cue(1, 0.0, 1.0, "a {\\b1} b\\N c\nsecond row")], (1080, 1920), caption_font())
    event = ass.strip().splitlines()[-1]
    assert event.startswith("Dialogue: 0,0:00:00.00,0:00:01.00,Caption,")
    assert "{" not in event and "\\N" not in event and "second row" in event


def test_filter_value_escapes_both_levels() -> None:
    assert filter_value("C:\\a,b'[c];d") == "C\\\\:\\\\\\\\a\\,b\\\\\\'\\[c\\]\\;d"


# ------------------------------------------------------------------ Shorts


def test_short_burns_captions_in_an_awkward_folder(tmp_path: Path) -> None:
    folder = tmp_path / "a,b'c:[d];e"  # every character ffmpeg's filter syntax treats specially
    folder.mkdir()
    wav = make_wav(tmp_path / "final.wav")
    picture = Image.open(make_picture(tmp_path / "thumbnail.png"))
    out = folder / "short.mp4"
    cues = captions_in(story_cues(), 0.0, 4.9)
    encode_short(picture, wav, out, start=0.0, end=4.9, captions=cues, font=caption_font(), fade_in=0.05, fade_out=0.4)
    assert_mp4(out, (1080, 1920), 4.9)

    cover = np.asarray(vertical_cover(picture), dtype=np.int16)
    region = slice(1370, 1500)  # where a one-row, bottom-centred caption sits
    during = frame_at(out, 1.0).astype(np.int16)  # "The fog came in at dusk."
    between = frame_at(out, 2.25).astype(np.int16)  # the pause between two lines: no caption
    plain = np.abs(between[region] - cover[region]).mean()
    assert plain < 3  # without a caption the frame is the cover, give or take compression
    assert np.abs(during[region] - cover[region]).mean() > 8 + 3 * plain


def test_script_makes_final_and_shorts_then_reruns_as_noop(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path)
    env = env_for(SHORTS_SECONDS="5", SHORTS_VARIATIONS="3")
    done = run_script(pipeline, "11.video.py", env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    out = pipeline / "output"
    assert_mp4(out / "final.mp4", (1280, 720), LENGTH)
    shorts = sorted((out / "shorts").glob("shorts.v*.mp4"))
    assert [p.name for p in shorts] == ["shorts.v1.mp4", "shorts.v2.mp4", "shorts.v3.mp4"]
    state = json.loads((out / "tracking" / "11.video.state.json").read_text())["items"]
    for path in shorts:
        info = probe(path)
        assert (info.video.width, info.video.height) == (1080, 1920)
        assert 2.5 <= info.duration <= 5.0 + FRAME
        data = state[path.stem]["data"]
        assert data["start"] in LINE_STARTS
        assert abs(info.duration - (data["end"] - data["start"])) <= FRAME
    assert [state[p.stem]["data"]["first_line"] for p in shorts] == [1, 4, 7]

    before = {p: p.stat().st_mtime_ns for p in [out / "final.mp4", *shorts]}
    again = run_script(pipeline, "11.video.py", env=env, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 made" in again.stdout and "1 made" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before

    fewer = run_script(pipeline, "11.video.py", "--mode", "shorts", env=env_for(SHORTS_SECONDS="5", SHORTS_VARIATIONS="2"))
    assert fewer.returncode == 0, fewer.stdout + fewer.stderr
    assert not (out / "shorts" / "shorts.v3.mp4").exists()  # a stale Short must not get uploaded


def test_video_file_mode_crops_to_vertical_without_distortion(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path)
    source = tmp_path / "final_sd.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", f"color=black:s=1280x720:r=24:d={LENGTH},"
                "drawbox=x=540:y=260:w=200:h=200:color=white:t=fill",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", ff_path(source)], what="test video")
    env = env_for(SHORTS_SECONDS="5", SHORTS_VARIATIONS="1")
    done = run_script(pipeline, "11.video.py", "--video-file", str(source), env=env, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    out = pipeline / "output"
    state = json.loads((out / "tracking" / "11.video.state.json").read_text())["items"]
    assert state["final.mp4"]["data"]["picture"] == "copied"
    assert_mp4(out / "final.mp4", (1280, 720), LENGTH)
    short = out / "shorts" / "shorts.v1.mp4"
    assert_mp4(short, (1080, 1920), state["shorts.v1"]["data"]["duration"])

    gray = frame_at(short, 2.25).mean(axis=2)  # between two captions: only the square is white
    rows, cols = np.nonzero(gray > 128)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert abs(width - 200 * 1920 / 720) <= 6 and abs(height - width) <= 4  # scaled evenly, not stretched
    assert abs((cols.min() + cols.max()) / 2 - 540) <= 3  # centre crop


def test_impossible_shorts_length_is_refused_before_any_work(tmp_path: Path) -> None:
    pipeline = make_pipeline(tmp_path)
    done = run_script(pipeline, "11.video.py", env=env_for(SHORTS_SECONDS="200"))
    assert done.returncode == 4
    assert "SHORTS_SECONDS" in done.stderr and "180" in done.stderr
    assert not (pipeline / "output" / "final.mp4").exists()
