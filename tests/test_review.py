"""output/review.html: what it lists, that its text is escaped, and that a real browser shows every picture.

The browser test uses Debian's chromium headless (`apt-get install -y chromium`); without it the
test is skipped and says so. `--dump-dom` returns the page after its load event, when the page's
own few lines of script have marked each <img> loaded or not.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from common.state.checkpoints import CheckpointStore
from common.pictures.review import render_review, write_review
from tests.support.image_inputs import picture

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
EVIL = '<script>alert("x")</script> & "quotes"'


def record(pipeline: Path, script: str, key: str, kind: str, size: tuple[int, int], order: int, **extra) -> Path:
    folder = {"character": "characters", "location": "locations", "scene": "scene"}[kind]
    path = picture(pipeline / "output" / folder / f"{key}.png", size, ("red", "green", "blue")[order % 3])
    store = CheckpointStore(pipeline / "output" / "tracking" / f"{script}.state.json", base_dir=pipeline)
    data = {"kind": kind, "item_id": key, "variation": 1, "order": order, "prompt": f"a picture of {key}",
            "seed": 333555666 + order, "random_seed": False, "take": 0, "width": size[0], "height": size[1],
            "settings": {"ART_STYLE": "Ghibli Art"}, "passes": [{"number": 1, "loras": [], "steps": 25, "input": "empty latent"}],
            "references": [], **extra}
    store.record(key, "fp", files=[path], data=data, preview=True)
    store.record(f"{key}#pass1", "fp", files=[path], data={"pass": 1})  # an unfinished pass: not a picture
    return path


def identity(score: float, flagged: bool, characters: dict[str, tuple[float, str]]) -> dict:
    """An item's `identity` data as common.pictures.identity records it."""
    scores = {tag: {"score": s, "reason": r} for tag, (s, r) in characters.items()}
    tried = [{"candidate": n, "take": n - 1, "seed": 333555666 + n, "score": score, "characters": scores}
             for n in range(1, 4 if flagged else 2)]
    return {"scene": "x", "judge": "vision", "judged": True, "score": score, "flagged": flagged, "threshold": 0.6,
            "kept": len(tried), "seed": tried[-1]["seed"], "retakes": len(tried) - 1, "characters": scores,
            "candidates": tried}


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    root = tmp_path / "gen.image"
    record(root, "2.character", "male_doctor_watson", "character", (60, 90), 0)
    record(root, "2.character", "female_nervous_mother", "character", (60, 90), 1, prompt=EVIL)
    for n in (1, 2):
        record(root, "2.location", f"loc_{n}", "location", (160, 90), n - 1)
    ref = picture(root / "output" / "references" / "scene_1.1.1.png", (60, 90), "red")
    record(root, "3.scene", "scene_1.1", "scene", (160, 90), 0, references=["output/references/scene_1.1.1.png"],
           identity=identity(0.92, False, {"male_doctor_watson": (0.92, "same white shirt and grey hair")}))
    record(root, "3.scene", "scene_1.2", "scene", (160, 90), 1,
           identity=identity(0.31, True, {"male_doctor_watson": (0.88, "his loafers and shirt"),
                                          "female_nervous_mother": (0.31, "her coat is red, the sheet's is charcoal")}))
    assert ref.is_file()
    return root


def test_the_page_lists_every_picture_with_relative_links_and_escaped_text(pipeline: Path) -> None:
    page = render_review(pipeline)
    assert page.count("<figure") == 6 and "#pass1" not in page
    for src in ("characters/male_doctor_watson.png", "locations/loc_2.png", "scene/scene_1.2.png",
                "references/scene_1.1.1.png"):
        assert f'src="{src}"' in page
    assert "file:" not in page and str(pipeline) not in page  # the folder can move
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;" in page
    assert page.index("male_doctor_watson") < page.index("female_nervous_mother")  # description order
    assert "Characters (2)" in page and "Locations (2)" in page and "Scenes (2)" in page
    assert "seed 333555666" in page and "preview" in page and "retake.txt" in page
    assert "No scenes yet" in render_review(pipeline.parent / "elsewhere")
    # The identity judge: a badge per scene picture, the flagged one first, each character's score and reason.
    assert page.index('id="scene_1.2"') < page.index('id="scene_1.1"')
    assert "flagged · identity 0.31" in page and "identity 0.92" in page and "1 picture(s) stayed under" in page
    assert "her coat is red, the sheet&#x27;s is charcoal" in page and "after 2 retake(s)" in page


def _browser() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        pytest.skip("no chromium to test the page in: install it with `apt-get install -y chromium`")
    return found


def _loaded(browser: str, page: Path, profile: Path) -> tuple[list[str], str]:
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:500]
    return re.findall(r'<img[^>]*data-loaded="(yes|no)"', dom), body.group(0), dom


def test_every_picture_loads_in_a_real_browser(pipeline: Path, tmp_path: Path) -> None:
    browser = _browser()
    page = write_review(pipeline)
    marks, body, dom = _loaded(browser, page, tmp_path / "profile")
    assert marks == ["yes"] * 7, marks  # six pictures and one reference thumbnail
    assert 'data-broken="0"' in body and 'data-images="7"' in body
    # The identity judge's scores, as the browser built the page: a badge on each scene, the flagged one first.
    scenes = dom[dom.index('<section id="scenes"'):]
    badges = re.findall(r'<figure id="(scene_[\d.]+)"[^>]*>.*?<span class="badge (?:ok|flag) identity"[^>]*>([^<]+)</span>',
                        scenes, re.S)
    assert badges == [("scene_1.2", "flagged · identity 0.31"), ("scene_1.1", "identity 0.92")], badges
    assert re.search(r'<td><code>female_nervous_mother</code></td><td class="score">0.31</td>', scenes)
    # The check is real: a picture that is gone shows up as not loaded.
    (pipeline / "output" / "locations" / "loc_2.png").unlink()
    marks, body, _ = _loaded(browser, page, tmp_path / "profile")
    assert marks.count("no") == 1 and 'data-broken="1"' in body
