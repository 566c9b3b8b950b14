"""Storyboard cards: size, byte-identical repeats, colours from the text, text kept inside."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.run.errors import InputError
from common.media.fonts import font_source, load_font
from common.offline import cards
from common.pictures.text_fit import fit_text
from common.offline.cards import (
    character_card,
    draw_card,
    hex_colours,
    identity_colour,
    location_card,
    named_colours,
    palette_from_text,
    render_card,
    scene_card,
    thumbnail_card,
)

pytestmark = pytest.mark.timeout(60)

LOCATION = (
    "A medium-sized Victorian living room features a park ground made of wood chips in earthy green "
    "(#787c2e), surrounded by an urban skyline of concrete in deep blue (#005b96). Centered on the back "
    "wall is a fireplace with orange brick (#ff8c00) and a black silk clock above it."
)
CHARACTER = (
    "A fair-skinned elderly man with an oval face, blue eyes, straight blonde hair, wears a crisp white "
    "long-sleeve button-down shirt tucked into black pilot pants, paired with brown leather loafers."
)
LONG_WORDS = " ".join(f"word{i} alpha beta gamma delta epsilon" for i in range(400))


def _inside(box: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


def test_each_card_has_the_requested_size(tmp_path: Path) -> None:
    made = [
        (character_card("male_doctor_watson", CHARACTER, tmp_path / "c.png"), (633, 950)),
        (location_card("loc_1", LOCATION, tmp_path / "l.png"), (1280, 720)),
        (scene_card("scene_1.1", LOCATION, [("male_doctor_watson", "reading")], tmp_path / "s.png",
                    width=640, height=360), (640, 360)),
        (thumbnail_card("The Crimson Rose", "A dark forest at twilight.", tmp_path / "t.png"), (1280, 720)),
    ]
    for path, size in made:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", size)


def test_identical_inputs_give_identical_bytes(tmp_path: Path) -> None:
    args = ("scene_2.4", LOCATION, [("male_detective_holmes", "warming hands"), ("female_mother", "weeping")])
    first = scene_card(*args, tmp_path / "a.png", width=480, height=270).read_bytes()
    again = scene_card(*args, tmp_path / "b.png", width=480, height=270).read_bytes()
    other = scene_card("scene_2.5", *args[1:], tmp_path / "c.png", width=480, height=270).read_bytes()
    assert first == again
    assert first != other
    with Image.open(tmp_path / "a.png") as image:
        assert not image.info  # no timestamps or text chunks that would make runs differ


def test_palette_comes_from_hex_colours_in_order() -> None:
    assert hex_colours(LOCATION) == [(0x78, 0x7C, 0x2E), (0x00, 0x5B, 0x96), (0xFF, 0x8C, 0x00)]
    assert palette_from_text(LOCATION) == hex_colours(LOCATION)
    # Repeats and longer hex runs (not colours) are ignored; a short list is padded from the hash.
    padded = palette_from_text("wall #112233, again #112233, id #1234567")
    assert padded[0] == (0x11, 0x22, 0x33) and len(padded) == 3
    assert padded == palette_from_text("wall #112233, again #112233, id #1234567")


def test_palette_falls_back_to_colour_words_then_hash() -> None:
    found = named_colours("a dark_gray coat, navy shoes, a linen curtain and a Light Yellow shirt")
    assert found == [(169, 169, 169), (0, 0, 128), (255, 255, 224)]  # "linen" is a cloth here
    assert palette_from_text("black pilot pants")[0] == (0, 0, 0)
    plain = palette_from_text("a quiet room")
    assert len(plain) == 3 and plain == palette_from_text("a quiet room")
    assert plain != palette_from_text("a noisy street")


def test_the_palette_colours_the_card(tmp_path: Path) -> None:
    red = cards.render_card(width=320, height=180, title="loc_r", body_lines=["walls #d01010 and #a00000"]).image
    blue = cards.render_card(width=320, height=180, title="loc_b", body_lines=["walls #1010d0 and #0000a0"]).image
    red_mean = np.asarray(red, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    blue_mean = np.asarray(blue, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    assert red_mean[0] > red_mean[2] + 15
    assert blue_mean[2] > blue_mean[0] + 15


def test_characters_keep_one_colour_everywhere() -> None:
    assert identity_colour("male_doctor_watson") == identity_colour("male_doctor_watson")
    assert identity_colour("male_doctor_watson") != identity_colour("male_detective_holmes")


def test_fit_text_wraps_inside_its_box() -> None:
    fitted = fit_text(LOCATION, 300, 200, max_size=40, min_size=8)
    font = load_font(fitted.size)
    assert not fitted.truncated and len(fitted.lines) > 1
    assert fitted.width <= 300 and fitted.height <= 200
    assert all(font.getlength(line) <= 300 for line in fitted.lines)
    assert " ".join(fitted.lines).split() == LOCATION.split()  # every word kept, none split


def test_fit_text_shrinks_then_truncates_at_the_smallest_size() -> None:
    roomy = fit_text("short", 400, 100, max_size=60, min_size=10)
    assert roomy.size == 60
    squeezed = fit_text(LONG_WORDS, 400, 100, max_size=60, min_size=10)
    assert squeezed.size == 10 and squeezed.truncated
    assert squeezed.height <= 100 and squeezed.lines[-1].endswith("\u2026")
    unbreakable = fit_text("x" * 300, 120, 200, max_size=30, min_size=12)
    assert unbreakable.width <= 120 and len(unbreakable.lines) > 1


@pytest.mark.parametrize("size", [(1280, 720), (633, 950), (320, 180)])
def test_long_text_stays_inside_the_card(size: tuple[int, int]) -> None:
    width, height = size
    render = render_card(width=width, height=height, title="scene_" + "9" * 60, subtitle=LONG_WORDS[:400],
                         body_lines=[LOCATION, LONG_WORDS, "Z" * 500],
                         figures=[cards.Figure(f"Character number {i} with a long name", identity_colour(str(i)))
                                  for i in range(5)])
    assert render.image.size == size
    assert render.truncated
    assert len(render.text_boxes) > 5
    frame = (0, 0, width, height)
    for box in render.text_boxes:
        assert _inside(box, frame), box
    for panel in render.panels:
        assert _inside(panel, frame), panel
    body_panel = render.panels[-1]
    assert any(_inside(box, body_panel) for box in render.text_boxes)


def test_scene_card_draws_every_character_and_its_action(tmp_path: Path) -> None:
    people = [(f"male_person_{i}", f"action {i}") for i in range(4)]
    render = render_card(width=1280, height=720, title="scene_1.1",
                         body_lines=[f"{cards.display_name(t)}: {a}" for t, a in people],
                         figures=[cards.Figure(cards.display_name(t), identity_colour(t)) for t, _ in people])
    assert not render.truncated
    pixels = np.asarray(render.image).reshape(-1, 3)
    for tag, _ in people:  # each silhouette's identity colour is on the card
        distance = np.abs(pixels.astype(int) - np.array(identity_colour(tag))).sum(axis=1)
        assert (distance < 40).sum() > 500, tag


def test_unicode_text_is_drawn(tmp_path: Path) -> None:
    path = draw_card(tmp_path / "u.png", width=400, height=300, title="Café Ελληνικά",
                     body_lines=["Привет, мир — naïve façade"])
    with Image.open(path) as image:
        assert image.size == (400, 300)


def test_output_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "loc_9.png"
    location_card("loc_9", LOCATION, target, width=320, height=180)
    assert [p.name for p in target.parent.iterdir()] == ["loc_9.png"]


def test_bad_arguments_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        draw_card(tmp_path / "x.png", width=20, height=20, title="x")
    with pytest.raises(InputError):
        draw_card(tmp_path / "y.png", width=200, height=200, title="y", palette=["not-a-colour"])
    assert not list(tmp_path.iterdir())


def test_display_name_reads_like_a_name() -> None:
    assert cards.display_name("male_doctor_watson") == "Doctor Watson"
    assert cards.display_name("narrator") == "Narrator"


def test_fonts_are_scalable_and_bold_is_heavier() -> None:
    regular, bold = load_font(40), load_font(40, bold=True)
    assert regular.getbbox("Hg")[3] - regular.getbbox("Hg")[1] > 25
    assert bold.getlength("Holmes and Watson") > regular.getlength("Holmes and Watson")
    assert font_source()


def test_text_stays_in_view_through_every_camera_move() -> None:
    from common.offline.kenburns import MOVES, window_at

    width, height = 1280, 720
    render = render_card(width=width, height=height, title="scene_1.1", body_lines=[LOCATION, LONG_WORDS],
                         figures=[cards.Figure(f"Person {i}", identity_colour(str(i))) for i in range(3)])
    for move in MOVES:
        for t in (0.0, 0.5, 1.0):
            win = window_at(move, t, width, height)
            view = (int(np.floor(win.x)), int(np.floor(win.y)), int(np.ceil(win.x + win.width)),
                    int(np.ceil(win.y + win.height)))
            for box in render.text_boxes:
                assert _inside(box, view), (move, t, box)


def test_a_crowd_on_a_tiny_card_still_draws_inside() -> None:
    crowd = [cards.Figure(f"Person {i}", identity_colour(str(i))) for i in range(40)]
    render = render_card(width=160, height=90, title="scene_9.9", body_lines=["Everyone: waiting"], figures=crowd)
    assert render.image.size == (160, 90)
    for box in render.text_boxes:
        assert _inside(box, (0, 0, 160, 90))
    nothing = fit_text("W", 3, 50, max_size=20, min_size=8)
    assert nothing.lines == () and nothing.truncated


@pytest.mark.parametrize("size", [(64, 64), (128, 72), (192, 112), (300, 120)])
def test_small_scene_cards_with_people_never_crash(tmp_path: Path, size: tuple[int, int]) -> None:
    out = cards.scene_card("scene_1.1", "a room", [("male_a", "sits"), ("female_b", "stands")], tmp_path / "s.png", *size)
    with Image.open(out) as img:
        assert img.size == size
