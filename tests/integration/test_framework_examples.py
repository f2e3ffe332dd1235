"""The framework examples of ``examples/``, each served from the repository by a real pronghorn
process with two workers, as their docstrings say to run them:

- ``examples/flask_app.py`` (WSGI): every route, form and JSON bodies, a generator streamed as
  chunks, the app's JSON error handler (404, 405, 400, 500) and the access log;
- ``examples/django_site/`` as WSGI (the default worker and ``-k sync``) and as ASGI (``-k asgi``
  and detected): every view, request bodies, the streamed response, the 404 handler, and the
  settings module named by the project's own ``wsgi.py``/``asgi.py``.

One server per configuration, shared by the tests of that configuration (module-scoped fixtures).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from serving import REPO, Server, free_port, http_get, http_request, pronghorn_cmd

EXAMPLES = REPO / "examples"
Response = tuple[int, dict[str, str], bytes]

# -- helpers ------------------------------------------------------------------------------------------


def start_server(args: list[str], *, log: Path, drop_env: tuple[str, ...] = ()) -> tuple[Server, int]:
    """``pronghorn *args -b <a free port>`` run from the repository root; the caller stops it."""
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        for name in drop_env:  # the child's environment is copied from ours when it starts
            patch.delenv(name, raising=False)
        server = Server(pronghorn_cmd(*args, "-b", f"127.0.0.1:{port}"), cwd=REPO, log=log)
    try:
        server.wait_for_port(port)
    except BaseException:
        server.stop()
        raise
    return server, port


def get_json(port: int, path: str, status: int = 200) -> Any:
    got, headers, body = http_get(port, path)
    assert got == status, (got, body)
    assert headers["content-type"] == "application/json", headers
    return json.loads(body)


def complete_chunks(body: bytes) -> tuple[list[bytes], bool]:
    """The chunks wholly present at the start of a chunked ``body``, and whether the last one came."""
    chunks: list[bytes] = []
    pos = 0
    while (eol := body.find(b"\r\n", pos)) != -1:
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return chunks, True
        if len(body) < eol + 2 + size + 2:
            break
        chunks.append(body[eol + 2:eol + 2 + size])
        pos = eol + 2 + size + 2
    return chunks, False


def read_stream(port: int, path: str) -> tuple[int, dict[str, str], list[bytes], bytes]:
    """GET ``path`` and read the chunked response as it arrives: (status, headers, its chunks, the
    body bytes received by the moment its first chunk was complete)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        at_first_chunk: bytes | None = None
        while piece := sock.recv(65536):
            data += piece
            head, found, body = data.partition(b"\r\n\r\n")
            if found and at_first_chunk is None and complete_chunks(body)[0]:
                at_first_chunk = body
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    assert headers.get("transfer-encoding") == "chunked", (headers, body)
    chunks, last_came = complete_chunks(body)
    assert last_came, body
    assert at_first_chunk is not None
    return int(lines[0].split(" ")[1]), headers, chunks, at_first_chunk


def assert_streamed_countdown(port: int, path: str, start: int, content_type: str) -> None:
    """``start`` lines then "liftoff", 50 ms apart: sent as they are produced, in several chunks."""
    status, headers, chunks, at_first_chunk = read_stream(port, path)
    assert status == 200
    assert headers["content-type"] == content_type
    assert "content-length" not in headers
    expected = "".join(f"{n}\n" for n in range(start, 0, -1)) + "liftoff\n"
    assert b"".join(chunks).decode() == expected
    assert len(chunks) > 1, chunks
    # The first line arrived while the app was still producing the rest (it takes 50 ms a line).
    assert b"liftoff" not in at_first_chunk, at_first_chunk


