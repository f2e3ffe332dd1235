"""``WSGIApplication``: serve a WSGI app named on the command line (``module:callable``).

Runnable as ``python -m pronghorn.app.wsgiapp module:app [OPTIONS]``, like the ``pronghorn``
command and ``python -m pronghorn``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from pronghorn.app.base import Application
from pronghorn.apps.loading import import_app, parse_reference
from pronghorn.errors import APP_LOAD_ERROR, WORKER_BOOT_ERROR, AppImportError, AppReferenceError, ConfigError


class WSGIApplication(Application):
    app_uri: str | None = None

    def init(self, parser: argparse.ArgumentParser, opts: argparse.Namespace, args: list[str]) -> Any:
        if args:
            self.cfg.set("default_proc_name", args[0])
            self.app_uri = args[0]
        return None

    def load_config(self) -> None:
        super().load_config()
        if self.app_uri is None:
            if self.cfg.wsgi_app is None:
                raise ConfigError("No application module specified.")
            self.app_uri = self.cfg.wsgi_app
        try:
            parse_reference(self.app_uri)  # a malformed reference is caught before forking
        except (AppImportError, ImportError) as exc:
            # Gunicorn's exit status for it: a worker's app load error (4), or its boot error (3) for
            # the ImportError of a file path; 1 when the master loads the app (preload, checks).
            status = APP_LOAD_ERROR if isinstance(exc, AppImportError) else WORKER_BOOT_ERROR
            if self.cfg.preload_app or self.cfg.check_config:
                status = 1
            raise AppReferenceError(str(exc), status) from None

    def load_wsgiapp(self) -> Callable[..., Any]:
        assert self.app_uri is not None
        return import_app(self.app_uri)

    def load(self) -> Callable[..., Any]:
        return self.load_wsgiapp()


def run(prog: str | None = None) -> None:
    """The ``pronghorn`` command."""
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog=prog).run()


if __name__ == "__main__":
    run()
