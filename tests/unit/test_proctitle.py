"""Process titles: their format, the optional dependency, and a real title seen in /proc."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from pronghorn.proctitle import master_title, set_proc_title, worker_title


def test_title_formats() -> None:
    assert master_title("exampleapi:app") == "pronghorn: master [exampleapi:app]"
    assert worker_title("exampleapi:app") == "pronghorn: worker [exampleapi:app]"


def test_reexec_titles_carry_the_dot_2_suffix_on_the_name() -> None:
    assert master_title("shop", reexec=True) == "pronghorn: master [shop.2]"
    assert worker_title("shop", reexec=True) == "pronghorn: worker [shop.2]"


def _fake_setproctitle(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    fake = types.ModuleType("setproctitle")
    fake.setproctitle = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "setproctitle", fake)
    return calls


def test_set_proc_title_uses_setproctitle(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_setproctitle(monkeypatch)
    monkeypatch.setattr(sys, "platform", "linux")
    set_proc_title("pronghorn: master [x]")
    assert calls == ["pronghorn: master [x]"]


def test_set_proc_title_does_nothing_on_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_setproctitle(monkeypatch)
    monkeypatch.setattr(sys, "platform", "darwin")
    set_proc_title("pronghorn: master [x]")
    assert calls == []


def test_set_proc_title_without_setproctitle_is_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "setproctitle", None)  # makes the import raise ImportError
    set_proc_title("pronghorn: master [x]")


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_title_is_visible_in_proc_cmdline_of_a_forked_child() -> None:
    pytest.importorskip("setproctitle")
    title = worker_title(f"proctitle-test-{os.getpid()}")
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: set the title, say so, wait for the parent to look
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)
            set_proc_title(title)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        assert os.read(ready_r, 1) == b"1"
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        os.close(done_w)  # releases the child
        os.close(ready_r)
        _, status = os.waitpid(pid, 0)
    assert cmdline.rstrip(b"\0").decode() == title
    assert os.waitstatus_to_exitcode(status) == 0