def worker_pids(port: int, path: str, want: int, pid_of: Callable[[bytes], int]) -> set[int]:
    """Worker pids answering rounds of fresh concurrent connections, until ``want`` are seen or 15 s
    passed (a worker still loading the app answers nothing: its sibling takes every connection)."""
    pids: set[int] = set()
    deadline = time.monotonic() + 15
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while len(pids) < want and time.monotonic() < deadline:
            for status, _, body in pool.map(lambda _: http_get(port, path), range(16)):
                assert status == 200, body
                pids.add(pid_of(body))
    return pids


# -- Flask --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flask_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    pytest.importorskip("flask")
    assert (EXAMPLES / "flask_app.py").is_file()
    log = tmp_path_factory.mktemp("flask") / "server.log"
    # As the example's docstring says, plus the access log on standard output.
    server, port = start_server(["--chdir", "examples", "flask_app:app", "-w", "2", "--access-logfile", "-"], log=log)
    try:
        yield server, port
    finally:
        server.stop()


def test_flask_index_is_html_from_a_worker(flask_server: tuple[Server, int]) -> None:
    server, port = flask_server
    status, headers, body = http_get(port, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    page = body.decode()
    assert "<h1>Hello from Flask</h1>" in page
    found = re.search(r"Worker (\d+), served by pronghorn/", page)
    assert found, page
    assert int(found.group(1)) != server.pid


def test_flask_json_route_from_two_workers(flask_server: tuple[Server, int]) -> None:
    server, port = flask_server
    status = get_json(port, "/api/status?colour=blue&n=3")
    assert status["query"] == {"colour": "blue", "n": "3"}
    assert status["multiprocess"] is True  # -w 2
    assert status["uptime_seconds"] >= 0
    pids = worker_pids(port, "/api/status", 2, lambda body: json.loads(body)["worker_pid"])
    assert len(pids) == 2 and server.pid not in pids


def test_flask_post_bodies_round_trip(flask_server: tuple[Server, int]) -> None:
    _, port = flask_server
    document = {"name": "ada", "langs": ["en", "fr"], "note": "héllo ✓", "big": "x" * 100_000}
    raw = json.dumps(document).encode()
    status, headers, body = http_request(port, "POST", "/api/echo", raw, {"Content-Type": "application/json"})
    assert status == 201 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"kind": "json", "data": document, "length": len(raw)}

    form = urlencode([("name", "ada"), ("lang", "en"), ("lang", "fr"), ("note", "a&b=c ✓")]).encode()
    status, _, body = http_request(port, "POST", "/api/echo", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 201
    assert json.loads(body) == {"kind": "form", "length": len(form),
                                "data": {"name": ["ada"], "lang": ["en", "fr"], "note": ["a&b=c ✓"]}}

    # Bodies the route refuses: answered 400 by the app's error handler.
    for raw, content_type in ((b"{not json", "application/json"), (b"just bytes", "application/octet-stream")):
        status, headers, body = http_request(port, "POST", "/api/echo", raw, {"Content-Type": content_type})
        assert status == 400 and headers["content-type"] == "application/json", body
        answer = json.loads(body)
        assert answer["error"] == "Bad Request" and answer["path"] == "/api/echo"


def test_flask_generator_is_streamed_in_chunks(flask_server: tuple[Server, int]) -> None:
    _, port = flask_server
    assert_streamed_countdown(port, "/countdown?start=6", 6, "text/plain; charset=utf-8")
    status, _, body = http_get(port, "/countdown?start=1000")
    assert status == 400 and json.loads(body)["detail"] == "start must be between 0 and 100"


def test_flask_error_handler_answers_404_405_and_500(flask_server: tuple[Server, int]) -> None:
    server, port = flask_server
    answer = get_json(port, "/nowhere?x=1", status=404)
    assert answer["error"] == "Not Found" and answer["status"] == 404 and answer["path"] == "/nowhere"

    status, headers, body = http_request(port, "DELETE", "/api/status")
    assert status == 405 and headers["content-type"] == "application/json"
    assert set(headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}  # kept by the handler
    assert json.loads(body)["error"] == "Method Not Allowed"

    answer = get_json(port, "/boom", status=500)
    assert answer["error"] == "Internal Server Error" and answer["path"] == "/boom"
    # Flask logged the exception (to standard error, which is the server's log here).
    output = server.wait_for_output("RuntimeError: this route always fails")
    assert "Exception on /boom [GET]" in output

    status, _, body = http_get(port, "/api/status")  # the worker serves on
    assert status == 200, body


def test_flask_access_log_line(flask_server: tuple[Server, int]) -> None:
    server, port = flask_server
    agent = f"example-test/{time.monotonic_ns()}"
    status, headers, body = http_get(port, "/api/status?from=log", headers={"User-Agent": agent,
                                                                            "Referer": "http://example.test/"})
    assert status == 200
    output = server.wait_for_output(agent)
    line = next(line for line in output.splitlines() if agent in line)
    pattern = (r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
               r'"GET /api/status\?from=log HTTP/1\.1" 200 (\d+) "http://example\.test/" "' + re.escape(agent) + '"')
    match = re.fullmatch(pattern, line)
    assert match, line
    assert int(match.group(1)) == len(body) == int(headers["content-length"])

    status, _, _ = http_get(port, "/nowhere", headers={"User-Agent": agent + "-missing"})
    assert status == 404
    line = next(line for line in server.wait_for_output(agent + "-missing").splitlines() if agent + "-missing" in line)
    assert '"GET /nowhere HTTP/1.1" 404 ' in line


# -- Django -------------------------------------------------------------------------------------------

# name: (entry point, extra arguments, interface the views see, worker the master names)
DJANGO_SERVERS: dict[str, tuple[str, list[str], str, str]] = {
    "wsgi-default": ("django_site.wsgi:application", [], "wsgi", "gthread"),
    "wsgi-sync": ("django_site.wsgi:application", ["-k", "sync"], "wsgi", "sync"),
    "asgi": ("django_site.asgi:application", ["-k", "asgi"], "asgi", "asgi"),
    "asgi-detected": ("django_site.asgi:application", [], "asgi", "gthread"),
}


class DjangoServer:
    def __init__(self, name: str, server: Server, port: int) -> None:
        self.name = name
        self.server = server
        self.port = port
        self.interface = DJANGO_SERVERS[name][2]
        self.worker = DJANGO_SERVERS[name][3]


@pytest.fixture(scope="module", params=list(DJANGO_SERVERS))
def django_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoServer]:
    pytest.importorskip("django", minversion="4.2")
    assert (EXAMPLES / "django_site" / "manage.py").is_file()
    name: str = request.param
    entry, extra, _, _ = DJANGO_SERVERS[name]
    log = tmp_path_factory.mktemp(f"django-{name}") / "server.log"
    # No DJANGO_SETTINGS_MODULE in the server's environment: the project's wsgi.py/asgi.py names it.
    server, port = start_server(["--chdir", "examples/django_site", entry, "-w", "2", *extra], log=log,
                                drop_env=("DJANGO_SETTINGS_MODULE",))
    try:
        yield DjangoServer(name, server, port)
    finally:
        server.stop()


