"""A Flask application served by pronghorn as WSGI.

From the repository root (``pip install pronghorn flask``)::

    pronghorn --chdir examples flask_app:app -w 2

``--chdir`` makes ``examples/`` the working directory and puts it first on ``sys.path``, so
``flask_app:app`` is this module's ``app``. Add ``--access-logfile -`` for a line per request on
standard output. Then::

    curl http://127.0.0.1:8000/
    curl http://127.0.0.1:8000/api/status
    curl -X POST http://127.0.0.1:8000/api/echo -H 'Content-Type: application/json' -d '{"name": "ada"}'
    curl -X POST http://127.0.0.1:8000/api/echo -d name=ada -d lang=en
    curl -N 'http://127.0.0.1:8000/countdown?start=5'
    curl http://127.0.0.1:8000/nowhere

What it shows:

- an HTML index and a JSON route (Flask turns a returned dict into a JSON response);
- a POST route reading either a JSON body or a form (urlencoded or multipart);
- a response produced by a generator: it has no Content-Length, so pronghorn sends each piece as
  it is yielded, with ``Transfer-Encoding: chunked``;
- one error handler answering every HTTP error (404, 405, 400, and 500 for an unhandled
  exception) with a JSON body instead of Werkzeug's HTML page.

Nothing here is shared between workers: with ``-w 2`` each request is answered by one of two
processes, whose pid the responses include.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from html import escape
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

app = Flask(__name__)

STARTED = time.time()


@app.get("/")
def index() -> str:
    """A plain HTML page (Flask sends a str as text/html)."""
    server = escape(request.environ.get("SERVER_SOFTWARE", "unknown"))
    return (
        "<!doctype html>\n<title>pronghorn Flask example</title>\n"
        f"<h1>Hello from Flask</h1>\n<p>Worker {os.getpid()}, served by {server}.</p>\n"
    )


@app.get("/api/status")
def status() -> dict[str, Any]:
    return {
        "worker_pid": os.getpid(),
        "uptime_seconds": round(time.time() - STARTED, 3),
        "multiprocess": request.environ["wsgi.multiprocess"],
        "query": request.args.to_dict(),
    }


@app.post("/api/echo")
def echo() -> tuple[Response, int]:
    """Answers what the client posted: a JSON document, or the fields of a form."""
    if request.is_json:
        payload = request.get_json(silent=True)
        if payload is None:
            abort(400, description="the body is not valid JSON")
        kind = "json"
    elif request.form:
        payload = request.form.to_dict(flat=False)
        kind = "form"
    else:
        abort(400, description="post a JSON body or a form")
    return jsonify(kind=kind, data=payload, length=request.content_length), 201


@app.get("/countdown")
def countdown() -> Response:
    """Lines sent one at a time as the generator yields them."""
    start = request.args.get("start", default=3, type=int)
    if not 0 <= start <= 100:
        abort(400, description="start must be between 0 and 100")

    def lines() -> Iterator[str]:
        for n in range(start, 0, -1):
            yield f"{n}\n"
            time.sleep(0.05)
        yield "liftoff\n"

    return Response(lines(), mimetype="text/plain")


@app.get("/boom")
def boom() -> str:
    """Fails on purpose: Flask logs the traceback and the handler below answers 500."""
    raise RuntimeError("this route always fails")


@app.errorhandler(HTTPException)
def http_error(error: HTTPException) -> ResponseReturnValue:
    """Every HTTP error as JSON. An unhandled exception reaches it as InternalServerError.

    The error's own response is kept for its status and headers (a 405 says ``Allow``); only its
    body changes.
    """
    response = error.get_response()
    response.set_data(json.dumps({"error": error.name, "status": error.code, "detail": error.description,
                                  "path": request.path}))
    response.content_type = "application/json"
    return response
