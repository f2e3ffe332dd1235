"""``worker_class = "asgi"``: the event-loop worker, for ASGI applications only.

The default worker already serves an ASGI app it detects (``ThreadWorker.make_cycle``); naming this
class (or Gunicorn's ``gunicorn.workers.gasgi.ASGIWorker``, or uvicorn's worker classes) says the
app must be one, and a WSGI app stops the server at start with a line saying so.
"""

from __future__ import annotations

import sys
from typing import Any

from pronghorn.apps.loading import is_asgi_app
from pronghorn.errors import APP_LOAD_ERROR
from pronghorn.workers.gthread import ThreadWorker


class AsgiWorker(ThreadWorker):
    def make_cycle(self) -> Any:
        if not is_asgi_app(self.wsgi):
            self.log.error("Failed to load the application: worker_class asgi serves ASGI applications (async "
                           "callables) and this one is a WSGI application; use the default worker class")
            sys.exit(APP_LOAD_ERROR)
        return super().make_cycle()
