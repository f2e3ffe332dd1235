"""Worker classes by name: import strings, resolved only when a server starts."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pronghorn.errors import ConfigError

WORKER_CLASSES = {
    "sync": "pronghorn.workers.sync.SyncWorker",
    "gthread": "pronghorn.workers.gthread.ThreadWorker",
    "gevent": "pronghorn.workers.ggevent.GeventWorker",
    "asgi": "pronghorn.workers.gasgi.AsgiWorker",
}
# Gunicorn's own class paths (configs name them) select the same workers.
GUNICORN_CLASSES = {
    "gunicorn.workers.sync.SyncWorker": "sync",
    "gunicorn.workers.gthread.ThreadWorker": "gthread",
    "gunicorn.workers.ggevent.GeventWorker": "gevent",
    "gunicorn.workers.ggevent.GeventPyWSGIWorker": "gevent",
    "gevent_wsgi": "gevent",
    "gevent_pywsgi": "gevent",
    "gunicorn.workers.gasgi.ASGIWorker": "asgi",
}
# uvicorn's worker classes, which configs name to serve ASGI apps under Gunicorn: pronghorn's own
# ASGI worker serves those apps (uvicorn is not needed, and not used if installed).
UVICORN_CLASSES = (
    "uvicorn.workers.UvicornWorker",
    "uvicorn.workers.UvicornH11Worker",
    "uvicorn_worker.UvicornWorker",
    "uvicorn_worker.UvicornH11Worker",
)
# Worker classes pronghorn does not have, and what to use instead.
REFUSED = {
    "eventlet": "use worker_class = 'gevent' for greenlets, or the default worker",
    "gunicorn.workers.geventlet.EventletWorker": "use worker_class = 'gevent' for greenlets, or the default worker",
    "tornado": "use the default worker (gthread) for WSGI apps",
    "gunicorn.workers.gtornado.TornadoWorker": "use the default worker (gthread) for WSGI apps",
}


def resolve_worker_class(value: Any, threads: int = 1) -> type:
    """The worker class for a ``worker_class`` value (a name, a dotted path or a class).

    As in Gunicorn, ``sync`` with ``threads > 1`` means the threaded worker.
    """
    if inspect.isclass(value):
        return value
    name = str(value).strip()
    if name.startswith("egg:gunicorn#"):  # Gunicorn's entry-point form of its worker names
        name = name[len("egg:gunicorn#"):]
    if name in REFUSED:
        raise ConfigError(f"Invalid value for worker_class: {value!r} (not available in pronghorn: {REFUSED[name]})")
    name = "asgi" if name in UVICORN_CLASSES else GUNICORN_CLASSES.get(name, name)
    if name == "sync" and threads > 1:
        name = "gthread"
    if name == "gthread" and threads > 1 and _threads_patched():
        # Patched threads are greenlets: they would never run beside the worker's event loop.
        raise ConfigError(f"Invalid value for threads: {threads} (gevent has monkey-patched threading in this "
                          "process, in the config file perhaps; use worker_class = 'gevent', or threads = 1)")
    path = WORKER_CLASSES.get(name, name)
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        known = ", ".join(sorted(WORKER_CLASSES))
        raise ConfigError(f"Invalid value for worker_class: {value!r} (expected one of {known} or a dotted path to a class)")
    try:
        worker_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Invalid value for worker_class: {value!r} (cannot load it: {exc})") from None
    if not inspect.isclass(worker_class):
        raise ConfigError(f"Invalid value for worker_class: {value!r} (expected a class)")
    from pronghorn.workers.base import Worker

    if not issubclass(worker_class, Worker):
        raise ConfigError(f"Invalid value for worker_class: {value!r} (expected a pronghorn worker class, "
                          "a subclass of pronghorn.workers.base.Worker)")
    return worker_class


def _threads_patched() -> bool:
    import sys

    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def worker_class_label(value: Any, worker_class: type) -> str:
    """How the master names the worker class at start (saying so when ours replaces uvicorn's)."""
    name = worker_class_name(worker_class)
    if str(value).strip() in UVICORN_CLASSES:
        return f"{name} (worker_class {str(value).strip()} is served by pronghorn's own ASGI worker; uvicorn is not used)"
    return name


def worker_class_name(worker_class: type) -> str:
    """The short name a user would write for this class (``sync``, ``gthread``), else its path."""
    path = f"{worker_class.__module__}.{worker_class.__qualname__}"
    for name, known in WORKER_CLASSES.items():
        if known == path:
            return name
    return path
