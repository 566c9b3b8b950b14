"""Every engine kind through the registry: ComfyUI against the fake server, and offline for real."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from common.media import ffmpeg as media
from common.engines.choice import EngineChoice
from common.engines.base import ClipRequest, ImageRequest
from common.engines.registry import get_engine
from common.config.settings import load_settings
from tests.fakes import start_fake_comfyui

REPO = Path(__file__).resolve().parent.parent
COMFY = EngineChoice("comfyui", "llm", "test")
OFFLINE = EngineChoice("offline", "offline", "test")


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory):
    with start_fake_comfyui(tmp_path_factory.mktemp("comfy"), job_seconds=0.02) as server:
        yield server


def _settings(url: str = "http://127.0.0.1:1"):
    return load_settings(None, {"COMFYUI_BASE_URL": url}, environ={})


def test_comfy_sound_sets_prompt_and_seconds(fake, tmp_path: Path) -> None:
    engine = get_engine("sound", _settings(fake.url), REPO / "gen.audio", COMFY)
    out = engine.sound_effect("Waves on rocks", 3.0, tmp_path / "sfx.wav", seed=7)
    assert media.probe(out).audio is not None
    prompt = fake.prompts()[-1]
    assert prompt["6"]["inputs"]["text"] == "Waves on rocks" and prompt["11"]["inputs"]["seconds"] == 3.0
    assert prompt["3"]["inputs"]["seed"] == 7


def test_comfy_image_scene_size_seed_and_input_image(fake, tmp_path: Path) -> None:
    engine = get_engine("image", _settings(fake.url), REPO / "gen.image", COMFY)
    ref = tmp_path / "ref.png"
    Image.new("RGB", (64, 64), "red").save(ref)
    request = ImageRequest("scene", "scene_1.1", "Ghibli Art. A lighthouse.", 640, 360, seed=42, steps=9)
    out = engine.image(request, tmp_path / "scene.png")
    with Image.open(out) as img:
        assert img.size == (640, 360)
    prompt = fake.prompts()[-1]
    assert prompt["33"]["inputs"]["text"] == "Ghibli Art. A lighthouse."
    assert (prompt["19"]["inputs"]["width"], prompt["19"]["inputs"]["height"]) == (640, 360)
    assert (prompt["16"]["inputs"]["seed"], prompt["16"]["inputs"]["steps"]) == (42, 9)
    from common.run.errors import InputError

    with pytest.raises(InputError, match="no LoadImage node"):
        engine.image(ImageRequest("scene", "s", "x", 64, 64, seed=1, input_image=ref), tmp_path / "x.png")


def test_comfy_animation_frames_follow_ltx_rule(fake, tmp_path: Path) -> None:
    engine = get_engine("animation", _settings(fake.url), REPO / "gen.video", COMFY)
    still = tmp_path / "still.png"
    Image.new("RGB", (320, 192), "blue").save(still)
    out = engine.animate(ClipRequest("scene_1.1", still, "waves roll in", 1.0, 320, 192, 24, seed=3), tmp_path / "c.mp4")
    assert media.probe(out).video is not None
    prompt = fake.prompts()[-1]
    assert prompt["16"]["inputs"]["length"] == 25  # 24 frames -> the next 8n+1
    assert prompt["3"]["inputs"]["text"] == "waves roll in"
    assert prompt["14"]["inputs"]["image"].endswith(".png")
    assert any(e["name"] == prompt["14"]["inputs"]["image"] for e in fake.record_events("upload"))


def test_offline_engines_make_real_media(tmp_path: Path) -> None:
    settings = _settings()
    sound = get_engine("sound", settings, REPO / "gen.audio", OFFLINE)
    assert abs(media.audio_duration(sound.sound_effect("x", 2.5, tmp_path / "s.wav", seed=1)) - 2.5) < 1e-3
    image = get_engine("image", settings, REPO / "gen.image", OFFLINE)
    card = image.image(ImageRequest("scene", "scene_2.1", "the lamp room, #c9d6df", 320, 180, seed=1,
                                    details=("male_keeper_silas: lighting the lamp",)), tmp_path / "card.png")
    with Image.open(card) as img:
        assert img.size == (320, 180)
    clip = get_engine("animation", settings, REPO / "gen.video", OFFLINE).animate(
        ClipRequest("scene_2.1", card, "", 1.0, 160, 96, 12, seed=1), tmp_path / "clip.mp4")
    video = media.probe(clip).video
    assert video is not None and (video.width, video.height) == (160, 96) and video.codec == "h264"
    assert all(e.preview for e in (sound, image))
