"""`generate.py --serve` over real HTTP: the token on every request, writes only by POST with it, item
ids checked against the checkpoints, no request path reaching the file system, and every write the
same bytes a hand edit makes. The browser tests are in test_dailies_browser.py."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from common.dailies.tonight import current_step
from common.dailies.workspace import identity_scores
from common.pictures.retake import mark_retaken, request_retake
from common.state.checkpoints import CheckpointStore
from tests.support.image_inputs import picture
from tests.support.project import copy_pipeline, env_for

STORY = ("[narrator] The lighthouse had been dark for three nights.\r\n"
         "(scene_1.1) {{loc_1, a stone lighthouse, fog}}, {Autumn evening}; ((female_ada)){Determined};\r\n"
         "[female_ada] Something is wrong up there.\r\n"
         "(scene_1.2) {{loc_1}}, {Autumn evening}; ((female_ada)){Worried}, {Looking up};\r\n")
CHARACTERS = "\ufeff((female_ada)): a young woman, red scarf\r\n\r\n((male_bram)): an old fisherman\r\n"
EVIL = '<img src=x onerror="document.title=\'owned\'"> & </textarea><script>alert(1)</script>'


def _record(root: Path, script: str, kind: str, key: str, order: int, files: list[str] | None = None) -> None:
    folder = {"character": "characters", "location": "locations", "scene": "scene"}[kind]
    path = picture(root / "output" / folder / f"{key}.png", (64, 48), ("red", "green", "blue")[order % 3])
    store = CheckpointStore(root / "output" / "tracking" / f"{script}.state.json", base_dir=root)
    data = {"kind": kind, "item_id": key, "variation": 1, "order": order, "prompt": f"a picture of {key}",
            "seed": 1000 + order, "random_seed": False, "take": 0,
            "settings": {"source": "2.character.txt" if kind == "character" else "2.location.txt"}}
    store.record(key, "fp", files=files or [path], data=data, preview=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("dailies")
    audio = copy_pipeline(tmp, "gen.audio", story="")
    (audio / "input" / "1.story.txt").write_bytes(STORY.encode("utf-8"))
    image = copy_pipeline(tmp, "gen.image")
    (image / "input" / "2.character.txt").write_bytes(CHARACTERS.encode("utf-8"))
    (image / "input" / "2.location.txt").write_text("{{loc_1}} a stone lighthouse, fog\n", encoding="utf-8")
    _record(image, "2.character", "character", "female_ada", 0)
    _record(image, "2.character", "character", "male_bram", 1)
    _record(image, "2.location", "location", "loc_1", 0)
    _record(image, "3.scene", "scene", "scene_1.1", 0)
    _record(image, "3.scene", "scene", "scene_1.2", 1)
    (tmp / "secret.txt").write_text("not for the page", encoding="utf-8")
    # A hand-edited (or hostile) checkpoint naming a file outside the workspace: never served.
    _record(image, "2.location", "location", "loc_2", 1, files=[str(tmp / "secret.txt")])
    return image


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[tuple[str, str]]:
    proc = subprocess.Popen([sys.executable, "generate.py", "--serve"], cwd=workspace, env=env_for(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first line it prints is its address
        assert line.startswith("dailies at http://127.0.0.1:"), line
        url = line.split()[-1]
        base, token = url.split("/?token=")
        yield base, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _session(base: str, token: str) -> requests.Session:
    session = requests.Session()
    first = session.get(f"{base}/?token={token}", allow_redirects=False, timeout=30)
    assert first.status_code == 303 and first.headers["Location"] == "/"
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    return session


def _post(session: requests.Session, base: str, token: str, path: str, body: dict) -> requests.Response:
    return session.post(f"{base}{path}", json=body, headers={"X-Dailies-Token": token}, timeout=30)


def test_every_request_needs_the_token(server, workspace: Path) -> None:
    base, token = server
    for path in ("/", "/api/dailies", "/api/tonight", "/media/item/scene/scene_1.1", "/static/app.js"):
        refused = requests.get(f"{base}{path}", timeout=30)
        assert refused.status_code == 403 and "needs the token" in refused.json()["error"], path
        assert requests.get(f"{base}{path}", cookies={"dailies_token": "x" + token}, timeout=30).status_code == 403
    assert requests.get(f"{base}/?token=wrong", timeout=30).status_code == 403
    session = _session(base, token)
    page = session.get(f"{base}/", timeout=30)
    assert page.status_code == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert session.get(f"{base}/api/dailies", timeout=30).status_code == 200
    # A write needs the token in its header, which another site's page cannot send: the cookie is not enough.
    body = {"kind": "scene", "key": "scene_1.1"}
    assert session.post(f"{base}/api/retake", json=body, timeout=30).status_code == 403
    assert requests.post(f"{base}/api/retake", json=body, headers={"X-Dailies-Token": "no"}, timeout=30).status_code == 403
    assert session.get(f"{base}/api/retake", timeout=30).status_code == 405  # writes only by POST
    assert not (workspace / "retake.txt").exists()
    # A page of another name resolving to 127.0.0.1 (DNS rebinding) is not answered, token or not.
    port = base.rsplit(":", 1)[1]
    rebound = requests.get(f"{base}/api/dailies?token={token}", headers={"Host": f"evil.example:{port}"}, timeout=30)
    assert rebound.status_code == 403


def test_forged_item_ids_and_paths_are_refused(server, workspace: Path) -> None:
    base, token = server
    session = _session(base, token)
    for body in ({"kind": "scene", "key": "scene_9.9"}, {"kind": "scene", "key": "../../secret.txt"},
                 {"kind": "../scene", "key": "scene_1.1"}, {"kind": "character", "key": "scene_1.1"},
                 {"kind": "scene", "key": ["scene_1.1"]}, {"kind": "scene"}):
        answer = _post(session, base, token, "/api/retake", body)
        assert answer.status_code == 404 and "no such item" in answer.json()["error"], body
    assert _post(session, base, token, "/api/retake", ["scene_1.1"]).status_code == 400
    assert not (workspace / "retake.txt").exists()
    for path in ("/media/item/scene/..%2F..%2F..%2Fsecret.txt", "/media/item/scene/scene_1.1%2F..%2F..%2Fsecret.txt",
                 "/media/item/location/loc_2", "/media/output/..%2F..%2Fsecret.txt", "/media/output/thumbnail",
                 "/static/..%2Fserver.py", "/static/index.html", "/media/item/scene/scene_1.1/../../../secret.txt"):
        answer = session.get(f"{base}{path}", timeout=30)
        assert answer.status_code == 404 and "not for the page" not in answer.text, path
    picture_answer = session.get(f"{base}/media/item/scene/scene_1.1", timeout=30)
    assert picture_answer.status_code == 200 and picture_answer.content.startswith(b"\x89PNG")


def test_writes_are_the_same_bytes_a_hand_edit_makes(server, workspace: Path) -> None:
    base, token = server
    session = _session(base, token)
    characters = workspace / "input" / "2.character.txt"
    story = workspace.parent / "gen.audio" / "input" / "1.story.txt"

    answer = _post(session, base, token, "/api/description", {"kind": "character", "key": "male_bram", "text": EVIL})
    assert answer.status_code == 200, answer.text
    assert characters.read_bytes() == CHARACTERS.replace("an old fisherman", EVIL).encode("utf-8")  # BOM, CRLF kept
    listed = session.get(f"{base}/api/dailies", timeout=30).json()["kinds"]["character"]
    assert [c["description"] for c in listed if c["key"] == "male_bram"] == [EVIL]

    line = "(scene_1.2) {{loc_1}}, {Night}; ((female_ada)){Brave}, {Climbing the stairs};"
    answer = _post(session, base, token, "/api/scene-line", {"kind": "scene", "key": "scene_1.2", "text": line})
    assert answer.status_code == 200, answer.text
    old = "(scene_1.2) {{loc_1}}, {Autumn evening}; ((female_ada)){Worried}, {Looking up};"
    assert story.read_bytes() == STORY.replace(old, line).encode("utf-8")
    for bad, words in (("(scene_1.1) {{loc_1}}, {Night};", "keep its id"), ("(scene_1.2) {{loc_1", "line 1"),
                       ("   ", "is empty")):
        answer = _post(session, base, token, "/api/scene-line", {"kind": "scene", "key": "scene_1.2", "text": bad})
        assert answer.status_code == 400 and words in answer.json()["error"], answer.text
    assert story.read_bytes() == STORY.replace(old, line).encode("utf-8")  # a refused edit changes nothing

    assert _post(session, base, token, "/api/approve", {"kind": "scene", "key": "scene_1.2"}).status_code == 200
    assert (workspace / "approved.txt").read_text(encoding="utf-8") == "scene_1.2 take 0\n"
    answer = _post(session, base, token, "/api/retake", {"kind": "scene", "key": "scene_1.2"})
    assert answer.status_code == 200 and "added to retake.txt" in answer.json()["message"]
    assert (workspace / "retake.txt").read_text(encoding="utf-8") == "scene_1.2\n"  # what a person would type
    assert (workspace / "approved.txt").read_text(encoding="utf-8") == ""  # the approved take is being replaced
    answer = _post(session, base, token, "/api/retake", {"kind": "scene", "key": "scene_1.2"})
    assert "already asked" in answer.json()["message"]
    assert (workspace / "retake.txt").read_text(encoding="utf-8") == "scene_1.2\n"
    cards = session.get(f"{base}/api/dailies", timeout=30).json()["kinds"]["scene"]
    assert [c["retake_asked"] for c in cards] == [False, True]


def test_a_retake_line_is_answered_once_and_the_rest_of_the_file_kept(tmp_path: Path) -> None:
    (tmp_path / "retake.txt").write_bytes(b"# after the dailies\r\nloc_2  # too dark\r\nscene_1.4\r\n")
    assert request_retake(tmp_path, "male_bram") and not request_retake(tmp_path, "loc_2")
    mark_retaken(tmp_path, {"loc_2": 1})
    lines = (tmp_path / "retake.txt").read_bytes().decode("utf-8").split("\r\n")
    assert lines[0] == "# after the dailies" and lines[2:] == ["scene_1.4", "male_bram", ""]
    assert lines[1].startswith("# loc_2  # too dark  (retaken: take 1, ")


def test_identity_scores_are_read_when_the_judge_wrote_them(tmp_path: Path) -> None:
    assert identity_scores(tmp_path) == {}  # no identity.json: no score, no error
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "identity.json").write_text("{not json", encoding="utf-8")
    assert identity_scores(tmp_path) == {}
    (tmp_path / "output" / "identity.json").write_text(json.dumps({
        "scene_1.1": 0.91, "scenes": {"scene_1.2": {"female_ada": {"score": 0.4, "reason": "hair"}, "male_bram": 0.8}},
        "scene_2.1": {"score": 0.7}}), encoding="utf-8")
    assert identity_scores(tmp_path) == {"scene_1.1": 0.91, "scene_1.2": 0.4, "scene_2.1": 0.7}


def test_the_running_step_and_its_progress_come_from_the_log() -> None:
    lines = ["===== START 1.story.py @ 2025-06-01 01:00:00 =====", "[scenes] 1/2 ( 50%) scene_1.1: done | ETA 0:01",
             "===== END 1.story.py @ 2025-06-01 01:00:02 (exit=0, took=2.00s) =====",
             "===== START 3.scene.py @ 2025-06-01 01:00:03 =====", "3 scene picture(s) at 1280x720",
             "[scene] 2/3 ( 67%) scene_1.2: done in 4.1s | ETA 0:04", "something the script said"]
    now = current_step(lines)
    assert now is not None and now["name"] == "3.scene.py" and now["started_at"] == "2025-06-01 01:00:03"
    assert now["progress"] == {"label": "scene", "done": 2, "total": 3, "percent": 67, "item": "scene_1.2",
                               "state": "done in 4.1s", "eta": "0:04"}
    assert current_step(lines[:3]) is None and current_step([]) is None


def test_a_port_in_use_is_one_sentence(server, workspace: Path) -> None:
    base, _token = server
    port = base.rsplit(":", 1)[1]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "generate.py", "--serve", "--port", port], cwd=workspace, env=env_for(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 5 and f"could not listen on 127.0.0.1:{port}" in done.stdout + done.stderr
    assert time.monotonic() - started < 60
