"""ASGI lifespan: the app's startup before a worker accepts connections, its shutdown when it stops.

The app's lifespan call runs as one task for the worker's whole life: ``receive`` gives it
``lifespan.startup``, and ``lifespan.shutdown`` once the worker stops. What it puts in the scope's
``state`` during startup is copied into every request's scope (``AsgiCycle.state``).

``asgi_lifespan``: ``off`` never calls it; ``auto`` takes an app that raises (or returns) before
answering startup as one without lifespan support and goes on; ``on`` makes that fatal. An answer
of ``lifespan.startup.failed`` is fatal in both (the worker exits with status 3: the master halts).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pronghorn.apps.asgi import ASGI_VERSION, Message

STARTUP_LIMIT = 30.0  # seconds the app's startup may take (as Gunicorn's ASGI worker)


class LifespanFailed(Exception):
    """Startup failed in a way that must stop the server."""


class Lifespan:
    def __init__(self, app: Any, mode: str, log: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.mode = mode
        self.log = log
        self.loop = loop
        self.state: dict[str, Any] = {}
        self.supported = True
        self.task: asyncio.Task[None] | None = None
        self._startup_sent = False
        self._shutdown_requested = loop.create_future()
        self._startup_answer: asyncio.Future[Message] = loop.create_future()
        self._shutdown_answer: asyncio.Future[Message] = loop.create_future()

    async def startup(self) -> None:
        """Run the app's startup; ``LifespanFailed`` when the server must not start."""
        if self.mode == "off":
            self.supported = False
            return
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        self.task = self.loop.create_task(self._run(scope))
        try:
            answer = await asyncio.wait_for(asyncio.shield(self._startup_answer), STARTUP_LIMIT)
        except asyncio.TimeoutError:
            raise LifespanFailed(f"ASGI lifespan startup did not finish within {STARTUP_LIMIT:g}s") from None
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanFailed(f"ASGI lifespan startup failed: {answer.get('message', '')}")
        if answer["type"] == "unsupported":
            self.supported = False
            if self.mode == "on":
                raise LifespanFailed(f"ASGI lifespan startup failed: {answer['why']}")
            self.log.info("ASGI lifespan is not used: the app %s", answer["why"])

    async def shutdown(self, limit: float) -> None:
        """Run the app's shutdown, for at most ``limit`` seconds."""
        if not self.supported or self.task is None or self.task.done():
            return
        self._shutdown_requested.set_result(None)
        try:
            answer = await asyncio.wait_for(asyncio.shield(self._shutdown_answer), max(limit, 0.1))
        except asyncio.TimeoutError:
            self.log.warning("ASGI lifespan shutdown did not finish within %.1fs", limit)
            self.task.cancel()
            return
        if answer["type"] == "lifespan.shutdown.failed":
            self.log.error("ASGI lifespan shutdown failed: %s", answer.get("message", ""))

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - whatever the app raised is reported, not re-raised
            if not self._startup_answer.done():
                if self.mode == "on":
                    self.log.exception("ASGI lifespan startup raised")
                self._startup_answer.set_result({"type": "unsupported", "why": f"raised {exc!r} at startup"})
            elif not self._shutdown_answer.done():
                self.log.exception("ASGI lifespan shutdown raised")
                self._shutdown_answer.set_result({"type": "lifespan.shutdown.failed", "message": repr(exc)})
        finally:
            if not self._startup_answer.done():
                self._startup_answer.set_result({"type": "unsupported", "why": "returned without answering startup"})
            if not self._shutdown_answer.done():
                self._shutdown_answer.set_result({"type": "lifespan.shutdown.complete"})

    async def _receive(self) -> Message:
        if not self._startup_sent:
            self._startup_sent = True
            return {"type": "lifespan.startup"}
        await self._shutdown_requested
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            if self._startup_answer.done():
                raise RuntimeError(f"ASGI app sent {kind} twice or out of order")
            self._startup_answer.set_result(message)
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if not self._shutdown_requested.done() or self._shutdown_answer.done():
                raise RuntimeError(f"ASGI app sent {kind} before lifespan.shutdown")
            self._shutdown_answer.set_result(message)
        else:
            raise RuntimeError(f"ASGI app sent an unexpected lifespan message {kind!r}")
