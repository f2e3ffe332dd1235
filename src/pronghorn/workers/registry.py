"""Worker classes by name: import strings, resolved only when a server starts."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pronghorn.errors import ConfigError

WORKER_CLASSES = {
    "sync": "pronghorn.workers.sync.SyncWorker",
}
# Names Gunicorn users pass that pronghorn will serve with another worker until theirs lands.
STAND_INS = {
    "gthread": ("sync", "the gthread event-loop worker has not landed yet; using the sync worker"),
}


def resolve_worker_class(value: Any) -> tuple[type, str | None]:
    """The worker class for a ``worker_class`` value, and a warning to log if a stand-in is used."""
    if inspect.isclass(value):
        return value, None
    name = str(value)
    warning = None
    if name in STAND_INS:
        name, warning = STAND_INS[name]
    path = WORKER_CLASSES.get(name, name)
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        known = ", ".join(sorted([*WORKER_CLASSES, *STAND_INS]))
        raise ConfigError(f"Invalid value for worker_class: {value!r} (expected one of {known} or a dotted path to a class)")
    try:
        worker_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Invalid value for worker_class: {value!r} (cannot load it: {exc})") from None
    if not inspect.isclass(worker_class):
        raise ConfigError(f"Invalid value for worker_class: {value!r} (expected a class)")
    return worker_class, warning
