"""The code reloader on real files and real threads: both engines, globs, late imports, stop()."""

from __future__ import annotations

import importlib
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pronghorn.workers.reloader import (
    InotifyReloader,
    PollReloader,
    Reloader,
    app_serving_traceback,
    inotify_available,
    make_reloader,
)

INTERVAL = 0.05
WAIT = 5.0

needs_inotify = pytest.mark.skipif(not inotify_available(), reason="inotify is not available here")
ENGINES = [pytest.param("poll", id="poll"), pytest.param("inotify", id="inotify", marks=needs_inotify)]


class Calls:
    """Records the callback's arguments; ``wait()`` polls for the first one with a deadline."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.threads: list[threading.Thread] = []
        self._event = threading.Event()

    def __call__(self, path: str) -> None:
        self.paths.append(path)
        self.threads.append(threading.current_thread())
        self._event.set()

    def wait(self, timeout: float = WAIT) -> bool:
        return self._event.wait(timeout)


@contextmanager
def running(engine: str, extra: list[str], calls: Calls) -> Iterator[Reloader]:
    reloader = make_reloader(engine, extra, calls, interval=INTERVAL)
    try:
        reloader.start()
        yield reloader
    finally:
        reloader.stop()


def reloader_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pronghorn-reloader")}


def settle() -> None:
    """Let a few checks run, so the test sees one change at a time (not needed by inotify's events)."""
    time.sleep(INTERVAL * 3)


@pytest.mark.parametrize("engine", ENGINES)
def test_modified_extra_file_calls_back_once(engine: str, tmp_path: Path) -> None:
    target = tmp_path / "settings.toml"
    target.write_text("a = 1\n")
    calls = Calls()
    with running(engine, [str(target)], calls):
        settle()
        assert calls.paths == []
        target.write_text("a = 22\n")
        assert calls.wait(), "no change noticed"
        # Watching has ended: later changes are not reported again.
        target.write_text("a = 333\n")
        settle()
    assert calls.paths == [str(target)]
    assert calls.threads[0] is not threading.main_thread()


@pytest.mark.parametrize("engine", ENGINES)
def test_file_created_after_start_matching_a_glob(engine: str, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "admin").mkdir(parents=True)
    (templates / "base.html").write_text("<p>")
    calls = Calls()
    with running(engine, [str(templates / "**" / "*.html")], calls):
        settle()
        (templates / "admin" / "notes.txt").write_text("not a match")
        settle()
        assert calls.paths == []
        created = templates / "admin" / "page.html"
        created.write_text("<h1>")
        assert calls.wait(), "the new match was not noticed"
    assert calls.paths == [str(created)]


@pytest.mark.parametrize("engine", ENGINES)
def test_glob_match_in_a_directory_created_after_start(engine: str, tmp_path: Path) -> None:
    calls = Calls()
    with running(engine, [str(tmp_path / "*" / "*.cfg")], calls):
        subdir = tmp_path / "late"
        subdir.mkdir()
        created = subdir / "app.cfg"
        created.write_text("x")
        assert calls.wait(), "the new match was not noticed"
    assert calls.paths == [str(created)]


@pytest.mark.parametrize("engine", ENGINES)
def test_module_imported_after_start(engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"reload_probe_{uuid.uuid4().hex}"
    source = tmp_path / f"{name}.py"
    source.write_text("VALUE = 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = Calls()
    try:
        with running(engine, [], calls):
            settle()
            assert calls.paths == []
            module = importlib.import_module(name)
            assert module.VALUE == 0
            # The reloader learns of the import at its next rescan; keep editing until it reports.
            deadline = time.monotonic() + WAIT
            edits = 0
            while not calls.wait(INTERVAL * 2) and time.monotonic() < deadline:
                edits += 1
                source.write_text(f"VALUE = {edits}\n" + "#" * edits)
            assert calls.paths, "the module's change was not noticed"
    finally:
        sys.modules.pop(name, None)
    assert calls.paths == [str(source)]


@pytest.mark.parametrize("engine", ENGINES)
def test_deleted_extra_file_is_a_change(engine: str, tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text("x")
    calls = Calls()
    with running(engine, [str(target)], calls):
        settle()
        target.unlink()
        assert calls.wait()
    assert calls.paths == [str(target)]


@pytest.mark.parametrize("engine", ENGINES)
def test_add_extra_file_after_start(engine: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    calls = Calls()
    with running(engine, [], calls) as reloader:
        reloader.add_extra_file(str(broken))
        settle()
        assert calls.paths == []
        broken.write_text("def f():\n    pass\n")
        assert calls.wait()
    assert calls.paths == [str(broken)]


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_ends_the_thread_quickly(engine: str, tmp_path: Path) -> None:
    before = reloader_threads()
    reloader = make_reloader(engine, [str(tmp_path / "*.txt")], Calls(), interval=30.0)
    try:
        reloader.start()
        started = reloader_threads() - before
        assert len(started) == 1
        (thread,) = started
        assert thread.daemon
    finally:
        t0 = time.monotonic()
        reloader.stop()
    thread.join(1.0)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 1.0
    reloader.stop()  # a second stop is harmless


@pytest.mark.parametrize("engine", ENGINES)
def test_no_callback_after_stop(engine: str, tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("1")
    calls = Calls()
    with running(engine, [str(target)], calls):
        pass
    target.write_text("22")
    time.sleep(INTERVAL * 3)
    assert calls.paths == []


def test_callback_may_stop_its_own_reloader(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("1")
    box: list[Reloader] = []
    done = threading.Event()

    def callback(path: str) -> None:
        box[0].stop()  # must not try to join the thread it runs in
        done.set()

    box.append(make_reloader("poll", [str(target)], callback, interval=INTERVAL))
    try:
        box[0].start()
        target.write_text("22")
        assert done.wait(WAIT)
    finally:
        box[0].stop()


@needs_inotify
def test_auto_prefers_inotify_on_linux() -> None:
    reloader = make_reloader("auto", [], Calls())
    try:
        assert isinstance(reloader, InotifyReloader)
    finally:
        reloader.stop()


def test_poll_and_unknown_engines() -> None:
    reloader = make_reloader("poll", [], Calls())
    assert isinstance(reloader, PollReloader)
    reloader.stop()
    with pytest.raises(ValueError, match="unknown reload engine"):
        make_reloader("fsevents", [], Calls())


def test_explicit_inotify_where_unavailable_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(RuntimeError, match="inotify is unavailable"):
        make_reloader("inotify", [], Calls())
    fallback = make_reloader("auto", [], Calls())
    try:
        assert isinstance(fallback, PollReloader)
    finally:
        fallback.stop()


def call_wsgi(app: Callable[..., Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, headers

    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/anything"}, start_response))
    return seen["status"], seen["headers"], body


def test_traceback_app_serves_the_syntax_error(tmp_path: Path) -> None:
    broken = tmp_path / "brokenapp.py"
    broken.write_text("def application(environ, start_response:\n    pass\n")
    try:
        compile(broken.read_text(), str(broken), "exec")
    except SyntaxError as exc:
        error = exc
    app = app_serving_traceback(error)
    for _ in range(2):  # every request gets the same answer
        status, headers, body = call_wsgi(app)
        assert status.startswith("500 ")
        assert dict(headers)["Content-Type"].startswith("text/plain")
        assert dict(headers)["Content-Length"] == str(len(body))
        text = body.decode()
        assert "Traceback (most recent call last)" in text
        assert "SyntaxError" in text
        assert str(broken) in text
