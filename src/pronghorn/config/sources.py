"""Where settings come from besides the defaults: the environment, config files, extra CLI args.

This is the only module of the config layer that reads the process environment or the file
system. Precedence is applied by the caller (``pronghorn.app.base.Application``):
defaults < application ``init()`` < config file < ``PRONGHORN_CMD_ARGS`` (or, when that is unset,
``GUNICORN_CMD_ARGS``) < command line.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from pronghorn.errors import ConfigError

# The first of these that is set gives extra command-line arguments (a Gunicorn deployment's
# environment works unchanged, as ./gunicorn.conf.py does).
ENV_ARGS_VARIABLES = ("PRONGHORN_CMD_ARGS", "GUNICORN_CMD_ARGS")
# Looked for, in this order, in the working directory when no -c is given.
DEFAULT_CONFIG_FILES = ("pronghorn.conf.py", "gunicorn.conf.py")


def process_environ() -> Mapping[str, str]:
    return os.environ


def env_args(environ: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """The variable that gives extra command-line arguments (None if neither is set) and those
    arguments (shell-style quoting)."""
    name = next((name for name in ENV_ARGS_VARIABLES if name in environ), None)
    text = environ[name] if name is not None else ""
    if not text.strip():
        return name, []
    try:
        import shlex  # only when there is a command line to split

        return name, shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"Invalid value for {name}: {text!r} ({exc})") from None


def find_default_config_file(directory: str) -> str | None:
    """``./pronghorn.conf.py``, else ``./gunicorn.conf.py`` so a Gunicorn project works unchanged."""
    for name in DEFAULT_CONFIG_FILES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def read_config_location(location: str) -> dict[str, Any]:
    """The module-level names of a config file: ``PATH``, ``file:PATH`` or ``python:MODULE``."""
    if location.startswith("python:"):
        return _read_module(location[len("python:") :])
    if location.startswith("file:"):
        location = location[len("file:") :]
    return _read_file(location)


def _read_module(name: str) -> dict[str, Any]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise ConfigError(f"Failed to read config module {name!r}: {type(exc).__name__}: {exc}") from exc
    return dict(vars(module))


def _read_file(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        raise ConfigError(f"Config file {path!r} doesn't exist")
    loader = importlib.machinery.SourceFileLoader("__config__", path)
    spec = importlib.util.spec_from_file_location("__config__", path, loader=loader)
    if spec is None:
        raise ConfigError(f"Failed to read config file {path!r}")
    module = importlib.util.module_from_spec(spec)
    module.__file__ = path
    try:
        # Compiled from the source on every read, never through a __pycache__ file: a cached
        # file is trusted when size and mtime (whole seconds) match, so a config rewritten within
        # the same second to the same size (``workers = 2`` -> ``workers = 4``, then HUP) would
        # reload the old values.
        code = compile(loader.get_data(path), path, "exec", dont_inherit=True)
        exec(code, vars(module))  # noqa: S102 - running the config file is its purpose
    except Exception:
        details = traceback.format_exc()
        raise ConfigError(f"Failed to read config file: {path}\n{details}".rstrip()) from None
    return dict(vars(module))


def prepend_pythonpath(entries: list[str]) -> None:
    """Put ``--pythonpath`` entries first on ``sys.path`` (in the order given)."""
    for entry in reversed(entries):
        path = os.path.abspath(entry)
        if path not in sys.path:
            sys.path.insert(0, path)
