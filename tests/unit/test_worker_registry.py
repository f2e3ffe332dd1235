"""Worker class names as Gunicorn configs write them."""

from __future__ import annotations

import pytest

from pronghorn.errors import ConfigError
from pronghorn.workers.registry import resolve_worker_class, worker_class_name


@pytest.mark.parametrize(("value", "name"), [
    ("sync", "sync"), ("gthread", "gthread"), ("gevent", "gevent"),
    ("gunicorn.workers.sync.SyncWorker", "sync"), ("gunicorn.workers.gthread.ThreadWorker", "gthread"),
    ("gunicorn.workers.ggevent.GeventWorker", "gevent"), ("egg:gunicorn#sync", "sync"),
    ("egg:gunicorn#gevent", "gevent"), (" gthread ", "gthread"),
])
def test_gunicorn_names_select_pronghorns_workers(value: str, name: str) -> None:
    pytest.importorskip("gevent")
    assert worker_class_name(resolve_worker_class(value)) == name


def test_sync_with_threads_is_the_threaded_worker() -> None:
    assert worker_class_name(resolve_worker_class("sync", threads=4)) == "gthread"


@pytest.mark.parametrize(("value", "advice"), [
    ("eventlet", "gevent"), ("egg:gunicorn#eventlet", "gevent"), ("gunicorn.workers.geventlet.EventletWorker", "gevent"),
    ("tornado", "gthread"), ("gunicorn.workers.gtornado.TornadoWorker", "gthread"),
])
def test_workers_pronghorn_does_not_have_are_refused_with_advice(value: str, advice: str) -> None:
    with pytest.raises(ConfigError, match=rf"^Invalid value for worker_class: .*not available in pronghorn: .*{advice}"):
        resolve_worker_class(value)


def test_gevent_without_the_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gevent", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "pronghorn.workers.ggevent", raising=False)
    with pytest.raises(ConfigError, match=r"needs the gevent package: pip install 'pronghorn\[gevent\]'"):
        resolve_worker_class("gevent")
