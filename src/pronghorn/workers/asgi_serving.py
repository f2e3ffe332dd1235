"""What the event-loop worker does differently for an ASGI app: lifespan around the worker's life,
``AsgiConnection`` for its connections, and the app calls still running when it stops.

``ThreadWorker`` makes one when the loaded app is an ASGI app (``-k asgi``, or detected); the
process model, signals, admission, deadlines and the tick stay the worker's own.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from pronghorn.apps.asgi import AsgiCycle
from pronghorn.apps.cycle import CycleSettings
from pronghorn.apps.lifespan import Lifespan, LifespanFailed
from pronghorn.errors import WORKER_BOOT_ERROR
from pronghorn.workers.asgi_connection import AsgiConnection

QUICK_STOP = 1.0  # seconds the app calls and lifespan shutdown get on INT/QUIT
LIFESPAN_RESERVE = 2.0  # seconds of graceful_timeout kept for the lifespan shutdown
KILL_MARGIN = 0.2  # the lifespan shutdown ends this long before the master's kill


class AsgiServing:
    def __init__(self, worker: Any) -> None:
        self.worker = worker
        cfg = worker.cfg
        self.cycle = AsgiCycle(worker.wsgi, CycleSettings(cfg), worker.log, worker.cycle_hooks(), cfg)
        self.lifespan: Lifespan | None = None
        from pronghorn.workers.gthread import event_loop_name

        worker.log.info("Serving an ASGI application (an async callable) on the %s event loop",
                        event_loop_name(cfg.asgi_loop))
        if cfg.threads > 1:  # as Gunicorn's ASGI worker: said, not refused (configs carry it)
            worker.log.warning("threads = %s does not apply to an ASGI application: its requests are tasks "
                               "on the worker's event loop", cfg.threads)

    def attach(self, loop: asyncio.AbstractEventLoop, worker_loop: Any) -> None:
        self.cycle.loop = loop
        worker_loop.connection_class = AsgiConnection
        worker_loop.threads = 1  # whatever ``threads`` says: writes go straight to the socket

    def start(self) -> None:
        """The app's lifespan startup; a fatal failure ends the worker with status 3 (the master halts)."""
        worker = self.worker
        lifespan = self.lifespan = Lifespan(worker.wsgi, worker.cfg.asgi_lifespan, worker.log, worker.loop)
        try:
            worker.loop.run_until_complete(lifespan.startup())
        except LifespanFailed as exc:
            worker.log.error("%s", exc)
            sys.exit(WORKER_BOOT_ERROR)
        except RuntimeError:  # the loop was stopped: the worker was told to stop during startup
            sys.exit(0)
        if lifespan.supported:
            self.cycle.state = lifespan.state

    def going_away(self, connections: Any) -> None:
        """The worker is stopping: WebSockets are closed with 1012 (service restart), so that their
        clients reconnect to a sibling or the next worker instead of being cut at the end."""
        for conn in list(connections):
            session = getattr(conn, "session", None)
            if session is not None:
                session.server_close(1012)

    def shutdown_reserve(self) -> float:
        """Of ``graceful_timeout``, what the lifespan shutdown keeps for itself: the worker stops
        waiting for connections this much earlier (the master kills it at ``graceful_timeout``)."""
        if self.lifespan is None or not self.lifespan.supported:
            return 0.0
        return min(LIFESPAN_RESERVE, float(self.worker.cfg.graceful_timeout) / 2)

    def stop(self, stopping_since: float) -> None:
        """After the loop: cancel app calls still running, then the lifespan shutdown, within what is
        left of ``graceful_timeout`` (``stopping_since`` 0.0: a quick stop, ``QUICK_STOP``)."""
        worker = self.worker
        loop = worker.loop
        started = time.monotonic()
        if stopping_since:
            limit = max(QUICK_STOP, stopping_since + worker.cfg.graceful_timeout - started - KILL_MARGIN)
        else:
            limit = QUICK_STOP
        try:
            running = list(self.cycle.running)
            for task in running:
                task.cancel()
            if running:
                loop.run_until_complete(asyncio.wait(running, timeout=QUICK_STOP))
            lifespan = self.lifespan
            if lifespan is not None:
                loop.run_until_complete(lifespan.shutdown(limit - (time.monotonic() - started)))
                if lifespan.task is not None and not lifespan.task.done():
                    lifespan.task.cancel()
                    loop.run_until_complete(asyncio.wait([lifespan.task], timeout=QUICK_STOP))
        except RuntimeError:  # the loop was stopped again (a second INT): leave as it is
            pass
