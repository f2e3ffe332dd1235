"""Worker classes by name: import strings, resolved only when a server starts."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pronghorn.errors import ConfigError

WORKER_CLASSES = {
    "sync": "pronghorn.workers.sync.SyncWorker",
    "gthread": "pronghorn.workers.gthread.ThreadWorker",
}


def resolve_worker_class(value: Any, threads: int = 1) -> type:
    """The worker class for a ``worker_class`` value (a name, a dotted path or a class).

    As in Gunicorn, ``sync`` with ``threads > 1`` means the threaded worker.
    """
    if inspect.isclass(value):
        return value
    name = str(value)
    if name == "sync" and threads > 1:
        name = "gthread"
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
    return worker_class


def worker_class_name(worker_class: type) -> str:
    """The short name a user would write for this class (``sync``, ``gthread``), else its path."""
    path = f"{worker_class.__module__}.{worker_class.__qualname__}"
    for name, known in WORKER_CLASSES.items():
        if known == path:
            return name
    return path