def assert_about(answer: dict[str, Any], site: DjangoServer, view: str) -> None:
    """What every JSON view says about itself, its server and its settings."""
    assert answer["view"] == view
    assert answer["interface"] == site.interface
    assert answer["settings_module"] == "django_site.settings"
    assert isinstance(answer["worker_pid"], int) and answer["worker_pid"] != site.server.pid


def test_django_sync_view_from_two_workers(django_server: DjangoServer) -> None:
    site = django_server
    status, headers, body = http_get(site.port, "/?q=caf%C3%A9&page=2")
    assert status == 200 and headers["content-type"] == "application/json", body
    answer = json.loads(body)
    assert_about(answer, site, "index")
    assert answer["query"] == {"q": "café", "page": "2"}
    # Django's middleware ran (settings.MIDDLEWARE).
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"

    pids = worker_pids(site.port, "/", 2, lambda body: json.loads(body)["worker_pid"])
    assert len(pids) == 2 and site.server.pid not in pids

    output = site.server.output()
    assert f"Using worker: {site.worker}" in output
    assert ("Serving an ASGI application" in output) == (site.interface == "asgi"), output


def test_django_async_view(django_server: DjangoServer) -> None:
    # Under WSGI, Django runs an async view through asgiref's async_to_sync, which refuses to run
    # where an event loop is running: the default worker hides its loop while the app runs.
    site = django_server
    answer = get_json(site.port, "/async/")
    assert_about(answer, site, "async_status")
    assert answer["waited_ms"] >= 5
    status, headers, _ = http_request(site.port, "POST", "/async/")
    assert status == 403  # CSRF middleware: a POST without a token, to a view not exempt


