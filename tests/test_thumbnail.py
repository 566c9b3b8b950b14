"""10.thumbnail.py and common.pictures.thumbnail: the title always inside the frame, the file under 2 MB, jobs as asked."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.run.errors import ConfigError
from common.pictures.thumbnail import (
    LAYOUTS, MAX_THUMBNAIL_BYTES, POSITIONS, SHORTS_SIZE, THUMBNAIL_SIZE, TitleStyle, chained_loras, compose,
    encode_thumbnail, styled_prompt,
)
from common.pictures.image_files import request_size
from common.pictures.text_fit import fit_title
from tests.fakes import start_fake_comfyui
from tests.support.project import copy_pipeline, env_for, run_script

TITLES = (
    "Gull Point",
    "The Crimson Rose of Rosemund Valley",
    "An Extraordinarily Long Title About a Lighthouse Keeper, His Niece, Smugglers and Fog on the Shoals",  # 99
    "Pneumonoultramicroscopicsilicovolcanoconiosis" * 2,  # one word far wider than the frame
)


def _picture(width: int, height: int, grain: float = 18.0) -> Image.Image:
    """A photo-like picture: smooth colour fields plus grain (what defeats PNG compression)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 255, y / height * 220, 128 + 90 * np.sin(x / 37.0 + y / 53.0)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, grain, base.shape), 0, 255).astype(np.uint8))


def _inside(box: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


def _check_title_inside(picture: Image.Image, size: tuple[int, int], style: TitleStyle, title: str) -> None:
    result = compose(picture, title, size, style)
    assert result.image.size == size
    frame = (0, 0, *size)
    assert result.band is not None and _inside(result.band, frame)
    assert result.text_boxes, (style, title)
    for box in result.text_boxes:
        assert _inside(box, frame) and _inside(box, result.band), (style, title, box, result.band)
    if not result.fit.truncated:  # every letter of a title that fits is drawn: nothing dropped silently
        assert "".join(result.fit.lines).replace(" ", "") == title.replace(" ", "")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_title_stays_inside_the_thumbnail_for_every_position_and_length(layout: str) -> None:
    picture = _picture(*THUMBNAIL_SIZE)
    for position in POSITIONS:
        for title in TITLES:
            _check_title_inside(picture, THUMBNAIL_SIZE, TitleStyle(position, layout), title)
    for title in TITLES[2:]:
        _check_title_inside(picture, THUMBNAIL_SIZE, TitleStyle("bottom", layout, 3.0), title)


def test_title_stays_inside_the_shorts_covers() -> None:
    picture = _picture(*SHORTS_SIZE)
    for layout in LAYOUTS:
        for position in POSITIONS:
            _check_title_inside(picture, SHORTS_SIZE, TitleStyle(position, layout, 2.0), TITLES[2])
    _check_title_inside(_picture(640, 360), SHORTS_SIZE, TitleStyle("top", "fit"), TITLES[3])  # a landscape picture


def test_position_moves_the_title_and_scale_grows_it() -> None:
    picture = _picture(*THUMBNAIL_SIZE)
    tops = {p: compose(picture, "Gull Point", THUMBNAIL_SIZE, TitleStyle(p, "overlay")).band[1] for p in POSITIONS}
    assert tops["top"] < tops["middle"] < tops["bottom"]
    small = compose(picture, "Gull Point", THUMBNAIL_SIZE, TitleStyle("middle", "overlay", 0.6)).fit.size
    large = compose(picture, "Gull Point", THUMBNAIL_SIZE, TitleStyle("middle", "overlay", 1.5)).fit.size
    assert small < large


def test_long_titles_wrap_into_even_lines() -> None:
    fit = fit_title(TITLES[2], 1100, 400, max_size=86, min_size=25)
    assert len(fit.lines) >= 2 and not fit.truncated
    widths = [len(line) for line in fit.lines]
    assert max(widths) - min(widths) < max(widths) * 0.5  # balanced, not one long line and a stub


def test_a_title_that_cannot_fit_is_cut_with_an_ellipsis_not_clipped() -> None:
    fit = fit_title("word " * 200, 300, 60, max_size=40, min_size=20)
    assert fit.truncated and fit.lines[-1].endswith("\u2026") and fit.height <= 60 and fit.width <= 300


def test_expand_and_fit_keep_the_whole_picture_visible() -> None:
    picture = Image.new("RGB", (1280, 720), (200, 30, 30))
    for layout in ("expand", "fit"):
        result = compose(picture, "Gull Point", THUMBNAIL_SIZE, TitleStyle("top", layout))
        band_bottom = result.band[3]
        below = np.asarray(result.image)[band_bottom + 5 :, 640]
        assert (below[:, 0] > 150).all() and (below[:, 1] < 80).all(), layout  # the red picture, unobscured


def test_title_can_be_turned_off() -> None:
    result = compose(_picture(1280, 720), "Gull Point", THUMBNAIL_SIZE, TitleStyle(enabled=False))
    assert result.text_boxes == [] and result.image.size == THUMBNAIL_SIZE


def test_a_photo_like_thumbnail_stays_under_2_mb() -> None:
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 256, (720, 1280, 3), dtype=np.uint8))
    data, kind = encode_thumbnail(noise)
    assert len(data) < MAX_THUMBNAIL_BYTES and kind.startswith("png-") and kind != "png-rgb"
    import io

    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG" and img.size == THUMBNAIL_SIZE
    smooth, kind = encode_thumbnail(_picture(1280, 720, grain=3))
    assert kind == "png-rgb" and len(smooth) < MAX_THUMBNAIL_BYTES


