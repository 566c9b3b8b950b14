import argparse
import threading
import time
from pathlib import Path

import pytest

from common.state.checkpoints import fingerprint
from common.run.errors import InputError
from common.run.runner import ScriptContext, run_guarded
from common.config.settings import load_settings


def _ctx(tmp_path: Path, **flags) -> ScriptContext:
    args = argparse.Namespace(force_start=False, disable_resumable=False, auto_confirm=None, **flags)
    return ScriptContext("t", tmp_path, args, load_settings(None, environ={}), out=lambda m: None)


def _work(tmp_path: Path, log: list[str]):
    def work(item: str):
        log.append(item)
        time.sleep(0.02)
        out = tmp_path / f"{item}.txt"
        out.write_text(item)
        return [out], {"n": item}
    return work


@pytest.mark.parametrize("workers", [1, 3])
def test_each_checkpoints_and_skips(tmp_path: Path, workers: int) -> None:
    items = [f"i{n}" for n in range(6)]
    log: list[str] = []
    entries = _ctx(tmp_path).each(items, label="t", key=str, fingerprint=lambda i: fingerprint(i),
                                  work=_work(tmp_path, log), workers=workers)
    assert list(entries) == items and sorted(log) == items
    (tmp_path / "i2.txt").unlink()  # a lost output is redone
    again: list[str] = []
    _ctx(tmp_path).each(items, label="t", key=str, fingerprint=lambda i: fingerprint(i),
                        work=_work(tmp_path, again), workers=workers)
    assert again == ["i2"]


def test_parallel_items_really_overlap(tmp_path: Path) -> None:
    running, peak, lock = [0], [0], threading.Lock()
    together = threading.Barrier(3)  # passes only with three items running at once, however slow the machine

    def work(item: str):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        together.wait(timeout=30)
        with lock:
            running[0] -= 1
        return [], {}

    _ctx(tmp_path).each(list("abcdef"), label="t", key=str, fingerprint=str, work=work, workers=3)
    assert peak[0] == 3


def test_failure_stops_and_keeps_finished_items(tmp_path: Path) -> None:
    def work(item: str):
        if item == "c":
            raise InputError("bad item c")
        return [], {}

    ctx = _ctx(tmp_path)
    with pytest.raises(InputError):
        ctx.each(list("abcd"), label="t", key=str, fingerprint=str, work=work)
    assert set(_ctx(tmp_path).checkpoints().entries()) == {"a", "b"}


def test_confirm_never_blocks_without_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert _ctx(tmp_path).confirm("go?") is True
    assert _ctx(tmp_path).confirm("go?", default=False) is False
    ctx = _ctx(tmp_path)
    ctx.args.auto_confirm = "n"
    assert ctx.confirm("go?") is False


def test_run_guarded_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    def fail() -> None:
        raise InputError("the story is empty; write some lines.")

    assert run_guarded(fail) == 3
    assert capsys.readouterr().err == "error: the story is empty; write some lines.\n"

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert run_guarded(interrupted) == 130


def test_change_settings_asks_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from common.run.runner import Script

    scripts = tmp_path / "gen.x" / "scripts"
    scripts.mkdir(parents=True)
    script = Script(str(scripts / "9.t.py"), "t", settings_keys=("CHUNK_SIZE", "LANGUAGE"))

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty("7\n\n"))
    ctx = script.context(["--change-settings", "y"])
    assert ctx.settings.CHUNK_SIZE == 7 and ctx.settings.LANGUAGE == "en"
    monkeypatch.setattr(sys, "stdin", io.StringIO("9\n"))
    assert script.context(["--change-settings", "y"]).settings.CHUNK_SIZE == 5
