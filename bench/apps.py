"""The one WSGI application every server in ``bench/run.py`` serves, routed by path.

    /        hello world (13 bytes)
    /sleep   sleeps 10 ms, then answers like ``/``; stands for an app waiting on a database
    /big     a 1 MiB body, built once at import
    /upload  reads the whole request body, answers with its length in bytes

Plain WSGI, no imports beyond the standard library, so that gunicorn, granian, waitress and
pronghorn all load it the same way (``apps:app`` with ``bench/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

HELLO = b"Hello, world!"
BIG = bytes(range(256)) * 4096  # 1 MiB
SLEEP_SECONDS = 0.010

_TEXT = [("Content-Type", "text/plain")]
_BINARY = [("Content-Type", "application/octet-stream")]


def _read_body(environ: dict[str, Any]) -> int:
    length = environ.get("CONTENT_LENGTH") or "0"
    stream = environ["wsgi.input"]
    received = 0
    remaining = int(length)
    while remaining > 0:  # read() may return fewer bytes than asked on some servers
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        received += len(chunk)
        remaining -= len(chunk)
    return received


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        body = HELLO
    elif path == "/sleep":
        time.sleep(SLEEP_SECONDS)
        body = HELLO
    elif path == "/big":
        start_response("200 OK", [*_BINARY, ("Content-Length", str(len(BIG)))])
        return [BIG]
    elif path == "/upload":
        body = str(_read_body(environ)).encode("ascii")
    else:
        start_response("404 Not Found", [*_TEXT, ("Content-Length", "9")])
        return [b"not found"]
    start_response("200 OK", [*_TEXT, ("Content-Length", str(len(body)))])
    return [body]


_ASGI_TEXT = [(b"content-type", b"text/plain"), (b"content-length", str(len(HELLO)).encode())]
_ASGI_BINARY = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(BIG)).encode())]


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """The same routes as an ASGI 3 app (``apps:asgi_app``), for the ASGI workloads."""
    if scope["type"] != "http":  # lifespan: not supported here, as in most hello-world apps
        return
    path = scope["path"]
    headers = _ASGI_TEXT
    body = HELLO
    if path == "/sleep":
        await asyncio.sleep(SLEEP_SECONDS)
    elif path == "/big":
        headers, body = _ASGI_BINARY, BIG
    elif path == "/upload":
        received = 0
        more = True
        while more:
            message = await receive()
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(received).encode("ascii")
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    elif path != "/":
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"9")]})
        await send({"type": "http.response.body", "body": b"not found"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