def test_settings_helpers() -> None:
    assert styled_prompt("A lighthouse.", "Ghibli Art") == "Ghibli Art style. A lighthouse."
    assert styled_prompt("A lighthouse.", "Watercolor style") == "Watercolor style. A lighthouse."
    assert request_size(SHORTS_SIZE) == (1088, 1920)

    class S:
        USE_LORA = True
        LORAS = [{"name": "a.safetensors", "strength_model": 0.5}, {"name": "b.safetensors", "enabled": False}]

    assert chained_loras(S) == (("a.safetensors", 0.5, 1.0),)
    S.LORAS = [{"strength_model": 1}]
    with pytest.raises(ConfigError, match="LORAS entry 1"):
        chained_loras(S)
    S.USE_LORA = False
    assert chained_loras(S) == ()
    with pytest.raises(ConfigError, match="TITLE_LAYOUT"):
        TitleStyle(layout="sideways")


# ---------------------------------------------------------------- 10.thumbnail.py, as a user runs it

def _pipeline(tmp_path: Path, fixtures_dir: Path) -> Path:
    pipeline = copy_pipeline(tmp_path)
    for name in ("10.title.txt", "10.thumbnail.txt"):
        shutil.copy2(fixtures_dir / "gen.audio" / "input" / name, pipeline / "input" / name)
    return pipeline


def _state(pipeline: Path) -> dict:
    return json.loads((pipeline / "output" / "tracking" / "10.thumbnail.state.json").read_text())["items"]


def _check_outputs(pipeline: Path, covers: int) -> None:
    thumbnail = pipeline / "output" / "thumbnail.png"
    assert thumbnail.stat().st_size < MAX_THUMBNAIL_BYTES
    with Image.open(thumbnail) as img:
        assert img.format == "PNG" and img.size == THUMBNAIL_SIZE
    for number in range(1, covers + 1):
        with Image.open(pipeline / "output" / "shorts" / f"cover.v{number}.png") as img:
            assert img.size == SHORTS_SIZE
    state = _state(pipeline)
    for key, item in state.items():
        if key.endswith(".titled"):
            size = THUMBNAIL_SIZE if key.startswith("thumbnail") else SHORTS_SIZE
            assert item["data"]["text_boxes"] and all(_inside(tuple(b), (0, 0, *size)) for b in item["data"]["text_boxes"])


