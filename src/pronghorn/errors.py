"""Exceptions shared across layers (the HTTP protocol errors live in ``pronghorn.http.errors``)."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting has an invalid value, or the configuration cannot be loaded.

    The message is one line naming the setting, the value and what was expected.
    """


class AppImportError(Exception):
    """The application reference could not be turned into a callable."""


class AppReferenceError(ConfigError):
    """An application reference that cannot work, found before any worker starts. It stops the
    server with the exit status Gunicorn ends with when its worker finds the same problem."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class AppModuleNotFound(ModuleNotFoundError):
    """The application's module itself (or its package) is not on sys.path: one line says it all.
    An ``ImportError`` raised while the module runs is the application's own error, with its
    traceback."""


# Load failures that are told in one line; anything else raised while loading shows its traceback.
ONE_LINE_LOAD_ERRORS = (AppImportError, AppModuleNotFound)


class HaltServer(Exception):
    """Raised inside the master to stop it with ``exit_status``."""

    def __init__(self, reason: str, exit_status: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_status = exit_status


# Worker exit codes the master understands (same numbers as Gunicorn).
WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4


class ClientGone(OSError):
    """An ASGI app's ``send`` on a connection whose client went away (the ASGI spec asks for a
    server-specific ``OSError``). Here, not in the compiled ``apps.asgi``: compiled classes cannot
    derive from ``OSError``."""