def test_django_post_view_reads_the_body(django_server: DjangoServer) -> None:
    site = django_server
    document = {"name": "ada", "tags": ["x", "y"], "note": "héllo ✓"}
    raw = json.dumps(document).encode()
    status, headers, body = http_request(site.port, "POST", "/echo/", raw, {"Content-Type": "application/json"})
    assert status == 200 and headers["content-type"] == "application/json", body
    answer = json.loads(body)
    assert_about(answer, site, "echo")
    assert answer["json"] == document and answer["length"] == len(raw)
    assert answer["content_type"] == "application/json"

    form = urlencode([("lang", "en"), ("lang", "fr"), ("note", "a&b=c ✓")]).encode()
    status, _, body = http_request(site.port, "POST", "/echo/", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    assert json.loads(body)["form"] == {"lang": ["en", "fr"], "note": ["a&b=c ✓"]}

    blob = bytes(range(256)) * 1200  # 300 KiB, read whole by request.body
    status, _, body = http_request(site.port, "POST", "/echo/", blob, {"Content-Type": "application/octet-stream"})
    assert status == 200, body
    answer = json.loads(body)
    assert (answer["length"], answer["sha256"]) == (len(blob), hashlib.sha256(blob).hexdigest())
    assert "json" not in answer and "form" not in answer

    status, _, body = http_request(site.port, "POST", "/echo/", b"{oops", {"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (400, {"error": "the body is not valid JSON"})
    assert http_request(site.port, "GET", "/echo/")[0] == 405  # @require_POST
    # The index view is not exempt from CSRF checks: a POST without a token is refused.
    assert http_request(site.port, "POST", "/", b"x=1", {"Content-Type": "application/x-www-form-urlencoded"})[0] == 403


def test_django_streaming_response(django_server: DjangoServer) -> None:
    site = django_server
    assert_streamed_countdown(site.port, "/countdown/?start=6", 6, "text/plain")
    status, _, body = http_get(site.port, "/countdown/?start=nope")
    assert (status, json.loads(body)) == (400, {"error": "start must be between 0 and 100"})


def test_django_not_found_redirects_and_hosts(django_server: DjangoServer) -> None:
    site = django_server
    assert get_json(site.port, "/nowhere/at/all", status=404) == {"error": "not found", "path": "/nowhere/at/all"}
    # APPEND_SLASH (CommonMiddleware): a known path without its slash is redirected.
    status, headers, _ = http_get(site.port, "/echo?x=1")
    assert status == 301 and headers["location"] == "/echo/?x=1"
    # ALLOWED_HOSTS: another Host header is a 400 (DEBUG is off: a plain page, no details).
    status, _, body = http_request(site.port, "GET", "/", headers={"Host": "evil.example"})
    assert status == 400 and b"evil.example" not in body
    # A client saying "localhost" is answered.
    assert http_request(site.port, "GET", "/", headers={"Host": f"localhost:{site.port}"})[0] == 200


def test_django_server_log_is_clean(django_server: DjangoServer) -> None:
    output = django_server.server.output()
    assert "Traceback" not in output and "[ERROR]" not in output, output
    assert "Warning" not in output, output  # e.g. Django buffering an iterator of the wrong kind
