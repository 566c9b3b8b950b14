"""The dailies page in a real browser (Debian's chromium and chromium-driver, driven by selenium): the page
of a running pipeline follows the run; a retake clicked on one scene and the upload's approval are the
same request files a hand edit makes, and the next run redoes exactly that scene and what is made from it;
a page without the token is refused; story text is shown as text.

Every wait is on something the page or the run shows (a step name, an item count, a message), with
generous bounds, never on this machine's timings. Without chromium or chromedriver the tests skip and say
so. DAILIES_SCREENSHOTS=<folder> keeps a screenshot of each of the four views there.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support.project import copy_pipeline, env_for

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
STORY = """[narrator] The lighthouse on Gull Point had been dark for three nights.
(scene_1.1) {{loc_1, a stone lighthouse on a rocky point, grey sea, fog}}, {Autumn evening}; ((female_ada)){Determined}, {Standing in a boat}{Tying a rope};
[female_ada] Uncle Silas never misses a night. Something is wrong up there.
(scene_1.2) {{loc_1}}, {Autumn evening}; ((female_ada)){Worried}, {Looking up}{Shading her eyes};
[male_bram] Take the lantern, Ada, and mind the seventh step.
(scene_1.3) {{loc_2, a narrow spiral staircase, whitewashed walls}}, {Night}; ((male_bram)){Kind}, {Standing}{Handing over a lantern};
"""
EVIL = '<img src=x onerror="document.title=\'owned\'"> & </textarea><script>document.title="owned"</script>'
OFFLINE = env_for(PIPELINE_ENGINE="offline")
RUN_BOUND = 900.0  # seconds: a bound for a whole offline run on a slow machine, not an expected time


def _tools() -> tuple[str, str]:
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no chromium and chromedriver to test the dailies page in: install them with "
                    "`apt-get install -y chromium chromium-driver`")
    return browser, driver


def _until(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout:.0f}s for {what}")


def _entries(pipeline: Path, script: str) -> dict[str, Any]:
    path = pipeline / "output" / "tracking" / f"{script}.state.json"
    return json.loads(path.read_text(encoding="utf-8"))["items"]


class Page:
    """One headless chromium on the dailies page."""

    def __init__(self, url: str, profile: Path, shots: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        browser, driver = _tools()
        options = Options()
        options.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                    "--window-size=1400,1800", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.url, self.base = url, url.split("/?token=")[0]
        self.shots = shots
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def view(self, name: str) -> None:
        before = self.js("return document.getElementById(arguments[0]).dataset.loaded || ''", name)
        self.js("if (location.hash === '#' + arguments[0]) show(arguments[0]); else location.hash = arguments[0]", name)
        _until(lambda: self.js("const v = document.getElementById(arguments[0]); return !v.hidden && "
                               "(v.dataset.loaded || '') !== arguments[1]", name, before), f"the {name} view")

    def message(self, words: str) -> str:
        return _until(lambda: words in (text := self.js("return document.getElementById('message').textContent"))
                      and text, f"the message {words!r}")

    def click(self, selector: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, selector).click()

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        keep = os.environ.get("DAILIES_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An offline gen.video run of a three-scene story, watched on the page from before it starts to its end."""
    _tools()
    tmp = tmp_path_factory.mktemp("night")
    audio = copy_pipeline(tmp, "gen.audio", story=STORY)
    image = copy_pipeline(tmp, "gen.image")
    video = copy_pipeline(tmp, "gen.video")
    server = subprocess.Popen([sys.executable, "generate.py", "--serve"], cwd=video, env=env_for(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    page = None
    run = None
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url, url
        page = Page(url, tmp / "profile", tmp)
        page.view("tonight")
        log = open(tmp / "run.log", "w", encoding="utf-8")
        run = subprocess.Popen([sys.executable, "generate.py"], cwd=video, env=OFFLINE, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        seen: list[tuple[str, str, int]] = []
        shot = None
        deadline = time.monotonic() + RUN_BOUND
        while time.monotonic() < deadline:
            running, current, done, bar = page.js(
                "const t = document.getElementById('tonight'); return [t.dataset.running || '', "
                "t.dataset.current || '', Number(t.dataset.done || 0), !!t.querySelector('progress')]")
            state = (running, current, done)
            if not seen or seen[-1] != state:
                seen.append(state)
            if shot is None and bar:
                shot = page.shot("tonight")  # a step in flight, with its progress bar
            if run.poll() is not None and running == "no":
                break
            time.sleep(0.2)
        assert run.poll() == 0, (tmp / "run.log").read_text(encoding="utf-8")[-3000:]
        yield {"page": page, "audio": audio, "image": image, "video": video, "seen": seen, "tmp": tmp}
    finally:
        if run is not None and run.poll() is None:
            run.terminate()
            run.wait(timeout=60)
        if page is not None:
            page.quit()
        server.terminate()
        server.wait(timeout=30)


def test_the_page_of_a_running_pipeline_follows_the_run(night) -> None:
    seen = night["seen"]
    running = [state for state in seen if state[0] == "yes"]
    steps = list(dict.fromkeys(current for _r, current, _d in running if current))
    assert len(steps) >= 2, seen  # it moved from step to step while the run went
    counts = [done for _r, _c, done in running]
    assert max(counts) > min(counts), seen  # and counted items as they were made
    assert seen[-1][0] == "no"  # and said so when the run ended


def test_a_request_without_the_token_is_refused(night) -> None:
    page = night["page"]
    page.driver.delete_all_cookies()
    page.driver.get(page.base + "/")
    assert "needs the token" in page.js("return document.body.textContent")
    page.driver.get(page.base + "/?token=not-the-token")
    assert "needs the token" in page.js("return document.body.textContent")
    page.driver.get(page.url)  # the printed address sets the cookie again
    assert page.js("return document.title").startswith("Dailies")


def test_retake_one_scene_and_approve_the_upload_then_the_next_run_redoes_exactly_that_scene(night) -> None:
    page, image, video = night["page"], night["image"], night["video"]
    page.view("dailies")
    card = 'article[data-kind="scene"][data-key="scene_1.2"]'
    _until(lambda: page.js("return !!document.querySelector(arguments[0] + ' img')", card), "scene_1.2's card")
    assert page.js("return document.querySelectorAll('article.clip video').length") == 3
    _until(lambda: page.js("const v = document.querySelector('article.clip video'); return v.readyState >= 1 && "
                           "v.duration > 0"), "a clip to load in its player")
    page.shot("dailies")
    page.click(f"{card} button.retake")
    page.message("scene_1.2 added to retake.txt")
    assert (image / "retake.txt").read_bytes() == b"scene_1.2\n"  # the line a person would add
    _until(lambda: page.js("return !!document.querySelector(arguments[0] + ' .badge.asked')", card), "the retake mark")

    page.view("publishing")
    page.click("#approve-upload")
    page.message("approved for publishing")
    final = video / "output" / "final_sd.mp4"
    approval = json.loads((audio_tracking := night["audio"] / "output" / "tracking" / "12.youtube.approval.json")
                          .read_text(encoding="utf-8"))
    assert approval["video"] == str(final.resolve()) and approval["size"] == final.stat().st_size
    assert approval["mtime_ns"] == final.stat().st_mtime_ns and audio_tracking.parent.name == "tracking"
    _until(lambda: page.js("return document.getElementById('publishing').dataset.approved") == "yes", "approved")
    page.shot("publishing")
    page.view("morning")
    _until(lambda: page.js("return document.querySelectorAll('svg.timeline g.bar').length") > 10, "the timeline")
    page.shot("morning")

    before = {(pipe.name, script): _entries(pipe, script) for pipe, script in
              ((image, "2.character"), (image, "2.location"), (image, "3.scene"), (video, "3.animate"))}
    again = subprocess.run([sys.executable, "generate.py"], cwd=video, env=OFFLINE, capture_output=True, text=True,
                           timeout=RUN_BOUND, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = {key: _entries(image if key[0] == "gen.image" else video, key[1]) for key in before}
    assert after[("gen.image", "2.character")] == before[("gen.image", "2.character")]
    assert after[("gen.image", "2.location")] == before[("gen.image", "2.location")]
    scenes_before, scenes = before[("gen.image", "3.scene")], after[("gen.image", "3.scene")]
    assert {k: v for k, v in scenes.items() if k != "scene_1.2"} == \
        {k: v for k, v in scenes_before.items() if k != "scene_1.2"}  # the other scenes were not touched
    assert scenes["scene_1.2"]["data"]["take"] == 1 and scenes_before["scene_1.2"]["data"]["take"] == 0
    assert scenes["scene_1.2"]["data"]["seed"] != scenes_before["scene_1.2"]["data"]["seed"]
    clips_before, clips = before[("gen.video", "3.animate")], after[("gen.video", "3.animate")]
    # An offline scene card does not change with its seed (only character and location cards show it), so
    # the clips made from scene_1.2's picture find it unchanged and are kept: nothing else was redone.
    assert clips == clips_before
    answered = (image / "retake.txt").read_text(encoding="utf-8")
    assert answered.startswith("# scene_1.2  (retaken: take 1, ") and answered.count("\n") == 1

    page.view("publishing")  # the video was not made again: the approval still holds for it
    assert page.js("return document.getElementById('publishing').dataset.approved") == "yes"


def test_story_text_is_shown_as_text_and_an_edit_is_saved_as_typed(night) -> None:
    page, image = night["page"], night["image"]
    page.view("dailies")
    card = 'article[data-kind="character"][data-key="male_bram"]'
    _until(lambda: page.js("return !!document.querySelector(arguments[0] + ' textarea')", card), "male_bram's card")
    page.js("document.querySelector(arguments[0] + ' textarea').value = arguments[1]", card, EVIL)
    page.click(f"{card} button.save-description")
    page.message("the description of male_bram is saved")
    lines = (image / "input" / "2.character.txt").read_text(encoding="utf-8").splitlines()
    assert f"((male_bram)): {EVIL}" in lines  # the line as a person would have typed it, the rest as it was
    page.view("dailies")
    _until(lambda: page.js("return document.querySelector(arguments[0] + ' textarea').value", card) == EVIL,
           "the saved description")
    assert page.js("return document.title").startswith("Dailies")  # no script of the text ran
    assert page.js("return document.querySelectorAll('img[src=\"x\"], main script').length") == 0