def test_offline_thumbnail_covers_and_a_rerun_that_does_nothing(tmp_path: Path, fixtures_dir: Path) -> None:
    pipeline = _pipeline(tmp_path, fixtures_dir)
    env = env_for(PIPELINE_ENGINE="offline", SHORTS_VARIATIONS="2")
    first = run_script(pipeline, "10.thumbnail.py", env=env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    _check_outputs(pipeline, 2)
    covers = [(pipeline / "output" / "shorts" / f"cover.v{n}.png").read_bytes() for n in (1, 2)]
    assert covers[0] != covers[1]
    assert all(item["preview"] for item in _state(pipeline).values())

    outputs = sorted((pipeline / "output").rglob("*.png"))
    stamps = [p.stat().st_mtime_ns for p in outputs]
    again = run_script(pipeline, "10.thumbnail.py", env=env, timeout=60)
    assert again.returncode == 0 and "3 items: 0 made, 3 already done" in again.stdout
    assert " made, 0 already" not in again.stdout
    assert [p.stat().st_mtime_ns for p in outputs] == stamps

    # A new layout redraws the titles only; fewer covers removes the extra one.
    moved = run_script(pipeline, "10.thumbnail.py", env=env_for(PIPELINE_ENGINE="offline", SHORTS_VARIATIONS="1",
                                                                TITLE_POSITION="top", TITLE_LAYOUT="fit"), timeout=60)
    assert moved.returncode == 0, moved.stderr
    assert "2 items: 0 made, 2 already done" in moved.stdout and "2 items: 2 made, 0 already done" in moved.stdout
    assert not (pipeline / "output" / "shorts" / "cover.v2.png").exists()
    _check_outputs(pipeline, 1)


def test_thumbnail_jobs_through_fake_comfyui(tmp_path: Path, fixtures_dir: Path) -> None:
    pipeline = _pipeline(tmp_path, fixtures_dir)
    Image.new("RGB", (1280, 720), (90, 30, 40)).save(pipeline / "input" / "10.latent.thumbnail.png")
    loras = [{"name": "ghibli_style.safetensors", "strength_model": 0.8, "strength_clip": 0.6},
             {"name": "detail_tweaker.safetensors", "enabled": False}]
    with start_fake_comfyui(tmp_path, job_seconds=0.05) as comfy:
        base = dict(PIPELINE_ENGINE="comfyui", COMFYUI_BASE_URL=comfy.url, LM_STUDIO_CMD="no-such-lms",
                    SHORTS_VARIATIONS="1", FIXED_SEED="4242", ART_STYLE="Ink")
        plain = run_script(pipeline, "10.thumbnail.py", env=env_for(**base), timeout=120)
        assert plain.returncode == 0, plain.stdout + plain.stderr
        first_jobs = comfy.prompts()
        again = run_script(pipeline, "10.thumbnail.py", env=env_for(**base), timeout=60)
        assert again.returncode == 0 and len(comfy.prompts()) == len(first_jobs) == 2
        styled = run_script(pipeline, "10.thumbnail.py", "--force-start",
                            env=env_for(**base, USE_LORA="true", LORAS=json.dumps(loras), LATENT_MODE="IMAGE"), timeout=120)
        assert styled.returncode == 0, styled.stdout + styled.stderr
        lora_jobs = comfy.prompts()[2:]
    _check_outputs(pipeline, 1)
    assert not any(item.get("preview") for item in _state(pipeline).values())

    def nodes(job: dict, cls: str) -> list[dict]:
        return [n["inputs"] for n in job.values() if n["class_type"] == cls]

    thumb, cover = first_jobs
    prompt = (fixtures_dir / "gen.audio" / "input" / "10.thumbnail.txt").read_text().strip()
    assert nodes(thumb, "CLIPTextEncode")[0]["text"] == "Ink style. " + prompt
    assert nodes(thumb, "EmptySD3LatentImage")[0]["width"] == 1280 and nodes(thumb, "EmptySD3LatentImage")[0]["height"] == 720
    assert nodes(thumb, "KSampler")[0]["seed"] == 4242 and nodes(thumb, "KSampler")[0]["steps"] == 25
    assert not nodes(thumb, "LoraLoader") and not nodes(thumb, "LoadImage")
    assert nodes(cover, "KSampler")[0]["seed"] == 4243  # FIXED_SEED + the cover's number
    assert [(n["width"], n["height"]) for n in nodes(cover, "EmptySD3LatentImage")] == [(1088, 1920)]
    assert "Vertical 9:16" in nodes(cover, "CLIPTextEncode")[0]["text"]

    thumb = lora_jobs[0]
    (lora,) = nodes(thumb, "LoraLoader")
    assert (lora["lora_name"], lora["strength_model"], lora["strength_clip"]) == ("ghibli_style.safetensors", 0.8, 0.6)
    lora_id = next(k for k, n in thumb.items() if n["class_type"] == "LoraLoader")
    assert nodes(thumb, "KSampler")[0]["model"] == [lora_id, 0]
    assert nodes(thumb, "CLIPTextEncode")[0]["clip"] == [lora_id, 1]
    # IMAGE mode: the empty latent gives way to the start image, encoded, and the sampler denoises 0.8.
    assert not nodes(thumb, "EmptySD3LatentImage")
    (loader,) = nodes(thumb, "LoadImage")
    assert loader["image"].endswith(".png")
    encoder_id = next(k for k, n in thumb.items() if n["class_type"] == "VAEEncode")
    assert nodes(thumb, "KSampler")[0]["latent_image"] == [encoder_id, 0]
    assert nodes(thumb, "KSampler")[0]["denoise"] == pytest.approx(0.8)
    assert all(nodes(j, "EmptySD3LatentImage") for j in lora_jobs[1:])  # covers have no start image of their own
